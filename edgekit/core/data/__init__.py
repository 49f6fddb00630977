"""Datasets as NumPy arrays: Fashion-MNIST IDX files and .npz files. Never imports TensorFlow."""

from edgekit.core.data.dataset import (
    FASHION_MNIST_FILES,
    FASHION_MNIST_LABELS,
    Dataset,
    InputSpec,
    check_labels,
    data_fingerprint,
    fashion_mnist_search_path,
    load_dataset,
    load_fashion_mnist_arrays,
    load_npz_arrays,
    load_test_set,
    numbered_labels,
    read_idx,
    to_float_images,
)

__all__ = [
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_LABELS",
    "Dataset",
    "InputSpec",
    "check_labels",
    "data_fingerprint",
    "fashion_mnist_search_path",
    "load_dataset",
    "load_fashion_mnist_arrays",
    "load_npz_arrays",
    "load_test_set",
    "numbered_labels",
    "read_idx",
    "to_float_images",
]

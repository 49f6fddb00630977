"""Your model, your images, at full size: a Keras 3 CNN trained on Fashion-MNIST written as PNG
files, then `edgekit export model.keras --data DIR --prune` as a user runs it.

    python benchmarks/keras3_images.py      # -> benchmarks/results/keras3_images.json

1. Writes the 60,000 training and 10,000 test images of Fashion-MNIST as PNGs into
   DIR/train/<class>/ and DIR/test/<class>/ (what a user's image folder looks like).
2. Trains a Keras 3 Functional CNN on that folder (read with edgekit.core.data, as raw 0..255
pixels:
   the model starts with Rescaling(1/255)): Conv2D+BN, a DepthwiseConv2D block with a residual
   Add, a second Conv2D+BN, Dense head. Saved as .keras.
3. Runs `edgekit export model.keras --data DIR --prune --sparsity 0.8` in a child process and
   records its wall time, peak RSS (ru_maxrss of the child), the accuracies, sizes and sparsity.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
MB = 1024 * 1024


def write_folder(root: Path) -> dict[str, int]:
    from PIL import Image

    from edgekit.core.data import FASHION_MNIST_LABELS, load_fashion_mnist_arrays

    raw, _ = load_fashion_mnist_arrays()
    counts = {}
    for split, x, y in (
        ("train", raw["x_train"], raw["y_train"]),
        ("test", raw["x_test"], raw["y_test"]),
    ):
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            folder = root / split / FASHION_MNIST_LABELS[int(label)].replace("/", "-")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:05d}.png")
        counts[split] = len(x)
    return counts


def train_model(folder: Path, path: Path, epochs: int) -> dict[str, Any]:
    from edgekit.core.config import DataConfig
    from edgekit.core.data import load_dataset
    from edgekit.workstation._keras import import_keras3

    k3 = import_keras3()
    data = load_dataset(DataConfig(source=str(folder), input_shape=(28, 28, 1), pixel_scale=1.0))
    k3.utils.set_random_seed(42)
    inp = k3.Input((28, 28, 1), name="image")
    h = k3.layers.Rescaling(1 / 255)(inp)
    h = k3.layers.Conv2D(32, 3, padding="same", use_bias=False)(h)
    h = k3.layers.BatchNormalization()(h)
    h = k3.layers.ReLU()(h)
    b = k3.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(h)
    b = k3.layers.BatchNormalization()(b)
    h = k3.layers.Add()([h, k3.layers.ReLU()(b)])
    h = k3.layers.MaxPooling2D()(h)
    h = k3.layers.Conv2D(64, 3, padding="same", use_bias=False)(h)
    h = k3.layers.BatchNormalization()(h)
    h = k3.layers.ReLU()(h)
    h = k3.layers.MaxPooling2D()(h)
    h = k3.layers.Flatten()(h)
    h = k3.layers.Dense(128, use_bias=False)(h)
    h = k3.layers.BatchNormalization()(h)
    h = k3.layers.ReLU()(h)
    out = k3.layers.Dense(10, activation="softmax")(h)
    model = k3.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return fit_and_save(model, data, path, epochs, batch_size=128)


def fit_and_save(model: Any, data: Any, path: Path, epochs: int, batch_size: int) -> dict[str, Any]:
    """Fit a compiled Keras 3 model on `data`, save it to `path`; its time and test accuracy."""
    import numpy as np

    t0 = time.perf_counter()
    model.fit(
        np.asarray(data.x_train),
        data.y_train,
        validation_data=(np.asarray(data.x_val), data.y_val),
        epochs=epochs,
        batch_size=batch_size,
        verbose=0,
    )
    seconds = time.perf_counter() - t0
    _, acc = model.evaluate(np.asarray(data.x_test), data.y_test, verbose=0)
    model.save(path)
    return {
        "epochs": epochs,
        "seconds": round(seconds, 1),
        "test_accuracy": float(acc),
        "parameters": int(model.count_params()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "keras3_images.json")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--prune-epochs", type=int, default=4)
    args = ap.parse_args(argv)

    from edgekit.device.bench import machine_info

    with tempfile.TemporaryDirectory(prefix="edgekit-k3img-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        counts = write_folder(root / "images")
        write_s = time.perf_counter() - t0
        trained = train_model(root / "images", root / "model.keras", args.epochs)
        out = root / "out"
        cmd = [
            sys.executable,
            "-m",
            "edgekit.cli.main",
            "export",
            str(root / "model.keras"),
            "--data",
            str(root / "images"),
            "--prune",
            "--sparsity",
            "0.8",
            "--prune-epochs",
            str(args.prune_epochs),
            "-o",
            str(out),
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        export_s = time.perf_counter() - t0
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        manifest = json.loads((out / "manifest.json").read_text())
    run = manifest["config"]["run"]
    result = {
        "what": "Keras 3 CNN on Fashion-MNIST PNGs -> edgekit export --data DIR --prune",
        "machine": machine_info(),
        "images": counts,
        "write_pngs_s": round(write_s, 1),
        "keras3_training": trained,
        "command": " ".join(["edgekit", *cmd[3:]]).replace(tmp, "$TMP"),
        "export_wall_s": round(export_s, 1),
        "export_peak_rss_mb": round(peak_kb / 1024, 1) if peak_kb > before else None,
        "keras3_rebuild": run["source_model"]["keras3"],
        "kernel_sparsity": run["kernel_sparsity"],
        "pruning_skipped": list(run["pruning_skipped"]),
        "keras_accuracy_folded": manifest["keras_accuracy"],
        "input": manifest["input"],
        "files": [
            {
                "file": f["file"],
                "precision": f["precision"],
                "bytes": f["bytes"],
                "gzip_bytes": f["gzip_bytes"],
                "weight_sparsity": f["weight_sparsity"],
                "accuracy": f["accuracy"]["accuracy"],
                "agreement_with_keras": f["accuracy"]["top1_agreement_with_keras"],
            }
            for f in manifest["files"]
        ],
        "stderr_tail": proc.stderr.strip().splitlines()[-12:],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from edgekit.core.io.files import write_json_atomic

    write_json_atomic(args.out, result)
    print(
        json.dumps(
            {k: result[k] for k in ("export_wall_s", "export_peak_rss_mb", "files")}, indent=1
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The cnn_gap architecture (issue 9, size-accuracy frontier): small, prunable, foldable, int8."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgekit.core.config import DEFAULT_EPOCHS, Arch, PruneConfig, TrainConfig
from edgekit.workstation.train.prune import SPARSITY_TOLERANCE

# cnn_gap with the default stages ((32, 32), (64, 64), (128,)) has 141,098 parameters: 138,528
# conv weights, 1,280 in BN (gamma, beta, mean, variance), 1,290 in the 128x10 output. The cnn
# has 380,578 (313,600 of them in its 3136x100 dense head).
MAX_PARAMETERS = 145_000


@pytest.fixture(scope="module")
def trained(small_data: Any) -> Any:
    from edgekit.workstation.train import build_model, train_model

    cfg = TrainConfig(arch="cnn_gap", epochs=1, batch_size=64, seed=5)
    model = build_model(cfg, small_data.input_shape, small_data.num_classes)
    result = train_model(model, small_data, cfg, progress=lambda msg: None)
    # It learned in one epoch of 3,000 images (training-mode accuracy; chance is 0.10).
    assert result.history["accuracy"][-1] > 0.45
    return result.model


def test_cnn_gap_is_a_known_arch_with_default_epochs() -> None:
    assert TrainConfig(arch="cnn-gap").arch is Arch.CNN_GAP
    assert TrainConfig(arch="cnn_gap").max_epochs == DEFAULT_EPOCHS["cnn_gap"][0]


def test_cnn_gap_has_almost_no_dense_weights(trained: Any) -> None:
    from edgekit.workstation._keras import keras
    from edgekit.workstation.train.model import GAP_STAGES

    assert trained.count_params() < MAX_PARAMETERS
    dense = [layer for layer in trained.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.name for layer in dense] == ["output"]
    assert dense[0].kernel.shape == (GAP_STAGES[-1][-1], 10)
    convs = [layer for layer in trained.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == sum(len(s) for s in GAP_STAGES)
    # Conv2D without bias -> BN -> ReLU: the pattern fold_batchnorm merges.
    assert all(not c.use_bias for c in convs)
    assert any(isinstance(layer, keras.layers.GlobalAveragePooling2D) for layer in trained.layers)


@pytest.mark.heavy
def test_cnn_gap_prunes_folds_and_converts_to_int8(trained: Any, small_data: Any) -> None:
    from edgekit.core.config import Precision
    from edgekit.device.runtime import evaluate
    from edgekit.workstation.export import convert, recipe_for
    from edgekit.workstation.optimize import fold_batchnorm
    from edgekit.workstation.train import keras_accuracy, prune_model
    from edgekit.workstation.train.model import predict_classes

    # Above chance in inference mode too (BN's moving statistics lag after 47 steps).
    assert keras_accuracy(trained, small_data.x_test, small_data.y_test) > 0.2
    pruned = prune_model(
        trained, small_data, PruneConfig(target_sparsity=0.5, epochs=1, batch_size=64, seed=5)
    )
    # Only conv1 (3x3x1x32 = 288 weights) is under min_weights=512.
    assert set(pruned.skipped) == {"conv1"}
    for name, value in pruned.pruned_sparsity.items():
        assert abs(value - 0.5) <= SPARSITY_TOLERANCE, (name, value)
    folded = fold_batchnorm(pruned.model)
    assert len(folded.folded) == 5 and not folded.kept
    x = small_data.x_test[:200]
    np.testing.assert_allclose(
        folded.model.predict(x, verbose=0), pruned.model.predict(x, verbose=0), atol=1e-4
    )
    data = convert(folded.model, recipe_for(Precision.INT8), small_data.x_train, 100, 5)
    acc = evaluate(data, small_data.x_test, small_data.y_test)
    agreement = float((acc.predictions == predict_classes(folded.model, small_data.x_test)).mean())
    assert agreement >= 0.97, agreement
    assert acc.accuracy > 0.2

"""Pruning with the real TF-MOT: schedule arithmetic, sparsity reached, zeros after strip."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgekit.core.config import PruneConfig, TrainConfig
from edgekit.core.errors import EdgekitError
from edgekit.workstation.train.prune import (
    SPARSITY_TOLERANCE,
    kernel_sparsity,
    plan_schedule,
    prune_model,
)


def test_schedule_end_step_is_reached_and_a_multiple_of_frequency() -> None:
    plan = plan_schedule(55000, PruneConfig(epochs=8, batch_size=128, frequency=100))
    assert plan.steps_per_epoch == 430 and plan.total_steps == 3440
    assert (plan.end_step - plan.begin_step) % plan.frequency == 0
    assert plan.end_step < plan.total_steps


def test_schedule_adapts_frequency_to_few_batches() -> None:
    plan = plan_schedule(300, PruneConfig(epochs=2, batch_size=32, frequency=100))
    assert plan.total_steps == 20
    assert plan.frequency < 100
    assert (plan.end_step - plan.begin_step) % plan.frequency == 0 and plan.end_step < 20


def test_schedule_refuses_too_few_steps() -> None:
    with pytest.raises(EdgekitError, match="raise --prune-epochs"):
        plan_schedule(10, PruneConfig(epochs=1, batch_size=32))


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5])
def test_sparsity_outside_unit_interval_is_refused(sparsity: float) -> None:
    with pytest.raises(EdgekitError, match=r"sparsity must be in \[0, 1\)"):
        PruneConfig(target_sparsity=sparsity)


def test_pipeline_kernels_reach_target_sparsity(pipeline_run: Any) -> None:
    sparsity = pipeline_run.kernel_sparsity
    assert set(sparsity) == {"dense1", "dense2", "output"}
    # The 32x10 output kernel (320 weights) is under min_weights=512: left dense, and said so.
    assert list(pipeline_run.info["pruning_skipped"]) == ["output"]
    assert sparsity["output"] < 0.05
    for name in ("dense1", "dense2"):
        assert abs(sparsity[name] - 0.75) <= SPARSITY_TOLERANCE, (name, sparsity[name])


def test_prune_cnn_reaches_target_and_leaves_exact_zeros(small_data: Any) -> None:
    from edgekit.workstation.train import build_model

    cfg = TrainConfig(arch="cnn", hidden_units=(16,), epochs=1, batch_size=64, seed=3)
    model = build_model(cfg, small_data.input_shape, small_data.num_classes)
    before = {w.name: w.numpy().copy() for w in model.weights}
    result = prune_model(
        model, small_data, PruneConfig(target_sparsity=0.6, epochs=2, batch_size=64)
    )
    # conv1 (3x3x1x32 = 288 weights) and the 16x10 output kernel are under min_weights=512:
    # they stay dense, and the result says so.
    assert set(result.skipped) == {"conv1", "output"}
    assert result.kernel_sparsity["conv1"] < 0.05
    assert set(result.pruned_sparsity) == {"conv2", "conv3", "conv4", "dense5"}
    for name, value in result.pruned_sparsity.items():
        assert abs(value - 0.6) <= SPARSITY_TOLERANCE, (name, value)
    # Stripped: plain layers, no pruning wrappers, zeros stored as exact 0.0.
    assert not any("prune" in type(layer).__name__.lower() for layer in result.model.layers)
    kernel = result.model.get_layer("conv2").kernel.numpy()
    assert np.count_nonzero(kernel == 0.0) == pytest.approx(
        0.6 * kernel.size, abs=0.01 * kernel.size
    )
    # The input model is not pruned in place.
    after = {w.name: w.numpy() for w in model.weights}
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert kernel_sparsity(model)["conv2"] < 0.1

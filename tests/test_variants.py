"""The variant planner: the files each export setting asks for, and the budget search's ladder.

Planning makes no file (each variant's `build` runs only when the export asks for its bytes),
so these tests need no model and no TensorFlow conversion. The expected plans are those the
planner made before it became a class (closures in `plan_variants`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgekit.core.config import DataConfig, ExportConfig
from edgekit.core.errors import ExportError
from edgekit.core.recipes import ENGINES, recipe_for
from edgekit.workstation.export.aeq import aeq_available
from edgekit.workstation.export.variants import ENGINE_PLANNERS, VariantPlanner, plan_variants

X = np.zeros((8, 4), np.float32)
SEARCH_TAIL = [
    ("dynamic", False),
    ("int8", False),
    ("int8_float1", False),
    ("int8_float2", False),
    ("int8_float3", False),
]
INT4_FIRST = [("int4", False)] if aeq_available() else []


def _tags(variants: list[Any]) -> list[tuple[str, bool]]:
    return [(v.tag, v.requested) for v in variants]


def test_the_default_export_plans_float32_float16_int8_and_no_ladder() -> None:
    requested, ladder = plan_variants(object(), X, ExportConfig())
    assert _tags(requested) == [("float32", True), ("float16", True), ("int8", True)]
    assert [v.engine for v in requested] == [ENGINES["converter"]] * 3
    assert ladder == []


def test_search_with_qat_mc_and_auto_float_layers_plans_as_before() -> None:
    config = ExportConfig(
        precisions=("int8", "int4"), search=True, float_layers="auto:2", mc_samples=(5, 10)
    )
    requested, ladder = plan_variants(
        object(), X, config, qat_model=lambda: None, qat_requested=True
    )
    assert _tags(requested) == [
        ("int8", True),
        ("int4", True),
        ("mc5_float32", True),
        ("mc5_int8", True),
        ("mc10_float32", True),
        ("mc10_int8", True),
        ("int8_float2", True),
        ("int8_qat", True),
    ]
    assert requested[1].engine == ENGINES["ai-edge-quantizer"]
    assert requested[6].description == "int8 with the 2 worst layer(s) kept float"
    assert requested[6].check is None  # the worst layers are known only once measured
    assert requested[7].description == "int8 from quantization-aware training"
    assert _tags(ladder) == [
        *INT4_FIRST,
        *SEARCH_TAIL,
        ("int8_qat", False),
        ("int16x8", False),
        ("float16", False),
        ("float32", False),
    ]


def test_named_float_layers_int4_layers_and_mc_masks_plan_as_before() -> None:
    config = ExportConfig(
        precisions=("int4_int8", "float16"),
        float_layers="dense1,dense2",
        int4_layers="dense.*",
        calibration_seed=3,
        mc_masks="random",
        mc_samples=(3,),
    )
    requested, ladder = plan_variants(object(), X, config)
    assert _tags(requested) == [
        ("int4_int8", True),
        ("float16", True),
        ("mc3_float32", True),
        ("mc3_int8", True),
        ("int8_float", True),
    ]
    assert requested[0].description == "int4 weights for dense.*, int8 for the rest"
    assert requested[2].info() == {
        "tag": "mc3_float32",
        "engine": ENGINES["converter"] + " (MC dropout)",
        "mc": {
            "samples": 3,
            "masks": "random",
            "seed": 3,
            "outputs": ["mc_mean", "mc_std", "mc_entropy"],
        },
        "description": "mean, std and entropy of 3 dropout passes in one invoke",
    }
    named = requested[4]
    assert named.float_layers == ["dense1", "dense2"]
    assert named.description == "int8 with dense1, dense2 kept float"
    assert named.check is not None  # a layer name the model lacks fails before any file
    assert ladder == []


def test_search_without_a_qat_model_leaves_qat_off_the_ladder() -> None:
    requested, ladder = plan_variants(
        object(), X, ExportConfig(precisions=("dynamic",), search=True)
    )
    assert _tags(requested) == [("dynamic", True)]
    assert ("int8_qat", False) not in _tags(ladder)
    assert _tags(ladder)[-3:] == [("int16x8", False), ("float16", False), ("float32", False)]


def test_qat_asked_for_without_a_qat_model_is_a_one_line_error() -> None:
    with pytest.raises(ExportError, match="--qat needs a tf_keras model"):
        plan_variants(object(), X, ExportConfig(), qat_model=None, qat_requested=True)


def test_the_seed_comes_from_the_config() -> None:
    assert VariantPlanner(object(), X, ExportConfig(calibration_seed=11)).seed == 11
    # No seed given (an ExportConfig outside a PipelineConfig): the default data seed.
    assert VariantPlanner(object(), X, ExportConfig()).seed == DataConfig().seed


def test_every_engine_of_the_recipes_has_a_planner() -> None:
    assert set(ENGINE_PLANNERS) == set(ENGINES)


@pytest.mark.skipif(not aeq_available(), reason="int4 needs ai-edge-quantizer (edgekit[int4])")
def test_the_float32_file_is_converted_once_for_itself_and_for_int4(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from edgekit.core.config import Precision
    from edgekit.workstation._keras import keras
    from edgekit.workstation.export import converter

    model = keras.Sequential(
        [keras.layers.Input((16,)), keras.layers.Dense(32), keras.layers.Dense(4)]
    )
    real = converter.convert
    made: list[str] = []

    def counted(m: Any, recipe: Any, *args: Any, **kw: Any) -> bytes:
        made.append(recipe.precision.value)
        return real(m, recipe, *args, **kw)

    monkeypatch.setattr(converter, "convert", counted)
    x = np.random.default_rng(0).random((64, 16), dtype=np.float32)
    planner = VariantPlanner(model, x, ExportConfig(precisions=("float32", "int4")))
    float32 = planner.precision(Precision.FLOAT32, True).build()
    int4 = planner.precision(Precision.INT4, True).build()
    assert made == ["float32"]  # int4 was made from the same float32 bytes
    assert float32 == real(model, recipe_for(Precision.FLOAT32))
    assert len(int4) < len(float32)

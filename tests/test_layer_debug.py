"""Per-node int8 error (QuantizationDebugger) and int8 files with chosen nodes kept float.

A SELU MLP trained on real Fashion-MNIST: TFLite has no SELU op (it becomes GREATER, MUL, EXP,
SUB, MUL, SELECT_V2) and int8 loses several points on it, so the report must put SELU's nodes
first and keeping them float must win the points back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from test_no_tensorflow import SITECUSTOMIZE

from edgekit.cli.report.quantize import (
    ROUNDING_NOISE,
    print_quantize_report,
    quantize_json,
    write_quantize_outputs,
)
from edgekit.core.errors import EdgekitError, ExportError
from edgekit.core.float_layers import parse_float_layers
from edgekit.device.modelfile import parse_model_bytes
from edgekit.device.runtime import evaluate, input_details, load_interpreter, output_details

KERNELS = {"hidden1": 784 * 64, "hidden2": 64 * 32, "logits": 32 * 10}


@pytest.fixture(scope="module")
def selu(small_data: Any) -> SimpleNamespace:
    """The SELU MLP, its per-node errors, and the plain int8 file of edgekit's recipe."""
    from edgekit.core.recipes import recipe_for
    from edgekit.workstation._keras import keras, set_determinism
    from edgekit.workstation.export.converter import convert
    from edgekit.workstation.export.layer_debug import debug_layers

    set_determinism(7)
    selu_dense = {"activation": "selu", "kernel_initializer": "lecun_normal"}
    model = keras.Sequential(
        [
            keras.layers.Input((28, 28), name="image"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(64, name="hidden1", **selu_dense),
            keras.layers.Dense(32, name="hidden2", **selu_dense),
            keras.layers.Dense(10, activation="softmax", name="logits"),
        ],
        name="selu_mlp",
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.asarray(small_data.x_train)
    model.fit(x, small_data.y_train, epochs=3, batch_size=64, verbose=0)
    int8 = convert(model, recipe_for("int8"), x)
    float32 = convert(model, recipe_for("float32"))
    return SimpleNamespace(
        model=model,
        x=x,
        x_test=small_data.x_test,
        y_test=small_data.y_test,
        errors=debug_layers(model, x),
        int8=int8,
        int8_accuracy=evaluate(int8, small_data.x_test, small_data.y_test).accuracy,
        float_accuracy=evaluate(float32, small_data.x_test, small_data.y_test).accuracy,
    )


def accuracy(selu: SimpleNamespace, data: bytes) -> float:
    return evaluate(data, selu.x_test, selu.y_test).accuracy


def tensor_types(data: bytes) -> dict[str, str]:
    return {t.name: t.dtype for t in parse_model_bytes(data).tensors}


def test_int8_loses_points_on_selu(selu: SimpleNamespace) -> None:
    # The premise of the other tests: plain int8 is clearly worse than float here.
    assert selu.int8_accuracy < selu.float_accuracy - 0.03


def test_report_puts_the_selu_nodes_first(selu: SimpleNamespace) -> None:
    errors = selu.errors
    scores = [e.rmse_scale for e in errors]
    assert scores == sorted(scores, reverse=True)
    for worst in errors[:2]:
        assert worst.op == "MUL" and "/Selu" in worst.name
        assert worst.layer in ("hidden1", "hidden2")
        assert worst.rmse_scale > 10 * ROUNDING_NOISE
    ops = {e.op for e in errors}
    assert {"FULLY_CONNECTED", "EXP", "SUB", "SELECT_V2", "SOFTMAX"} <= ops
    fully_connected = {e.layer: e.weights for e in errors if e.op == "FULLY_CONNECTED"}
    assert fully_connected == KERNELS
    assert all(e.weights == 0 for e in errors if e.op != "FULLY_CONNECTED")
    # The model's output keeps no layer in its tensor name: it is the output layer's.
    (softmax,) = [e for e in errors if e.op == "SOFTMAX"]
    assert (softmax.name, softmax.layer) == ("StatefulPartitionedCall:0", "logits")
    # Every node is a tensor of edgekit's plain int8 file, quantized there.
    types = tensor_types(selu.int8)
    assert all(types[e.name] == "int8" for e in errors)
    row = errors[0].to_dict()
    assert set(row) == {
        "name",
        "op",
        "layer",
        "weights",
        "rmse_scale",
        "mean_abs_error",
        "mean_squared_error",
        "scale",
    }
    assert row["scale"] > 0 and row["mean_abs_error"] > 0


def test_no_fallback_gives_edgekits_int8_file(selu: SimpleNamespace) -> None:
    from edgekit.workstation.export.layer_debug import convert_int8_with_float_layers

    data = convert_int8_with_float_layers(selu.model, [], selu.x)
    ops = parse_model_bytes(data).operators
    assert "DEQUANTIZE" not in ops and "QUANTIZE" not in ops
    mine, plain = load_interpreter(data), load_interpreter(selu.int8)
    for info in (input_details, output_details):
        assert [(t.dtype, t.scale, t.zero_point) for t in info(mine)] == [
            (t.dtype, t.scale, t.zero_point) for t in info(plain)
        ]
        assert info(mine)[0].dtype == "int8"
    a = evaluate(data, selu.x_test, selu.y_test)
    b = evaluate(selu.int8, selu.x_test, selu.y_test)
    np.testing.assert_array_equal(a.outputs, b.outputs)  # same calibration, same file body


def test_the_worst_nodes_named_stay_float(selu: SimpleNamespace) -> None:
    from edgekit.workstation.export.layer_debug import convert_int8_with_float_layers

    for k in (1, 2, 3):
        names, auto = parse_float_layers(f"auto:{k}")
        assert (names, auto) == ([], k)
        nodes = [e.name for e in selu.errors[:k]]  # the report ranks the worst first
        data = convert_int8_with_float_layers(selu.model, nodes, selu.x)
        parsed = parse_model_bytes(data)
        assert parsed.operators.get("DEQUANTIZE", 0) >= 1
        assert parsed.operators.get("QUANTIZE", 0) >= 1
        types = tensor_types(data)
        assert all(types[n] == "float32" for n in nodes)
        assert parsed.inputs[0].dtype == parsed.outputs[0].dtype == "int8"
        assert parsed.bytes > len(selu.int8)
        # The worst nodes by rmse/scale are the MULs after EXP: kept float alone, they are fed
        # EXP's coarse int8 output, so they buy little. They must not cost accuracy either.
        assert accuracy(selu, data) >= selu.int8_accuracy - 0.01


def test_keeping_the_worst_layers_chain_float_wins_the_points_back(
    selu: SimpleNamespace,
) -> None:
    from edgekit.workstation.export.layer_debug import (
        convert_int8_with_float_layers,
        worst_layer_nodes,
    )

    nodes = worst_layer_nodes(selu.errors, 1)
    layer = selu.errors[0].layer
    assert nodes and all(
        e.layer == layer and e.weights == 0 for e in selu.errors if e.name in nodes
    )
    assert {e.op for e in selu.errors if e.name in nodes} >= {"EXP", "SUB", "MUL"}
    data = convert_int8_with_float_layers(selu.model, nodes, selu.x)
    gained = accuracy(selu, data)
    assert gained >= selu.int8_accuracy + 0.02
    assert gained >= selu.float_accuracy - 0.01
    # Its kernels stay int8: a few hundred bytes more than plain int8, no float weights.
    parsed = parse_model_bytes(data)
    assert len(selu.int8) < parsed.bytes < len(selu.int8) + 2048
    assert all(w.dtype == "int8" for w in parsed.weights)


def test_a_keras_layer_name_keeps_all_its_nodes_float(selu: SimpleNamespace) -> None:
    from edgekit.workstation.export.layer_debug import convert_int8_with_float_layers

    data = convert_int8_with_float_layers(selu.model, ["hidden2"], selu.x)
    types = tensor_types(data)
    hidden2 = [e.name for e in selu.errors if e.layer == "hidden2"]
    assert len(hidden2) == 6  # FULLY_CONNECTED + SELU's five quantized ops
    assert all(types[n] == "float32" for n in hidden2)
    float_kernels = [w for w in parse_model_bytes(data).weights if w.dtype == "float32"]
    assert [w.elements for w in float_kernels] == [KERNELS["hidden2"]]
    assert accuracy(selu, data) >= selu.int8_accuracy + 0.02


def test_an_unknown_name_is_refused_in_one_line(selu: SimpleNamespace) -> None:
    from edgekit.workstation.export.layer_debug import convert_int8_with_float_layers

    with pytest.raises(ExportError) as info:
        convert_int8_with_float_layers(selu.model, ["hidden2", "dense_9"], selu.x)
    assert str(info.value) == (
        "no layer named dense_9 in the model: pick from flat, hidden1, hidden2, logits, "
        "selu_mlp/flat/Reshape, ...; `edgekit quantize-report` lists them"
    )


def test_a_layer_without_quantized_ops_and_missing_data_are_refused(small_data: Any) -> None:
    from edgekit.workstation._keras import keras
    from edgekit.workstation.export.layer_debug import convert_int8_with_float_layers

    model = keras.Sequential(
        [
            keras.layers.Input((28, 28)),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dropout(0.2, name="drop"),
            keras.layers.Dense(10, name="out"),
        ],
        name="tiny",
    )
    x = np.asarray(small_data.x_train[:50])
    with pytest.raises(
        ExportError,
        match=r"^layer drop has no quantized op in the converted "
        r"model: pick from flat, out, tiny/flat/Reshape",
    ):
        convert_int8_with_float_layers(model, ["drop"], x)
    with pytest.raises(
        ExportError,
        match=r"^int8 quantization needs a calibration set, got "
        r"none: pass training data \(--data\)",
    ):
        convert_int8_with_float_layers(model, [], x[:0])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "",
            "--float-layers is empty: pass layer names separated by commas (e.g. "
            "dense_1,dense_2) or auto:K (e.g. auto:3)",
        ),
        (
            "  ",
            "--float-layers is empty: pass layer names separated by commas (e.g. "
            "dense_1,dense_2) or auto:K (e.g. auto:3)",
        ),
        (
            "auto:0",
            "--float-layers auto:0: K must be an integer >= 1, got '0'; e.g. auto:3 "
            "keeps the 3 worst layers float",
        ),
        (
            "auto:x",
            "--float-layers auto:x: K must be an integer >= 1, got 'x'; e.g. auto:3 "
            "keeps the 3 worst layers float",
        ),
        (
            "auto:-2",
            "--float-layers auto:-2: K must be an integer >= 1, got '-2'; e.g. auto:3 "
            "keeps the 3 worst layers float",
        ),
        (
            "auto:",
            "--float-layers auto:: K must be an integer >= 1, got ''; e.g. auto:3 "
            "keeps the 3 worst layers float",
        ),
        (
            "dense_1,,dense_2",
            "--float-layers 'dense_1,,dense_2' holds an empty name: pass "
            "names separated by single commas, e.g. dense_1,dense_2",
        ),
    ],
)
def test_bad_float_layer_specs_are_refused_in_one_line(spec: str, message: str) -> None:
    with pytest.raises(EdgekitError) as info:
        parse_float_layers(spec)
    assert str(info.value) == message
    assert "\n" not in message


def test_good_float_layer_specs() -> None:
    assert parse_float_layers("auto:3") == ([], 3)
    assert parse_float_layers(" AUTO:12 ") == ([], 12)
    assert parse_float_layers("dense_1") == (["dense_1"], None)
    assert parse_float_layers("a/b;c, dense_1 ,a/b;c") == (["a/b;c", "dense_1"], None)


def test_worst_layer_nodes_needs_k_of_at_least_one(selu: SimpleNamespace) -> None:
    from edgekit.workstation.export.layer_debug import worst_layer_nodes

    with pytest.raises(ExportError, match=r"^auto:K needs K >= 1, got 0: e\.g\. auto:3$"):
        worst_layer_nodes(selu.errors, 0)
    nodes = worst_layer_nodes(selu.errors, 1000)  # more than there are: every layer
    assert {e.layer or e.name for e in selu.errors if e.name in nodes} == {
        e.layer or e.name for e in selu.errors
    }


def test_report_writers(selu: SimpleNamespace, tmp_path: Path) -> None:
    from rich.console import Console

    rows = [e.to_dict() for e in selu.errors]
    rows.append({**rows[-1], "name": "nan/node", "rmse_scale": float("nan")})
    paths = write_quantize_outputs(
        rows,
        tmp_path / "q.json",
        tmp_path / "md" / "q.md",
        tmp_path / "q.png",
        meta={"model": "selu_mlp", "samples": 100},
    )
    assert [p.name for p in paths] == ["q.json", "q.md", "q.png"]
    loaded = json.loads((tmp_path / "q.json").read_text())
    assert loaded["meta"] == {"model": "selu_mlp", "samples": 100}
    assert [r["name"] for r in loaded["layers"]] == [r["name"] for r in rows]
    assert loaded["layers"][0]["rmse_scale"] == pytest.approx(selu.errors[0].rmse_scale)
    assert loaded["layers"][-1]["rmse_scale"] is None  # NaN stays valid JSON
    assert json.loads(quantize_json(rows)) == {**loaded, "meta": {}}
    md = (tmp_path / "md" / "q.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 2 + len(rows)
    assert f"`{rows[0]['name']}`" in table[2] and "| MUL |" in table[2]
    assert (tmp_path / "q.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".edgekit-tmp-*"))
    console = Console(record=True, width=220)
    print_quantize_report(rows, console=console)
    text = console.export_text()
    assert rows[0]["name"] in text and "rounding" in text
    assert "node(s) above 3x rounding noise" in text


def test_the_report_and_the_spec_parser_need_no_tensorflow(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), root, env.get("PYTHONPATH", "")])
    code = (
        "import sys, edgekit.cli.report.quantize, edgekit.core.float_layers as s\n"
        "assert s.parse_float_layers('auto:2') == ([], 2)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"

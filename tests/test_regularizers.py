"""Every regularizer of the guidance as a training option, on a tiny real model.

Each option builds the layer it names, trains 1 epoch on 3,000 real Fashion-MNIST samples, and
survives pruning; SELU is the int8-friendly form (equal to Keras' selu), ELU's float op in an
int8 file is named; bad values end in one line before TensorFlow is imported.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_no_tensorflow import SITECUSTOMIZE

from edgekit.core.config import PruneConfig, TrainConfig
from edgekit.core.errors import EdgekitError

TINY = TrainConfig(hidden_units=(48, 24), epochs=1, batch_size=64, seed=7)


def _train(config: TrainConfig, data: Any) -> Any:
    from edgekit.workstation.train import build_model, train_model

    model = build_model(config, data.input_shape, data.num_classes)
    result = train_model(model, data, config, progress=lambda msg: None)
    assert result.epochs_run == 1 and np.isfinite(result.history["loss"]).all()
    return result.model


def _layers(model: Any, kind: str) -> list[Any]:
    return [layer for layer in model.layers if type(layer).__name__ == kind]


# ---- the SELU that quantizes, and ELU said out loud ------------------------------------------
def test_selu_equals_keras_selu_to_1e_6() -> None:
    from edgekit.workstation._keras import keras
    from edgekit.workstation.train.activations import SELU

    x = np.concatenate([np.linspace(-60, 60, 100_001), [0.0, -0.0, 1e-7, -1e-7]])
    x = x.astype(np.float32)
    ours = SELU()(x).numpy()
    theirs = keras.activations.selu(x).numpy()
    assert np.isfinite(ours).all()
    assert np.abs(ours - theirs).max() <= 1e-6


def test_selu_model_saves_folds_and_reloads_in_safe_mode(small_data: Any, tmp_path: Path) -> None:
    """The folded .keras edgekit exports (custom SELU) and a trained .keras (OneCycle in its
    compile config) reload through edgekit's safe-mode loader, with the same outputs."""
    from edgekit.workstation.export.model_io import load_keras_model, save_keras_atomic
    from edgekit.workstation.optimize.fold import fold_batchnorm
    from edgekit.workstation.train import build_model, compile_model

    cfg = dataclasses.replace(TINY, activation="selu", init="lecun", batch_norm=True)
    model = build_model(cfg, small_data.input_shape, small_data.num_classes)
    compile_model(model, 1e-3, decay_steps=100, optimizer="nadam", lr_schedule="1cycle")
    model.fit(small_data.x_train[:640], small_data.y_train[:640], batch_size=64, verbose=0)
    assert len(_layers(model, "SELU")) == 2
    trained = tmp_path / "trained.keras"
    save_keras_atomic(model, trained)  # compiled: the optimizer's OneCycle is in the file
    folded = fold_batchnorm(model).model
    assert not _layers(folded, "BatchNormalization")
    save_keras_atomic(folded, tmp_path / "folded.keras")
    x = small_data.x_test[:200]
    for path, ref in ((trained, model), (tmp_path / "folded.keras", folded)):
        back = load_keras_model(path)
        assert [type(lyr).__name__ for lyr in back.layers] == [
            type(lyr).__name__ for lyr in ref.layers
        ]
        np.testing.assert_allclose(back.predict(x, verbose=0), ref.predict(x, verbose=0), atol=1e-5)


@pytest.fixture(scope="module")
def int8_files(small_data: Any) -> dict[str, tuple[bytes, float]]:
    """int8 files of the tiny mlp with selu (trained 1 epoch), elu and relu (as built: the ops
    do not depend on training): (bytes, float Keras accuracy)."""
    from edgekit.core.config import Precision
    from edgekit.core.recipes import RECIPES
    from edgekit.workstation.export.converter import convert
    from edgekit.workstation.train import build_model, keras_accuracy

    out = {}
    for act in ("selu", "elu", "relu"):
        init = "lecun" if act == "selu" else "he"
        cfg = dataclasses.replace(TINY, activation=act, batch_norm=False, init=init)
        if act == "selu":
            model = _train(cfg, small_data)
        else:
            model = build_model(cfg, small_data.input_shape, small_data.num_classes)
        blob = convert(model, RECIPES[Precision.INT8], small_data.x_train, 200, 7)
        out[act] = (blob, keras_accuracy(model, small_data.x_test, small_data.y_test))
    return out


def test_selu_int8_file_is_all_integer_and_keeps_accuracy(int8_files: Any, small_data: Any) -> None:
    from edgekit.device.opcheck import compute_layers, float_ops, precision_problems
    from edgekit.device.runtime import evaluate

    blob, keras_acc = int8_files["selu"]
    assert float_ops(blob) == []
    assert precision_problems(blob, "int8") == []
    # One FULLY_CONNECTED per Dense: the form with relu(x) made the converter duplicate them.
    assert len(compute_layers(blob)) == 3
    acc = evaluate(blob, small_data.x_test, small_data.y_test).accuracy
    assert acc >= keras_acc - 0.01, (acc, keras_acc)


def test_elu_kept_float_in_an_int8_file_is_named(int8_files: Any) -> None:
    from edgekit.device.opcheck import float_ops, precision_problems

    blob, _ = int8_files["elu"]
    found = float_ops(blob)
    assert [f.split()[0] for f in found] == ["ELU", "ELU"], found
    assert "act1" in found[0] and "act2" in found[1]
    assert precision_problems(blob, "int8") == []  # the compute layers alone do not show it
    assert float_ops(int8_files["relu"][0]) == []


def test_float_ops_is_empty_for_a_float_file(small_data: Any) -> None:
    from edgekit.core.config import Precision
    from edgekit.core.recipes import RECIPES
    from edgekit.device.opcheck import float_ops
    from edgekit.workstation.export.converter import convert
    from edgekit.workstation.train import build_model

    model = build_model(dataclasses.replace(TINY, activation="elu"), (28, 28), 10)
    assert float_ops(convert(model, RECIPES[Precision.FLOAT32])) == []


# ---- every option builds what it says and trains --------------------------------------------
def _config(model: Any, name: str, key: str) -> Any:
    return model.get_layer(name).get_config()[key]


def _column_norms(model: Any) -> np.ndarray:
    kernels = [model.get_layer(n).kernel.numpy() for n in ("dense1", "dense2")]
    return np.concatenate([np.linalg.norm(k, axis=0) for k in kernels])


# Four trainings cover every option: each combination is one real model trained 1 epoch.
COMBINATIONS = {
    "l1_l2+dropout2+max_norm+lecun+elu+nadam+1cycle+standardize": {
        "l1": 1e-5,
        "l2": 1e-3,
        "dropout": 0.25,
        "dropout_layers": 2,
        "max_norm": 0.5,
        "init": "lecun",
        "activation": "elu",
        "optimizer": "nadam",
        "lr_schedule": "1cycle",
        "standardize": True,
    },
    "selu+alpha_dropout+no_bn+momentum+constant": {
        "activation": "selu",
        "alpha_dropout": 0.1,
        "batch_norm": False,
        "init": "lecun",
        "optimizer": "momentum",
        "lr_schedule": "constant",
        "l1": 0.0,
    },
    "leaky_relu+l2+dropout1+rmsprop": {
        "activation": "leaky_relu",
        "l1": 0.0,
        "l2": 1e-4,
        "dropout": 0.3,
        "optimizer": "rmsprop",
    },
    "relu+no_regularizer+adam+cosine": {"l1": 0.0},
}


def _check_combination(name: str, m: Any) -> None:
    reg = _config(m, "dense1", "kernel_regularizer")
    opt = m.optimizer
    if name.startswith("l1_l2"):
        assert reg["class_name"] == "L1L2" and len(m.losses) == 2
        assert [(lyr.name, lyr.rate) for lyr in _layers(m, "Dropout")] == [
            ("dropout1", 0.25),
            ("dropout2", 0.25),
        ]
        assert _config(m, "dense2", "kernel_constraint")["config"]["max_value"] == 0.5
        assert _column_norms(m).max() <= 0.5 + 1e-5  # the constraint held while training
        assert _config(m, "dense1", "kernel_initializer")["class_name"] == "LecunNormal"
        assert len(_layers(m, "ELU")) == 2 and len(_layers(m, "BatchNormalization")) == 2
        assert type(opt).__name__ == "Nadam" and type(opt._learning_rate).__name__ == "OneCycle"
        # adapted to the 3,000 training images: Fashion-MNIST pixels average 0.286
        assert abs(float(np.asarray(m.get_layer("standardize").mean).mean()) - 0.286) < 0.01
    elif name.startswith("selu"):
        assert reg is None and not m.losses and not _layers(m, "BatchNormalization")
        assert _config(m, "dense1", "use_bias")
        assert len(_layers(m, "SELU")) == 2
        assert [(lyr.name, lyr.rate) for lyr in _layers(m, "AlphaDropout")] == [
            ("alpha_dropout2", 0.1)
        ]
        assert type(opt).__name__ == "SGD" and opt.get_config()["nesterov"]
        assert float(opt.get_config()["learning_rate"]) == pytest.approx(1e-3)
    elif name.startswith("leaky"):
        assert reg["class_name"] == "L2" and len(_layers(m, "LeakyReLU")) == 2
        assert [(lyr.name, lyr.rate) for lyr in _layers(m, "Dropout")] == [("dropout2", 0.3)]
        assert type(opt).__name__ == "RMSprop"
        assert _config(m, "dense1", "kernel_initializer")["class_name"] == "HeNormal"
    else:
        assert reg is None and not m.losses and not _layers(m, "Dropout")
        assert len(_layers(m, "ReLU")) == 2 and _config(m, "dense1", "kernel_constraint") is None
        assert type(opt).__name__ == "Adam"
        assert type(opt._learning_rate).__name__ == "CosineDecay"


@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_options_build_their_layers_and_train(name: str, small_data: Any) -> None:
    model = _train(dataclasses.replace(TINY, **COMBINATIONS[name]), small_data)
    _check_combination(name, model)


def test_dropout_defaults_to_none_on_mlp_and_0_3_on_cnn(small_data: Any) -> None:
    from edgekit.workstation.train import build_model

    assert TrainConfig().dropout_rate == 0.0 and TrainConfig(arch="cnn").dropout_rate == 0.3
    cnn = build_model(TrainConfig(arch="cnn", hidden_units=(16,), dropout=0.5), (28, 28), 10)
    assert [(lyr.name, lyr.rate) for lyr in _layers(cnn, "Dropout")] == [("dropout", 0.5)]
    cnn = build_model(TrainConfig(arch="cnn", hidden_units=(16,), dropout=0.0), (28, 28), 10)
    assert not _layers(cnn, "Dropout")
    conv = cnn.get_layer("conv1")
    cnn = build_model(TrainConfig(arch="cnn", hidden_units=(16,), max_norm=2.0), (28, 28), 10)
    assert cnn.get_layer("conv1").kernel_constraint.axis == [0, 1, 2]
    assert conv.kernel_constraint is None


def test_one_cycle_goes_up_over_30_percent_then_down() -> None:
    from edgekit.workstation.train.schedules import OneCycle

    sched = OneCycle(1e-2, total_steps=1000)
    lr = np.array([float(sched(s)) for s in range(0, 1101, 10)])
    peak = int(lr.argmax()) * 10
    assert peak == 300 and lr.max() == pytest.approx(1e-2)
    assert lr[0] == pytest.approx(1e-2 / 25)
    assert lr[100] == pytest.approx(1e-2 / 25 / 1e4) and lr[-1] == lr[100]  # held after the end
    assert (np.diff(lr[:31]) > 0).all() and (np.diff(lr[30:101]) < 0).all()
    again = OneCycle.from_config(sched.get_config())
    assert float(again(555)) == float(sched(555))
    with pytest.raises(EdgekitError, match=r"up_fraction must be in \(0, 1\)"):
        OneCycle(1e-2, 100, up_fraction=1.0)


# ---- all of them survive pruning -------------------------------------------------------------
def test_regularizers_constraints_and_dropout_survive_pruning(small_data: Any) -> None:
    from edgekit.workstation.train import prune_model

    cfg = dataclasses.replace(TINY, l1=0.0, l2=1e-3, max_norm=0.3, dropout=0.2, dropout_layers=2)
    model = _train(cfg, small_data)
    # A rate high enough that the column norms would grow: to 0.90 without the constraint.
    prune = PruneConfig(
        target_sparsity=0.5, epochs=2, batch_size=64, min_weights=256, learning_rate=5e-3
    )
    result = prune_model(model, small_data, prune)
    pruned = result.model
    assert result.pruned_sparsity == pytest.approx({"dense1": 0.5, "dense2": 0.5}, abs=0.01)
    # The L2 losses of both hidden kernels are still there, and still the L2 of the kernels.
    assert len(pruned.losses) == 2
    expected = sum(
        1e-3 * float((pruned.get_layer(n).kernel.numpy() ** 2).sum()) for n in ("dense1", "dense2")
    )
    assert float(sum(pruned.losses)) == pytest.approx(expected, rel=1e-4)
    assert pruned.get_layer("dense1").get_config()["kernel_constraint"] is not None
    assert _column_norms(pruned).max() <= 0.3 + 1e-5
    assert [lyr.rate for lyr in _layers(pruned, "Dropout")] == [0.2, 0.2]


# ---- bad values: one line, before TensorFlow -------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--dropout", "-0.1"],
            "dropout must be in [0, 1), got -0.1: it is the fraction of "
            "units dropped; pass e.g. 0.2 (0 turns it off)",
        ),
        (
            ["--dropout", "1"],
            "dropout must be in [0, 1), got 1.0: it is the fraction of units "
            "dropped; pass e.g. 0.2 (0 turns it off)",
        ),
        (
            ["--alpha-dropout", "0.1"],
            "alpha_dropout=0.1 with the relu activation: alpha "
            "dropout keeps SELU's self-normalization; with relu use --dropout (--alpha-dropout 0 "
            "turns it off)",
        ),
        (
            ["--activation", "selu", "--alpha-dropout", "1.5"],
            "alpha_dropout must be in [0, 1), "
            "got 1.5: it is the fraction of units dropped; pass e.g. 0.1 (0 turns it off)",
        ),
        (
            ["--activation", "selu", "--alpha-dropout", "0.1", "--dropout", "0.2"],
            "both "
            "dropout=0.2 and alpha_dropout=0.1: pass one of them (alpha dropout for selu, dropout "
            "for the others)",
        ),
        (["--l2", "-1e-4"], "l2 must be >= 0, got -0.0001: pass e.g. 1e-5, or 0 to turn L2 off"),
        (["--l1-l2", "1e-5"], "--l1-l2 must be two factors L1,L2, e.g. 1e-5,1e-4, got '1e-5'"),
        (["--l1-l2", "1e-5,-1"], "l2 must be >= 0, got -1.0: pass e.g. 1e-5, or 0 to turn L2 off"),
        (
            ["--l1-l2", "1e-5,1e-4", "--l1", "0"],
            "--l1-l2 sets both factors: pass it or --l1/--l2, not both",
        ),
        (
            ["--max-norm", "0"],
            "max_norm must be > 0, got 0.0: pass e.g. 1 (the largest norm a "
            "kernel column may have), or omit it",
        ),
        (
            ["--dropout", "0.2", "--dropout-layers", "3"],
            "dropout_layers must be in [1, 2] (the "
            "mlp's hidden Dense layers), got 3: pass e.g. 1 for the top one",
        ),
    ],
)
def test_bad_values_fail_in_one_line_before_tensorflow(
    args: list[str], message: str, tmp_path: Path
) -> None:
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)  # importing TensorFlow fails
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), repo, env.get("PYTHONPATH", "")])
    env["EDGEKIT_TF_IMPORT_LOG"] = str(tmp_path / "attempts.log")
    proc = subprocess.run(
        [sys.executable, "-m", "edgekit.cli.main", "train", *args, "-o", str(tmp_path / "m.keras")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"Error: {message}"
    assert not (tmp_path / "attempts.log").exists()  # TensorFlow was never imported

"""The guidance's presets: their settings, explicit options over them, the pruning warning, and
each one trained (1 epoch, 3,000 real Fashion-MNIST samples) and exported."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from edgekit.cli.build import pipeline_config_from_options
from edgekit.cli.options import data_options, export_options, train_options
from edgekit.core.build import build_config
from edgekit.core.config import TrainConfig
from edgekit.core.errors import EdgekitError
from edgekit.core.presets import PRESETS, preset_settings, pruning_warning

TINY = TrainConfig(hidden_units=(48, 24), epochs=1, batch_size=64, seed=7)
TINY_OPTIONS = {"hidden": (48, 24), "epochs": 1, "batch_size": 64, "seed": 7}


def apply_preset(
    name: str, options: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
) -> tuple[TrainConfig, bool]:
    """(TrainConfig, whether it prunes) of preset `name` over `options`, `overrides` on top,
    as edgekit.core.build.build_config makes them (every option given counts as explicit)."""
    config = build_config({**(options or {}), **(overrides or {})}, preset=name)
    return config.train, config.prune is not None


SMALL = [
    "--train-samples",
    "3000",
    "--test-samples",
    "1000",
    "--validation-size",
    "500",
    "--hidden",
    "48,24",
    "--epochs",
    "1",
    "--batch-size",
    "64",
    "--calibration-samples",
    "100",
    "--seed",
    "7",
]


def test_fast_is_todays_pipeline() -> None:
    assert apply_preset("fast") == (TrainConfig(), True)


def test_every_setting_is_a_train_config_field_or_prune() -> None:
    fields = {f.name for f in dataclasses.fields(TrainConfig)} | {"prune"}
    for name, settings in PRESETS.items():
        assert set(settings) <= fields, name
        assert set(settings) == set(PRESETS["fast"]), name  # each preset sets the same keys


def test_guidance_settings() -> None:
    default, prunes = apply_preset("default")
    assert (default.init.value, default.activation.value, default.batch_norm) == ("he", "elu", True)
    assert (default.optimizer.value, default.lr_schedule.value) == ("nadam", "1cycle")
    assert default.l2 > 0 and default.l1 == 0 and default.patience > 0 and not prunes
    selfnorm, prunes = apply_preset("self-normalizing")
    assert (selfnorm.init.value, selfnorm.activation.value, selfnorm.batch_norm) == (
        "lecun",
        "selu",
        False,
    )
    assert selfnorm.alpha_dropout > 0 and selfnorm.standardize and not prunes
    assert selfnorm.lr_schedule.value == "1cycle" and selfnorm.l1 == selfnorm.l2 == 0
    sparse, prunes = apply_preset("sparse")
    assert dataclasses.replace(sparse, l1=0.0) == default and sparse.l1 > 0 and prunes


def test_unknown_preset_and_overrides() -> None:
    with pytest.raises(
        EdgekitError,
        match="^unknown preset 'slow': expected one of default, self-normalizing, sparse, fast$",
    ):
        preset_settings("slow")
    assert build_config(TINY_OPTIONS).train == TINY
    cfg, _ = apply_preset("self-normalizing", TINY_OPTIONS, {"alpha_dropout": 0.2})
    assert cfg.alpha_dropout == 0.2 and cfg.hidden_units == (48, 24)
    with pytest.raises(EdgekitError, match="alpha dropout keeps SELU's self-normalization"):
        apply_preset("self-normalizing", overrides={"activation": "relu"})


def test_pruning_a_self_normalizing_net_warns_with_the_reason() -> None:
    selfnorm, _ = apply_preset("self-normalizing")
    warning = pruning_warning(selfnorm, True)
    assert warning is not None and warning.startswith("warning: pruning breaks self-normalization")
    assert pruning_warning(selfnorm, False) is None
    assert pruning_warning(apply_preset("sparse")[0], True) is None


# ---- the CLI: printed, overridden, prune resolved (no TensorFlow needed) ---------------------
@click.command()
@data_options
@train_options
@export_options
def _resolve(**kw: Any) -> None:
    """Resolve the options as `edgekit export` does, and print what it would run."""
    config = pipeline_config_from_options(kw, None)
    train = config.train
    click.echo(
        json.dumps(
            {
                "prune": config.prune is not None,
                "activation": train.activation.value,
                "l2": train.l2,
                "l1": train.l1,
                "batch_norm": train.batch_norm,
            }
        )
    )


def _run(*args: str) -> tuple[dict[str, Any], list[str]]:
    result = CliRunner().invoke(_resolve, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr.splitlines()


def test_preset_is_printed_and_explicit_options_override_it() -> None:
    out, err = _run("--preset", "default", "--activation", "relu", "--no-batch-norm")
    assert out == {"prune": False, "activation": "relu", "l2": 1e-4, "l1": 0.0, "batch_norm": False}
    assert err == [
        "preset default: init=he activation=elu batch_norm=on l1=0 l2=0.0001 standardize=off "
        "optimizer=nadam lr_schedule=1cycle prune=off (overridden by options: activation, "
        "batch_norm)"
    ]
    # --l1 1e-5 equals the option's default, and given, it still overrides the preset's l1=0
    out, _ = _run("--preset", "default", "--l1", "1e-5", "--prune")
    assert (out["l1"], out["prune"]) == (1e-5, True)
    out, _ = _run("--preset", "sparse", "--l1-l2", "0,0.01")
    assert (out["l1"], out["l2"], out["prune"]) == (0.0, 0.01, True)
    out, err = _run("--preset", "fast", "--quiet")
    assert out == {"prune": True, "activation": "relu", "l2": 0.0, "l1": 1e-5, "batch_norm": True}
    assert err == []


def test_no_preset_leaves_todays_defaults_and_pruning_undecided() -> None:
    # Pruning left undecided by the options is decided by the run: on when training.
    out, err = _run()
    assert out == {"prune": True, "activation": "relu", "l2": 0.0, "l1": 1e-5, "batch_norm": True}
    assert err == []


@pytest.mark.parametrize(
    "args",
    [
        ("--preset", "self-normalizing", "--prune"),
        ("--activation", "selu"),
        ("--preset", "self-normalizing", "--prune", "--quiet"),
    ],
)
def test_pruning_with_selu_warns_even_quietly(args: tuple[str, ...]) -> None:
    _, err = _run(*args)
    assert err[-1] == (
        "warning: pruning breaks self-normalization (SELU's mean-0, variance-1 activations need "
        "dense LeCun-initialized layers): for a sparse model use --preset sparse (He, ELU, L1 + "
        "pruning), or pass --no-prune"
    )
    _, err = _run("--preset", "self-normalizing")
    assert not any(line.startswith("warning") for line in err)


def test_preset_with_a_clashing_option_fails_in_one_line() -> None:
    result = CliRunner().invoke(_resolve, ["--preset", "self-normalizing", "--dropout", "0.2"])
    assert result.exit_code == 1
    assert str(result.exception) == (
        "both dropout=0.2 and alpha_dropout=0.1: pass one of them (alpha dropout for selu, "
        "dropout for the others)"
    )


# ---- each preset on a real model -------------------------------------------------------------
@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_trains_the_model_it_describes(name: str, small_data: Any) -> None:
    from edgekit.workstation.train import build_model, train_model

    cfg, _ = apply_preset(name, TINY_OPTIONS)
    model = build_model(cfg, small_data.input_shape, small_data.num_classes)
    result = train_model(model, small_data, cfg, progress=lambda msg: None)
    assert result.epochs_run == 1 and result.best_val_accuracy > 0.5
    kinds = [type(layer).__name__ for layer in model.layers]
    act = {"relu": "ReLU", "elu": "ELU", "selu": "SELU"}[cfg.activation.value]
    assert kinds.count(act) == 2
    assert kinds.count("BatchNormalization") == (2 if cfg.batch_norm else 0)
    assert kinds.count("AlphaDropout") == (1 if cfg.alpha_dropout else 0)
    assert ("Normalization" in kinds) == cfg.standardize
    assert type(model.optimizer).__name__.lower() == cfg.optimizer.value
    schedule = type(model.optimizer._learning_rate).__name__
    assert schedule == {"1cycle": "OneCycle", "cosine": "CosineDecay"}[cfg.lr_schedule.value]
    assert len(model.losses) == (2 if cfg.l1 or cfg.l2 else 0)


def test_export_with_the_default_preset_says_elu_stayed_float(tmp_path: Path) -> None:
    from edgekit.cli.main import main

    out = tmp_path / "art"
    result = CliRunner().invoke(
        main,
        ["export", "--preset", "default", *SMALL, "--precision", "float32,int8", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("preset default: init=he activation=elu")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["prune"] is None  # the default preset does not prune
    files = {f["precision"]: f for f in manifest["files"]}
    assert [op.split()[0] for op in files["int8"]["variant"]["float_ops"]] == ["ELU", "ELU"]
    assert "float_ops" not in (files["float32"].get("variant") or {})
    assert "note: fashion_mnist_mlp_int8.tflite keeps ELU" in result.stdout

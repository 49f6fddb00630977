"""`--augment`: parsed in core, recorded in the manifest, sweepable, seeded tf_keras layers in the
training input pipeline, never in an exported file; a given model's Random* layers are removed
before pruning, folding and export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SMALL_DATA, run_edgekit

from edgekit.cli.main import main
from edgekit.core.augment import ACCEPTED_FORMS, parse_augment
from edgekit.core.build import build_config, config_from_record
from edgekit.core.config import PipelineConfig, TrainConfig
from edgekit.core.errors import EdgekitError
from edgekit.sweep import expand_grid, parse_grid

SPEC = "flip,translate:0.1,rotate:0.05,zoom:0.1,contrast:0.1,noise:0.02"
NORMALIZED = (
    "flip:horizontal",
    "translate:0.1",
    "rotate:0.05",
    "zoom:0.1",
    "contrast:0.1",
    "noise:0.02",
)
# Operator names of image transforms and random draws: none may be in an exported file.
AUGMENTATION_OPS = ("RANDOM", "IMAGE", "TRANSFORM", "MULTINOMIAL", "REVERSE")


def test_parse_augment_normalizes_items_and_fills_defaults() -> None:
    assert parse_augment(SPEC) == NORMALIZED
    assert parse_augment(" Flip:both , zoom ") == ("flip:both", "zoom:0.1")
    assert parse_augment(["rotate", "translate:0.20"]) == ("rotate:0.05", "translate:0.2")
    assert parse_augment("none") == parse_augment(None) == parse_augment("") == ()


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("flip,twist", "'twist' is not known"),
        ("translate:2", "'translate:2': the translate value must be a number > 0 and <= 1"),
        ("rotate:0.6", "'rotate:0.6': the rotate value must be a number > 0 and <= 0.5"),
        ("zoom:x", "'zoom:x': the zoom value must be a number"),
        ("noise:-1", "'noise:-1': the noise value must be a number > 0"),
        ("flip:diagonal", "'flip:diagonal': flip takes horizontal or vertical or both"),
        ("zoom:", "'zoom:' is not known"),
        ("flip,flip:vertical", "gives flip twice ('flip' and 'flip:vertical')"),
        ("none,flip", "'none' cannot be mixed with others"),
    ],
)
def test_bad_spec_is_a_one_line_error_naming_the_item_and_the_forms(spec: str, named: str) -> None:
    with pytest.raises(EdgekitError) as e:
        TrainConfig(augment=spec)  # type: ignore[arg-type]
    message = str(e.value)
    assert "\n" not in message
    assert named in message and message.endswith(ACCEPTED_FORMS)


def test_augment_goes_through_the_builder_and_round_trips_through_the_manifest_dict() -> None:
    config = build_config({"augment": "flip,translate:0.1"}, seed=3)
    assert config.train.augment == ("flip:horizontal", "translate:0.1")
    record = json.loads(json.dumps(config.to_dict()))
    assert record["train"]["augment"] == ["flip:horizontal", "translate:0.1"]
    assert config_from_record(record) == config
    assert PipelineConfig.from_dict({"train": {"augment": ["zoom"]}}).train.augment == ("zoom:0.1",)
    assert build_config().train.augment == ()


def test_augment_is_a_grid_key(tmp_path: Path) -> None:
    grid = parse_grid(["augment=none,flip+translate:0.1"])
    assert grid == {"augment": [None, ("flip:horizontal", "translate:0.1")]}
    points = expand_grid(grid, {}, tmp_path)
    assert [p.config.train.augment for p in points] == [(), ("flip:horizontal", "translate:0.1")]
    assert len({p.id for p in points}) == 2
    assert points[1].label == "augment=flip:horizontal+translate:0.1"
    grid_file = tmp_path / "grid.toml"
    grid_file.write_text('augment = ["none", "flip,zoom:0.2"]\n')
    assert parse_grid([str(grid_file)])["augment"] == [None, ("flip:horizontal", "zoom:0.2")]
    with pytest.raises(EdgekitError, match=r"grid value augment='twist': --augment item 'twist'"):
        parse_grid(["augment=twist"])


def test_cli_bad_spec_exits_1_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", "--augment", "flip,twist", "-o", str(out)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [f"Error: --augment item 'twist' is not known: expected {ACCEPTED_FORMS}"]
    assert not out.exists()


def _one_epoch(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_augmented_batches_are_seeded_new_every_epoch_and_keep_labels(small_data: Any) -> None:
    from edgekit.workstation._keras import tf
    from edgekit.workstation.train.augment import augment_batches
    from edgekit.workstation.train.batches import shuffled_batches

    x, y = small_data.x_train[:256], small_data.y_train[:256]
    items = parse_augment(SPEC)
    plain = _one_epoch(shuffled_batches(x, y, 64, seed=5))
    augmented = shuffled_batches(x, y, 64, seed=5, augment=items)
    first, second = _one_epoch(augmented), _one_epoch(augmented)
    assert first[0].shape == plain[0].shape == (256, 28, 28) and first[0].dtype == np.float32
    # Same order of samples (the shuffle's seed), labels untouched, images changed.
    assert np.array_equal(first[1], plain[1])
    assert not np.allclose(first[0], plain[0], atol=1e-3)
    assert not np.array_equal(first[0], second[0])  # new draws every epoch
    again = _one_epoch(shuffled_batches(x, y, 64, seed=5, augment=items))
    assert np.array_equal(again[0], first[0])  # same seed: the same run

    def fixed_order(seed: int) -> np.ndarray:
        batches = tf.data.Dataset.from_tensor_slices((plain[0], plain[1])).batch(64)
        return _one_epoch(augment_batches(batches, items, (28, 28), seed))[0]

    assert np.array_equal(fixed_order(5), fixed_order(5))
    assert not np.array_equal(fixed_order(5), fixed_order(6))  # the seed decides the draws


def test_horizontal_flip_mirrors_columns_of_grayscale_and_colour_images() -> None:
    from edgekit.workstation.train.batches import shuffled_batches

    rng = np.random.default_rng(0)
    for shape in ((6, 5), (6, 5, 3)):
        x = rng.integers(0, 256, (64, *shape), dtype=np.uint8)
        y = np.arange(64)
        xb, yb = _one_epoch(shuffled_batches(x, y, 16, seed=1, augment=("flip:horizontal",)))
        assert xb.shape == (64, *shape)
        scaled = x[yb].astype(np.float32) / 255
        same = np.array([np.array_equal(a, b) for a, b in zip(xb, scaled, strict=True)])
        mirrored = np.array(
            [np.array_equal(a, b[:, ::-1]) for a, b in zip(xb, scaled, strict=True)]
        )
        assert (same | mirrored).all() and same.any() and mirrored.any()


def test_image_augmentation_of_flat_samples_is_refused() -> None:
    from edgekit.core.errors import DataError
    from edgekit.workstation.train.batches import shuffled_batches

    x, y = np.zeros((8, 784), np.float32), np.zeros(8, np.int64)
    with pytest.raises(DataError, match=r"--augment flip,zoom needs image samples"):
        shuffled_batches(x, y, 4, seed=1, augment=("flip:horizontal", "zoom:0.1"))
    shuffled_batches(x, y, 4, seed=1, augment=("noise:0.1",))  # noise works on any shape


def _model_with_augmentation(functional: bool) -> Any:
    """A tiny conv net with the Keras tutorials' data_augmentation block and more Random*
    layers inside it."""
    from edgekit.workstation._keras import keras

    layers = keras.layers
    block = keras.Sequential(
        [layers.RandomFlip("horizontal"), layers.RandomRotation(0.05), layers.RandomZoom(0.1)],
        name="data_augmentation",
    )
    body = [
        layers.Reshape((28, 28, 1)),
        block,
        layers.RandomTranslation(0.1, 0.1),
        layers.RandomContrast(0.1),  # not differentiable: only in front of trainable layers
        layers.Conv2D(8, 3, strides=2, use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.GaussianNoise(0.05),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ]
    if not functional:
        return keras.Sequential([keras.Input((28, 28)), *body])
    inputs = keras.Input((28, 28))
    x = inputs
    for layer in body:
        x = layer(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize("functional", [False, True])
def test_strip_augmentation_removes_random_layers_and_keeps_inference_outputs(
    functional: bool, small_data: Any
) -> None:
    from edgekit.workstation.optimize.strip import augmentation_layer_names, strip_augmentation

    model = _model_with_augmentation(functional)
    before = augmentation_layer_names(model)
    stripped = strip_augmentation(model)
    assert set(stripped.removed) == set(before) and len(before) == 6 and stripped.left == ()
    assert augmentation_layer_names(stripped.model) == []
    assert augmentation_layer_names(model) == before  # the input model is not modified
    x = small_data.x_test[:64]
    want = model.predict(x, verbose=0)
    np.testing.assert_array_equal(stripped.model.predict(x, verbose=0), want)
    assert strip_augmentation(stripped.model).model is stripped.model  # nothing left to strip


def test_tfmot_cannot_prune_a_model_with_random_layers_so_they_are_stripped_first() -> None:
    """Why the strip happens: TF-MOT refuses RandomFlip & co. (no PruneRegistry entry)."""
    from edgekit.workstation._keras import keras, tfmot

    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.RandomFlip(), keras.layers.Conv2D(4, 3)]
    )
    with pytest.raises(ValueError, match="Please initialize `Prune` with a supported layer"):
        tfmot.sparsity.keras.prune_low_magnitude(model)


def _ops(path: Path) -> dict[str, int]:
    from edgekit.device.modelfile import read_model_file

    return read_model_file(path).operators


def _tiny_runs(runs: dict[str, tuple[Path, str]]) -> dict[str, dict[str, Any]]:
    """Tiny `edgekit export` runs side by side (name -> (output folder, --augment or "")), each
    in its own process; name -> its manifest."""
    procs = {}
    for name, (out, augment) in runs.items():
        args = ["export", "--hidden", "32", "--train-samples", "1000", "--test-samples", "300"]
        args += ["--validation-size", "200", "--epochs", "1", "--prune-epochs", "1"]
        args += ["--batch-size", "64", "--calibration-samples", "50", "--seed", "3"]
        args += ["--precision", "float32,int8", "--max-accuracy-drop", "100", "--name", "t"]
        args += ["-o", str(out), "--quiet", *(["--augment", augment] if augment else [])]
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "edgekit.cli.main", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    manifests = {}
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=900)
        assert proc.returncode == 0, stderr
        manifests[name] = json.loads((runs[name][0] / "manifest.json").read_text())
    return manifests


def _sha256s(manifest: dict[str, Any]) -> dict[str, str]:
    return {r["file"]: r["sha256"] for r in manifest["files"]}


@pytest.mark.heavy
def test_exported_files_hold_no_augmentation_and_same_seed_repeats_them(tmp_path: Path) -> None:
    runs = _tiny_runs(
        {
            "aug": (tmp_path / "aug", SPEC),
            "aug_again": (tmp_path / "aug_again", SPEC),
            "plain": (tmp_path / "plain", ""),
        }
    )
    assert runs["aug"]["config"]["train"]["augment"] == list(NORMALIZED)
    assert runs["plain"]["config"]["train"]["augment"] == []
    for name in ("t_float32.tflite", "t_int8.tflite"):
        ops = _ops(tmp_path / "aug" / name)
        assert ops == _ops(tmp_path / "plain" / name)  # the same graph as without --augment
        assert not [op for op in ops if any(word in op for word in AUGMENTATION_OPS)]
    # Augmentation changed the training (the weights), not the graph; the seed repeats it.
    assert _sha256s(runs["aug"]) == _sha256s(runs["aug_again"])
    assert _sha256s(runs["aug"])["t_float32.tflite"] != _sha256s(runs["plain"])["t_float32.tflite"]


@pytest.mark.heavy
def test_given_model_with_random_layers_exports_and_prunes_without_them(
    tmp_path: Path, small_data: Any
) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.workstation.train.model import compile_model

    model = _model_with_augmentation(functional=True)
    compile_model(model, 1e-3)
    model.fit(small_data.x_train, small_data.y_train, epochs=1, batch_size=64, verbose=0)
    path = tmp_path / "with_aug.keras"
    model.save(path)
    out = tmp_path / "out"
    data = ["--train-samples", "1000", "--test-samples", "300", "--validation-size", "200"]
    result = run_edgekit(
        "export", str(path), *data, "--seed", str(SMALL_DATA.seed), "--precision", "float32",
        "--name", "m", "-o", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "removed augmentation layer(s), inactive in inference: data_augmentation/" in (
        result.stderr
    )
    manifest = json.loads((out / "manifest.json").read_text())
    removed = manifest["config"]["run"]["source_model"]["augmentation_removed"]
    assert len(removed) == 6 and "gaussian_noise" in removed
    ops = _ops(out / "m_float32.tflite")
    assert not [op for op in ops if any(word in op for word in AUGMENTATION_OPS)]
    # The float32 file computes what the model (Random* layers included) computes in inference.
    interpreter = Interpreter(model_path=str(out / "m_float32.tflite"))
    interpreter.allocate_tensors()
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    x = small_data.x_test[:32]
    got = []
    for sample in x:
        interpreter.set_tensor(inp["index"], sample[None].astype(np.float32))
        interpreter.invoke()
        got.append(interpreter.get_tensor(outp["index"])[0])
    np.testing.assert_allclose(np.array(got), model.predict(x, verbose=0), atol=1e-5)
    # With --prune: TF-MOT, which refuses RandomFlip & co., gets the model without them.
    pruned = run_edgekit(
        "export", str(path), *data, "--prune", "--sparsity", "0.5", "--prune-epochs", "1",
        "--precision", "float32", "-o", str(tmp_path / "pruned"), "--quiet",
    )  # fmt: skip
    assert pruned.returncode == 0, pruned.stderr

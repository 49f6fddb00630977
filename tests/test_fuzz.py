"""Fuzzing: a few hundred seeded cases per reader of outside input, and none may be a finding
(another exception, a traceback, an error of several lines, a hang, a crash). The harnesses
are tests/fuzzing.py's; benchmarks/fuzz.py runs 10,000 cases per target. Below them: each
thing the fuzzers found, as a user meets it, with its one-line error."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_edgekit
from fuzzing import TARGETS, Tally, run_case, run_target, seed_manifest

from edgekit.core.config import DataConfig
from edgekit.core.data import load_dataset, load_test_set
from edgekit.core.errors import DataError, EdgekitError, ManifestError, ModelFileError
from edgekit.device.manifest import read_manifest
from edgekit.device.modelfile import read_model_file
from edgekit.sweep import load_grid_file
from edgekit.workstation.tf_config import read_tf_config

SEED = 20261204
# Cases per target: a few hundred (the runtime's, in a child process, cost more each).
CASES = {name: 300 for name in TARGETS} | {"tflite_runtime": 150, "tf_config": 200}


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_fuzzed_case_succeeds_or_gives_a_one_line_error(target: str, tmp_path: Path) -> None:
    tally = run_target(target, CASES[target], SEED, tmp_path)
    assert tally.findings == 0, json.dumps(tally.to_dict(), indent=1)
    assert tally.cases == CASES[target]
    assert tally.successes + tally.clean_errors == tally.cases
    # The cases reach past the first check: some are read in full, some refused.
    assert tally.successes > 0 and tally.clean_errors > 0, tally.to_dict()


# ---- the harness tells the outcomes apart -------------------------------------------------------


def test_the_harness_counts_other_exceptions_long_errors_and_hangs_as_findings() -> None:
    tally = Tally("self-check")

    def type_error() -> None:
        raise TypeError("unhashable type: 'list'")

    def long_error() -> None:
        raise EdgekitError("first line\nsecond line")

    def hang() -> None:
        time.sleep(5)

    def clean() -> None:
        raise ManifestError("manifest.json: 'files' must be a list: re-export it")

    for fn in (type_error, long_error, hang, clean, lambda: None):
        run_case(tally, fn.__name__, fn, hang_s=0.3)
    assert (tally.cases, tally.findings, tally.clean_errors, tally.successes) == (5, 3, 1, 1)
    outcomes = [e["outcome"] for e in tally.examples]
    assert outcomes[0] == "TypeError: unhashable type: 'list'"
    assert outcomes[1].startswith("EdgekitError of 2 lines")
    assert outcomes[2] == "hang: still running after 0.3 s"


# ---- what the fuzzers found, fixed --------------------------------------------------------------


@pytest.fixture()
def export_copy(tmp_path: Path) -> Path:
    """The seed .tflite files with a manifest like export's."""
    (tmp_path / "manifest.json").write_text(json.dumps(seed_manifest(tmp_path)))
    return tmp_path


def _edit_manifest(folder: Path, edit: object) -> None:
    path = folder / "manifest.json"
    doc = json.loads(path.read_text())
    edit(doc)  # type: ignore[operator]
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("name", [["tiny_int8.tflite"], {"name": "x"}])
def test_verify_a_manifest_whose_file_name_is_not_a_string(export_copy: Path, name: object) -> None:
    _edit_manifest(export_copy, lambda d: d["files"][0].__setitem__("file", name))
    r = run_edgekit("verify", str(export_copy), "--no-run")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.strip() == (
        f"Error: {export_copy / 'manifest.json'}: a record needs a 'file' name, got "
        f"{json.dumps(name)}: re-export or re-copy the manifest"
    )


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        (("config", "data"), [1], "'config.data' must be an object"),
        (("config", "data", "test_split"), "0.2", "'config.data.test_split' must be a fraction"),
        (("config", "data", "seed"), [0], "'config.data.seed' must be an integer >= 0"),
        (("selection", "max_accuracy_drop_points"), "1", "'selection.max_accuracy_drop_points'"),
        (("selection", "recommended"), {}, "'selection.recommended' must be a file name"),
        (("input", "raw_dtype"), ["uint8"], "'input.raw_dtype' must be a dtype name"),
    ],
)
def test_manifest_fields_bench_reads_are_typed(
    export_copy: Path, where: tuple[str, ...], value: object, message: str
) -> None:
    def edit(doc: dict) -> None:  # type: ignore[type-arg]
        for key in where[:-1]:
            doc = doc[key]
        doc[where[-1]] = value

    _edit_manifest(export_copy, edit)
    with pytest.raises(ManifestError, match=r"re-export or re-copy the manifest$") as e:
        read_manifest(export_copy)
    assert message in str(e.value)


def test_a_manifest_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("[" * 100_000)
    with pytest.raises(ManifestError, match="is nested too deeply to be a manifest: re-export"):
        read_manifest(tmp_path)


def test_a_path_with_a_nul_character() -> None:
    """No shell passes a NUL in an argument, but a program calling edgekit's CLI can."""
    from click.testing import CliRunner

    from edgekit.cli.main import main

    with pytest.raises(ModelFileError, match=r"is not a valid path \(it holds a NUL character\)"):
        read_model_file("a\x00b.tflite")
    for args in (["inspect", "a\x00b"], ["verify", "a\x00b", "--no-run"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2, r.output
        assert r.output.strip().splitlines()[-1] == (
            "Error: a path given holds a NUL character (\\x00): pass paths without it"
        )


def test_a_path_with_a_newline_is_shown_on_one_line(tmp_path: Path) -> None:
    r = run_edgekit("inspect", str(tmp_path / "two\nlines.tflite"))
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"Error: {tmp_path}/two\\nlines.tflite does not exist: pass the path of a .tflite file"
    )


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_test": np.zeros((2, 4)), "y_test": np.int64(1)}, "y_test is a single value"),
        ({"x_test": np.float32(0), "y_test": np.zeros(2, np.int64)}, "x_test is a single value"),
        (
            {"x_test": np.zeros((2, 4)), "y_test": np.zeros(2, np.int64), "labels": np.str_("a")},
            "labels is a single value",
        ),
        (
            {"x_test": np.zeros((2, 4)), "y_test": np.zeros((2, 3), "V4")},
            "y_test has dtype |V4: expected integer class indices",
        ),
        (
            {"x_test": np.zeros((2, 4)), "y_test": np.zeros(2, "datetime64[s]")},
            "y_test has dtype datetime64[s]: expected integer class indices",
        ),
    ],
)
def test_npz_arrays_of_the_wrong_rank_or_dtype_are_one_line(
    tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, x_train=np.zeros((4, 4)), y_train=np.zeros(4, np.int64), **arrays)
    for read in (
        lambda: load_test_set(str(path)),
        lambda: load_dataset(DataConfig(source=str(path), validation_size=1)),
    ):
        with pytest.raises(DataError) as e:
            read()
        assert message in str(e.value) and "\n" not in str(e.value)


def test_a_grid_file_that_is_not_utf8_or_nested_too_deeply(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_bytes(b'sparsity = [0.5, 0.8]\nname = ["\xff"]\n')
    with pytest.raises(EdgekitError, match=r"is not UTF-8 text \(byte 31 is 0xff\): save it as"):
        load_grid_file(path)
    for suffix in (".toml", ".json"):
        path = tmp_path / f"deep{suffix}"
        path.write_text(("sparsity = " if suffix == ".toml" else "") + "[" * 5000)
        with pytest.raises(EdgekitError, match="is nested too deeply: a grid maps keys to lists"):
            load_grid_file(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": ["worker"], "index": 0}}',
            "TF_CONFIG's task type is ['worker'], expected one of the cluster's jobs (worker)",
        ),
        ("[" * 100_000, "TF_CONFIG is nested too deeply"),
    ],
)
def test_tf_config_of_the_wrong_shape_is_one_line(text: str, message: str) -> None:
    with pytest.raises(EdgekitError) as e:
        read_tf_config({"TF_CONFIG": text})
    assert str(e.value).startswith(message + ": --distributed needs TF_CONFIG")


@pytest.mark.parametrize("port", ["²", "9" * 5000])
def test_a_tf_config_port_of_odd_digits_is_one_line(port: str) -> None:
    text = json.dumps(
        {"cluster": {"worker": [f"a:{port}"]}, "task": {"type": "worker", "index": 0}}
    )
    with pytest.raises(EdgekitError, match="not a host:port address: --distributed needs"):
        read_tf_config({"TF_CONFIG": text})
    with pytest.raises(EdgekitError, match=r"^TF_CONFIG is not JSON \(Exceeds the limit"):
        read_tf_config({"TF_CONFIG": '{"cluster": ' + "9" * 5000 + "}"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"sparsity": [1' + "0" * 400 + "]}", "grid value sparsity=1000"),
        ('{"hidden": [[1e400]]}', "grid value hidden=[inf] is not a list of sizes"),
    ],
)
def test_grid_numbers_out_of_range_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "grid.json"
    path.write_text(text)
    with pytest.raises(EdgekitError) as e:
        load_grid_file(path)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_a_manifest_with_a_number_of_5000_digits_is_not_json(export_copy: Path) -> None:
    (export_copy / "manifest.json").write_text('{"format": ' + "9" * 5000 + "}")
    with pytest.raises(ManifestError, match=r"is not valid JSON \(Exceeds the limit \(4300 digits"):
        read_manifest(export_copy)


def test_a_path_too_long_for_the_file_system_is_a_usage_error() -> None:
    from click.testing import CliRunner

    from edgekit.cli.main import main

    for args in (["verify", "9" * 5000, "--no-run"], ["bench", "9" * 5000], ["inspect", "9" * 300]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2, r.output
        assert r.output.strip().splitlines()[-1].startswith("Error: a path given is too long ('99")


def _with_input_shape(data: bytes, height: int) -> bytes:
    """The seed file with its input's height (1, 8, 8, 3) set to `height`."""
    old = np.array([1, 8, 8, 3], "<i4").tobytes()
    assert data.count(old) >= 1
    return data.replace(old, np.array([1, height, 8, 3], "<i4").tobytes(), 1)


def test_a_damaged_shape_of_gigabytes_is_refused_before_the_runtime_allocates_it(
    tmp_path: Path,
) -> None:
    """A flipped bit in a dimension made LiteRT allocate and compute for over a minute."""
    from edgekit.device.worker import ChildError, ChildProcess

    seed = (Path(__file__).parent / "data" / "fuzz" / "tiny_float32.tflite").read_bytes()
    path = tmp_path / "damaged.tflite"
    path.write_bytes(_with_input_shape(seed, 33554440))
    child = ChildProcess()
    try:
        with pytest.raises(ChildError) as e:
            child.request({"cmd": "load", "path": str(path), "runtime": "litert"}, 60.0)
    finally:
        child.close()
    assert str(e.value) == (
        f"{path} is damaged: tensor 'serving_default_input_1:0' of shape (1, 33554440, 8, 3) "
        "would take 3.0 GiB; re-export or re-copy it"
    )

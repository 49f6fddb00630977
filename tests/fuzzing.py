"""Fuzz harnesses for every reader of outside input, shared by tests/test_fuzz.py (a few hundred
cases per target) and benchmarks/fuzz.py (10,000 per target).

A case ends in one of three ways:
- success: the reader returned (and what reads its result went through);
- a clean error: an EdgekitError of one line (or, for the CLI, click's own one-line error with
  exit status 1 or 2), which is what a user is meant to see;
- a finding: anything else: another exception type, a traceback, a message of several lines,
  a hang over HANG_S seconds, or a crash of the process.

Targets (see TARGETS): the .tflite reader (in process) and the runtime loading damaged files (in
the model worker's child process, as `edgekit bench` and `verify` load them), manifest.json,
image files, .npz files, TF_CONFIG, sweep grid files and CLI option values. Damaged files come
from seeded byte mutations of real files (the .tflite seeds in tests/data/fuzz were written by
the TFLite converter; images and .npz are made from Fashion-MNIST here); structured cases
(JSON-valid manifests with wrong types, TF_CONFIG, grids, option values) come from hypothesis,
derandomized by the seed. Every case is reproducible from (target, seed, case number) or from
the example recorded with a finding.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import shutil
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from edgekit.core.errors import EdgekitError

SEED_DIR = Path(__file__).parent / "data" / "fuzz"
# A case that takes longer than this is a hang (the limit).
HANG_S = 10.0
# Examples kept per target (the counts cover every case).
MAX_EXAMPLES = 20
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


class Hang(BaseException):
    """Raised by the alarm inside a case that runs too long (a BaseException, so no reader's
    `except Exception` can swallow it)."""


class Finding(Exception):
    """A harness's own verdict that an outcome is not a clean one (e.g. a CLI traceback)."""


@dataclass
class Tally:
    """Counts of one target's cases, with examples of the findings."""

    target: str
    cases: int = 0
    successes: int = 0
    clean_errors: int = 0
    findings: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    finding_kinds: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def finding(self, case: Any, what: str, where: str = "") -> None:
        self.findings += 1
        kind = f"{what.split(':')[0]} at {where}" if where else what.split(":")[0]
        self.finding_kinds[kind] += 1
        # A few examples of each kind of finding, up to MAX_EXAMPLES in all.
        if self.finding_kinds[kind] <= 3 and len(self.examples) < MAX_EXAMPLES:
            example = {"case": _short(case), "outcome": what[:500]}
            if where:
                example["where"] = where
            self.examples.append(example)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "successes": self.successes,
            "clean_errors": self.clean_errors,
            "findings": self.findings,
            "clean_error_kinds": dict(self.error_kinds.most_common()),
            "finding_kinds": dict(self.finding_kinds.most_common()),
            **({"notes": dict(self.notes)} if self.notes else {}),
            "seconds": round(self.seconds, 1),
            "finding_examples": self.examples,
        }


def _short(value: Any, limit: int = 400) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def _raise(signum: int, frame: Any) -> None:
        raise Hang()

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _where(e: BaseException) -> str:
    """file:line of the innermost frame of edgekit (else the innermost) that raised `e`."""
    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if "/edgekit/" in f.filename] or frames
    if not ours:
        return ""
    f = ours[-1]
    return f"{f.filename.split('/edgekit/')[-1]}:{f.lineno} in {f.name}"


def run_case(tally: Tally, case: Any, fn: Callable[[], str | None], hang_s: float = HANG_S) -> None:
    """Run one case and count its outcome. `fn` returns None for success, or the kind of a
    clean error it turned into a string itself (the CLI's exit statuses); raising an
    EdgekitError of one line is a clean error, anything else a finding."""
    tally.cases += 1
    start = time.monotonic()
    try:
        with _alarm(hang_s):
            kind = fn()
    except Hang:
        tally.finding(case, f"hang: still running after {hang_s:g} s")
        return
    except EdgekitError as e:
        message = str(e)
        if not message.strip() or "\n" in message.strip():
            tally.finding(
                case,
                f"{type(e).__name__} of {message.count(chr(10)) + 1} lines: {message!r}",
                _where(e),
            )
        else:
            tally.clean_errors += 1
            tally.error_kinds[type(e).__name__] += 1
        return
    except Finding as e:
        tally.finding(case, str(e))
        return
    except (Exception, SystemExit) as e:
        tally.finding(case, f"{type(e).__name__}: {e}", _where(e))
        return
    elapsed = time.monotonic() - start
    if elapsed > hang_s:  # a long call in C code delays the alarm until it returns
        tally.finding(case, f"hang: took {elapsed:.1f} s")
    elif kind is None:
        tally.successes += 1
    else:
        tally.clean_errors += 1
        tally.error_kinds[kind] += 1


# ---- byte mutations of real files ------------------------------------------------------------

_INTERESTING_32 = (
    0,
    1,
    2,
    4,
    8,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFE,
    0xFFFFFFFF,
)
_INTERESTING_8 = (0, 1, 0x7F, 0x80, 0xFF)


# Tokens put into text formats: deep nesting, numbers out of range, odd literals, a BOM.
JSON_TOKENS = (
    b"[" * 5000,
    b'{"a":' * 3000,
    b"1e400",
    b"-1e400",
    b"NaN",
    b"-Infinity",
    b'"\\ud800"',
    b"\xef\xbb\xbf",
    b"9" * 5000,
    b"null",
    b"true",
    b'""',
    b"[]",
    b"{}",
    b'"\\u0000"',
    b"-0",
    b'"x"' * 1000,
    b",",
    b":",
    b'"',
)
TOML_TOKENS = (
    b"[" * 5000,
    b"1979-05-27T07:32:00Z",
    b"07:32:00",
    b"1979-05-27",
    b"inf",
    b"nan",
    b"0x10",
    b"1_000",
    b"[[grid]]\n",
    b"[grid]\n",
    b'"""',
    b"'",
    b"\n",
    b"= ",
    b"{",
    b"9" * 5000,
    b"x = {a = [1, {b = 2}]}\n",
)


def mutate(
    data: bytes, rng: random.Random, hot: int = 4096, tokens: tuple[bytes, ...] = ()
) -> tuple[str, bytes]:
    """One to three seeded mutations of `data`: bit flips, interesting bytes and 32-bit words,
    truncation, insertion, deletion, duplication of a chunk, and (for text formats) one of
    `tokens` put in or written over. Most land in the first `hot` bytes (headers, tables and
    offsets live there). Returns (description, bytes)."""
    b = bytearray(data)
    done = []
    kinds = (
        "flip",
        "flip",
        "byte",
        "word",
        "truncate",
        "insert",
        "delete",
        "duplicate",
        "random",
        *(("token",) * 3 if tokens else ()),
    )
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        n = len(b)
        if n == 0:
            break
        pos = rng.randrange(min(n, hot)) if rng.random() < 0.7 else rng.randrange(n)
        kind = rng.choice(kinds)
        if kind == "token":
            token = rng.choice(tokens)
            end = pos + (len(token) if rng.random() < 0.5 else 0)
            b[pos:end] = token
            done.append(f"token{tokens.index(token)}@{pos}")
        elif kind == "flip":
            count = rng.choice((1, 1, 2, 4, 16))
            for _ in range(count):
                p = rng.randrange(min(n, hot)) if rng.random() < 0.7 else rng.randrange(n)
                b[p] ^= 1 << rng.randrange(8)
            done.append(f"flip{count}@{pos}")
        elif kind == "byte":
            b[pos] = rng.choice(_INTERESTING_8)
            done.append(f"byte@{pos}={b[pos]}")
        elif kind == "word":
            word = rng.choice(_INTERESTING_32 + (n, n - 1, n + 1, rng.getrandbits(32)))
            b[pos : pos + 4] = (word % 2**32).to_bytes(4, rng.choice(("little", "big")))
            done.append(f"word@{pos}={word}")
        elif kind == "truncate":
            cut = rng.choice((0, 1, 4, 8, 16, pos, rng.randrange(n)))
            del b[cut:]
            done.append(f"truncate@{cut}")
        elif kind == "insert":
            chunk = bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 4, 16, 256))))
            b[pos:pos] = chunk
            done.append(f"insert{len(chunk)}@{pos}")
        elif kind == "delete":
            size = rng.choice((1, 4, 16, 256))
            del b[pos : pos + size]
            done.append(f"delete{size}@{pos}")
        elif kind == "duplicate":
            size = rng.choice((4, 16, 256))
            b[pos:pos] = b[pos : pos + size]
            done.append(f"duplicate{size}@{pos}")
        else:
            size = rng.choice((1, 8, 64))
            b[pos : pos + size] = bytes(rng.getrandbits(8) for _ in range(size))
            done.append(f"random{size}@{pos}")
    return "+".join(done) or "empty", bytes(b)


def _case_rng(seed: int, target: str, i: int) -> random.Random:
    return random.Random(f"{seed}:{target}:{i}")


# ---- seeds ----------------------------------------------------------------------------------


def tflite_seeds() -> dict[str, bytes]:
    """The seed .tflite files (float32, float16 and int8 of one tiny conv/depthwise/dense net,
    written by the TFLite converter)."""
    return {p.name: p.read_bytes() for p in sorted(SEED_DIR.glob("*.tflite"))}


def fashion_mnist_slice(n_train: int = 40, n_test: int = 20) -> dict[str, np.ndarray]:
    """The first Fashion-MNIST images and labels (uint8), read with edgekit's IDX reader."""
    from edgekit.core.data.dataset import FASHION_MNIST_FILES, read_idx

    arrays = {k: read_idx(FASHION_MNIST / f) for k, f in FASHION_MNIST_FILES.items()}
    return {
        "x_train": arrays["x_train"][:n_train],
        "y_train": arrays["y_train"][:n_train],
        "x_test": arrays["x_test"][:n_test],
        "y_test": arrays["y_test"][:n_test],
    }


def image_seeds() -> dict[str, bytes]:
    """A Fashion-MNIST image as grayscale and RGB PNG, JPEG and BMP files (Pillow)."""
    from PIL import Image

    x = fashion_mnist_slice(1, 1)["x_test"][0]
    gray = Image.fromarray(x, "L")
    rgb = Image.merge("RGB", (gray, gray.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gray))
    out = {}
    for name, image, fmt in (
        ("gray.png", gray, "PNG"),
        ("rgb.png", rgb, "PNG"),
        ("gray.jpg", gray, "JPEG"),
        ("rgb.jpg", rgb, "JPEG"),
        ("gray.bmp", gray, "BMP"),
        ("rgb.bmp", rgb, "BMP"),
    ):
        buf = io.BytesIO()
        image.save(buf, fmt)
        out[name] = buf.getvalue()
    return out


def npz_seeds() -> dict[str, bytes]:
    """Fashion-MNIST slices as .npz (np.savez and np.savez_compressed, with and without labels)."""
    from edgekit.core.data.dataset import FASHION_MNIST_LABELS

    arrays = fashion_mnist_slice()
    out = {}
    for name, save, extra in (
        ("plain.npz", np.savez, {}),
        ("compressed.npz", np.savez_compressed, {}),
        ("labels.npz", np.savez, {"labels": np.asarray(FASHION_MNIST_LABELS)}),
    ):
        buf = io.BytesIO()
        save(buf, **arrays, **extra)
        out[name] = buf.getvalue()
    return out


def seed_manifest(folder: Path) -> dict[str, Any]:
    """A manifest of the seed .tflite files as export writes one (same fields and kinds of
    values), with the files copied into `folder`."""
    from edgekit.device.manifest import ExportCheck, FileRecord, Manifest, TensorRecord
    from edgekit.device.modelfile import parse_model_bytes

    records = []
    for name, data in tflite_seeds().items():
        (folder / name).write_bytes(data)
        info = parse_model_bytes(data, name)
        precision = name.removeprefix("tiny_").removesuffix(".tflite")
        records.append(
            FileRecord(
                file=name,
                precision=precision,
                sha256=info.sha256,
                bytes=info.bytes,
                gzip_bytes=info.gzip_bytes,
                inputs=tuple(TensorRecord.from_summary(t) for t in info.inputs),
                outputs=tuple(TensorRecord.from_summary(t) for t in info.outputs),
                weight_sparsity=round(info.weight_sparsity, 6),
                operators=info.operators,
                accuracy=ExportCheck(0.4, 20, 0.95, 0.01, "litert 2.3.0", 0.9, 1, True),
                variant={"tag": precision, "engine": "converter", "accuracy_drop_points": 0.5},
            )
        )
    manifest = Manifest(
        files=tuple(records),
        labels=("a", "b", "c"),
        input={"shape": [8, 8, 3], "raw_dtype": "uint8", "scale": 1 / 255, "offset": 0.0},
        dataset={"name": "tiny", "source": "tiny.npz", "test_samples": 20, "test_sha256": "0" * 64},
        keras_accuracy=0.45,
        config={
            "data": {"source": "tiny.npz", "seed": 42, "test_split": 0.2},
            "export": {"precisions": ["float32", "float16", "int8"]},
        },
        versions={"edgekit": "0.1.0", "runtime": "litert 2.3.0"},
        machine={"cpu": "a CPU", "arch": "x86_64", "os": "Linux"},
        selection={
            "max_accuracy_drop_points": 1.0,
            "float_accuracy": 0.45,
            "searched": False,
            "recommended": "tiny_int8.tflite",
            "rejected": [],
        },
    )
    return manifest.to_dict()


# ---- hypothesis: values of every JSON type, and the odd ones ---------------------------------

_ODD_NUMBERS = st.sampled_from(
    [
        0,
        -1,
        1,
        2**31,
        2**63,
        -(2**63),
        10**400,
        0.5,
        -0.0,
        1e-320,
        1e308,
        math.nan,
        math.inf,
        -math.inf,
        True,
        False,
    ]
)
_ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\n",
        "\x00",
        "..",
        "../x",
        "/etc/passwd",
        "a/b",
        "x" * 300,
        "int8",
        "float32",
        "tiny_int8.tflite",
        "²",
        "١٢٣",
        "9" * 5000,
        "1e400",
        "nan",
        "-1",
        "0x10",
        "\ud7ff",
        "é",
    ]
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    _ODD_NUMBERS,
    _ODD_TEXT,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and indices) into a JSON value, the root included."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        value = value[p]
    return value


def mutate_json(draw: Any, doc: Any, rounds: int = 3) -> tuple[Any, list[str]]:
    """A copy of `doc` with 1..rounds structural changes drawn by hypothesis: a value replaced
    by one of another type, a key deleted or added, a value wrapped in a list or an object."""
    doc = json.loads(json.dumps(doc))
    changes = []
    for _ in range(draw(st.integers(1, rounds))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(("replace", "replace", "delete", "add", "wrap", "dict")))
        new = draw(JSON_VALUES)
        if not path:
            if how in ("replace", "delete"):
                doc = new
            elif how == "wrap":
                doc = [doc]
            elif isinstance(doc, dict):
                doc[draw(st.text(max_size=8))] = new
            changes.append(f"root {how}")
            continue
        parent, key = _get(doc, path[:-1]), path[-1]
        if how == "replace":
            parent[key] = new
        elif how == "delete":
            del parent[key]
        elif how == "wrap":
            parent[key] = [parent[key]]
        elif how == "dict":
            parent[key] = {"value": parent[key]}
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from([*map(str, parent), "extra"]))] = new
        else:
            parent.insert(key, new)
        changes.append(f"{how} {'/'.join(map(str, path))}")
    return doc, changes


def run_hypothesis(n: int, seed: int, strategy: Any, body: Callable[[Any], None]) -> None:
    """Call body(example) for n examples of `strategy`, derandomized by `seed` (no shrinking:
    `body` counts outcomes itself and never fails)."""

    @hypothesis_seed(seed)
    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def _run(example: Any) -> None:
        body(example)

    _run()


# ---- targets ----------------------------------------------------------------------------------


def fuzz_tflite(n: int, seed: int, work: Path) -> Tally:
    """Damaged .tflite bytes through the Python reader and everything that reads its result:
    the worker's tensor-size check, parse, opcheck (compute layers, precision checks, float
    ops), `edgekit inspect`'s dict, and the manifest records export makes of a file."""
    from edgekit.cli.report import inspect_dict
    from edgekit.device.manifest import TensorRecord
    from edgekit.device.modelfile import check_tensor_sizes, parse_model_bytes
    from edgekit.device.opcheck import EXPECTED, float_ops, precision_problems

    tally = Tally("tflite")
    seeds = list(tflite_seeds().items())
    for i in range(n):
        rng = _case_rng(seed, "tflite", i)
        name, original = rng.choice(seeds)
        how, data = mutate(original, rng)

        def case(data: bytes = data) -> None:
            check_tensor_sizes(data, "damaged.tflite")  # what the model worker checks first
            model = parse_model_bytes(data, "damaged.tflite")
            json.dumps(inspect_dict(model))
            for t in (*model.inputs, *model.outputs):
                TensorRecord.from_summary(t).to_dict()
            for precision in EXPECTED:
                precision_problems(data, precision, ("dense",))
            float_ops(data)

        run_case(tally, f"case {i}: {name} {how}", case)
    return tally


def fuzz_tflite_metadata(n: int, seed: int, work: Path) -> Tally:
    """A .tflite file with TFLite Model Metadata and labels.txt zipped onto its end
    (tiny_int8_metadata.tflite, written by edgekit's exporter), damaged inside its metadata
    buffer or its zip archive, through the device's metadata readers: read_metadata,
    file_labels and associated_files, as `inspect`, `verify` and `bench` call them."""
    from edgekit.device.metadata import (
        associated_files,
        file_labels,
        metadata_buffer,
        read_metadata,
    )

    tally = Tally("tflite_metadata")
    original = (SEED_DIR / "tiny_int8_metadata.tflite").read_bytes()
    meta = metadata_buffer(original)
    assert meta, "the metadata seed has no metadata buffer"
    meta_at = original.find(meta)
    zip_at = original.find(b"PK\x03\x04")
    assert meta_at > 0 and zip_at > 0
    for i in range(n):
        rng = _case_rng(seed, "tflite_metadata", i)
        part = rng.choice(("metadata", "metadata", "zip", "file"))
        if part == "metadata":  # the metadata flatbuffer, spliced back where it was
            how, damaged = mutate(meta, rng, hot=len(meta))
            data = original[:meta_at] + damaged + original[meta_at + len(meta) :]
        elif part == "zip":  # the labels.txt archive on the end
            how, damaged = mutate(original[zip_at:], rng)
            data = original[:zip_at] + damaged
        else:
            how, data = mutate(original, rng, hot=len(original))

        def case(data: bytes = data) -> None:
            found = read_metadata(data, "damaged.tflite")
            if found is not None:
                json.dumps(found.to_dict())
            file_labels(data, "damaged.tflite")
            associated_files(data, "damaged.tflite")

        run_case(tally, f"case {i}: {part} {how}", case)
    return tally


def fuzz_devices(n: int, seed: int, work: Path) -> Tally:
    """devices.toml files (`edgekit push`, `bench --on`, `devices`): well-formed TOML with drawn
    keys and values of every type (hypothesis, from a valid file), byte-damaged files, and the
    board targets named on the command line, through load_devices and resolve_targets."""
    from edgekit.fleet.devices import load_devices, resolve_targets

    tally = Tally("devices")
    work.mkdir(parents=True, exist_ok=True)
    path = work / "devices.toml"
    valid = {
        "ssh_config": "ssh_config",
        "devices": {
            "pi5": {"target": "pi@pi5.local", "path": "models", "threads": 4, "timeout": 30},
            "pi4": {"target": "pi4", "venv": "/opt/ek", "emulated": True, "python": "python3"},
        },
    }
    valid_text = 'ssh_config = "ssh_config"\n' + "".join(
        f"[devices.{name}]\n" + toml_text(entry) for name, entry in valid["devices"].items()
    )
    targets = st.lists(
        st.one_of(
            st.sampled_from(["pi5", "pi4", "pi5,pi4", "pi@host:/models", "host:", ":x", "@", ""]),
            st.text(max_size=12),
        ),
        min_size=1,
        max_size=3,
    )

    @st.composite
    def files(draw: Any) -> tuple[str, bytes, list[str]]:
        kind = draw(st.sampled_from(["drawn", "drawn", "bytes"]))
        if kind == "drawn":  # TOML of the drawn document (nested tables written inline)
            doc, how = mutate_json(draw, valid)
            top = doc if isinstance(doc, dict) else {"x": doc}
            raw = toml_text(top).encode()
            label = "drawn " + ", ".join(how)
        else:
            rng = random.Random(draw(st.integers(0, 2**32 - 1)))
            label, raw = mutate(valid_text.encode(), rng, hot=len(valid_text))
        return label, raw, draw(targets)

    def body(case_: tuple[str, bytes, list[str]]) -> None:
        label, raw, names = case_

        def case() -> None:
            path.write_bytes(raw)
            devices = load_devices(path)
            resolve_targets(names, devices)

        run_case(tally, f"{label} targets={names!r}", case)

    run_hypothesis(n, seed, files(), body)
    return tally


def fuzz_tflite_runtime(n: int, seed: int, work: Path) -> Tally:
    """Damaged .tflite files loaded and run once by the runtime in the model worker's child
    process, the way `edgekit bench` and `edgekit verify` load every file. A child that crashes
    (LiteRT can segfault on a damaged file) is edgekit's guarded case: the run goes on and the
    file gets a one-line error, counted as a clean error (and in notes). A hang over HANG_S or
    an error that is not edgekit's own is a finding."""
    from edgekit.device.worker import ChildError, ChildProcess

    tally = Tally("tflite_runtime")
    seeds = list(tflite_seeds().items())
    path = work / "damaged.tflite"
    child: ChildProcess | None = None
    try:
        for i in range(n):
            rng = _case_rng(seed, "tflite_runtime", i)
            name, original = rng.choice(seeds)
            original_name = f"intact_{name}"
            how, data = mutate(original, rng)
            path.write_bytes(data)
            if child is None or child.dead:
                if child is not None:
                    child.close()
                child = ChildProcess()
                # Imports first, on the intact file: the case below is timed on its own.
                (work / original_name).write_bytes(original)
                warm = {"cmd": "load", "path": str(work / original_name), "runtime": "litert"}
                child.request(warm, 120.0)
            tally.cases += 1
            request = {"cmd": "load", "path": str(path), "threads": 1, "runtime": "litert"}
            try:
                child.request(request, HANG_S)
            except ChildError as e:
                message = str(e)
                if "timed out" in message:
                    tally.finding(f"case {i}: {name} {how}", f"hang: {message}")
                elif child.dead:
                    tally.clean_errors += 1
                    tally.error_kinds["child process crashed (reported as one line)"] += 1
                    tally.notes[message.split(" (stderr")[0]] += 1
                elif "\n" in message or not message.startswith(str(path)):
                    tally.finding(f"case {i}: {name} {how}", message)
                else:  # the one line of a ModelFileError naming the file
                    tally.clean_errors += 1
                    tally.error_kinds["ModelFileError"] += 1
            else:
                tally.successes += 1
    finally:
        if child is not None:
            child.close()
    return tally


def _manifest_consumers(folder: Path, data_dir: Path) -> None:
    """Everything that reads a manifest on the device: `edgekit verify --no-run`, and bench's
    records, its expectations of each file and its test-data settings."""
    from edgekit.device.bench.measure import _expected, _manifest_records
    from edgekit.device.bench.records import BenchConfig
    from edgekit.device.bench.testdata import _test_data_config
    from edgekit.device.manifest import read_manifest
    from edgekit.device.verify import verify_dir

    manifest = read_manifest(folder)
    verify_dir(folder, run=False).to_dict()
    problems: list[str] = []
    for listed in _manifest_records(folder, {}, problems).values():
        if listed.record.accuracy is not None:
            json.dumps(_expected(listed))
    _ = manifest.recommended
    for data in (str(data_dir), str(data_dir / "test.npz")):
        _test_data_config(BenchConfig(data=data), (8, 8, 3), manifest)


def fuzz_manifest(n: int, seed: int, work: Path) -> Tally:
    """manifest.json: half JSON-valid manifests with wrong types, missing and extra fields
    (hypothesis, from a manifest like export's), half byte-damaged manifest files; each read
    and used as `edgekit verify` and `edgekit bench` use it."""
    folder = work / "manifest"
    folder.mkdir(parents=True, exist_ok=True)
    data_dir = work / "manifest-data"
    (data_dir / "a").mkdir(parents=True, exist_ok=True)
    base = seed_manifest(folder)
    tally = Tally("manifest")
    target = folder / "manifest.json"
    structured = n // 2

    @st.composite
    def manifests(draw: Any) -> tuple[Any, list[str]]:
        return mutate_json(draw, base)

    def body(example: tuple[Any, list[str]]) -> None:
        doc, changes = example
        target.write_text(json.dumps(doc), encoding="utf-8")
        run_case(
            tally,
            {"changes": changes, "manifest": json.dumps(doc)[:2000]},
            lambda: _manifest_consumers(folder, data_dir),
        )

    run_hypothesis(structured, seed, manifests(), body)
    original = json.dumps(base, indent=2).encode()
    for i in range(n - tally.cases):
        rng = _case_rng(seed, "manifest", i)
        how, data = mutate(original, rng, hot=len(original), tokens=JSON_TOKENS)
        target.write_bytes(data)
        run_case(tally, f"bytes case {i}: {how}", lambda: _manifest_consumers(folder, data_dir))
    return tally


def fuzz_images(n: int, seed: int, work: Path) -> Tally:
    """Damaged PNG/JPEG/BMP files (headers, truncations, flipped bytes) through the image
    loader: probing a file's size and colour, decoding and resizing it (grayscale and RGB),
    and skipping it with --skip-bad-images."""
    from edgekit.core.data.images import image_mode, read_images

    tally = Tally("images")
    seeds = list(image_seeds().items())
    folder = work / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = _case_rng(seed, "images", i)
        name, original = rng.choice(seeds)
        how, data = mutate(original, rng, hot=rng.choice((64, 512, len(original))))
        suffix = Path(name).suffix if rng.random() < 0.8 else rng.choice((".png", ".jpg", ".bmp"))
        path = folder / f"case{suffix}"
        path.write_bytes(data)
        channels = rng.choice((1, 3))
        skip = rng.random() < 0.3

        def case(path: Path = path, channels: int = channels, skip: bool = skip) -> None:
            image_mode(path)
            x, _, skipped = read_images([(path, 0)], (16, 16), channels, skip_bad=skip)
            if x.shape[1:] != (16, 16, channels) or len(x) + len(skipped) != 1:
                raise Finding(f"read_images returned shape {x.shape}, skipped {skipped}")

        run_case(tally, f"case {i}: {name} as {path.name} {how}", case)
    return tally


def _npz_consumers(path: Path) -> None:
    """A .npz as `edgekit export --data FILE.npz` (load_dataset) and `edgekit bench --data
    FILE.npz` (load_test_set) read it."""
    from edgekit.core.config import DataConfig
    from edgekit.core.data import load_dataset, load_test_set

    errors = []
    for read in (
        lambda: load_dataset(DataConfig(source=str(path), validation_size=1, seed=0)),
        lambda: load_test_set(str(path), samples=5),
    ):
        try:
            read()
        except EdgekitError as e:
            errors.append(e)
    if errors:
        raise errors[0]


_NPZ_DTYPES = (
    "uint8",
    "int8",
    "int64",
    "uint64",
    "float16",
    "float32",
    "float64",
    "bool",
    "complex64",
    "<U3",
    "|S2",
    "datetime64[s]",
    "V4",
)


_GOOD_SHAPES = {"x": [(4, 4), (4, 4, 1), (16,)], "y": [()], "labels": [(3,)]}
_ODD_SHAPES = {
    "x": [(), (0,), (4, 0), (3, 4), (2, 2, 2, 2)],
    "y": [(3,), (1,), (2, 2)],
    "labels": [(), (0,), (2, 2), (11,)],
}


@st.composite
def npz_arrays(draw: Any) -> dict[str, np.ndarray]:
    """The four arrays (and maybe labels): mostly of fitting dtypes and shapes, some odd in
    dtype, rank, length or values (hypothesis decides which and how)."""
    out: dict[str, np.ndarray] = {}
    n_train, n_test = draw(st.integers(0, 8)), draw(st.integers(0, 4))
    sample = draw(st.sampled_from(_GOOD_SHAPES["x"]))  # x_train's and x_test's, when good
    for key in ("x_train", "y_train", "x_test", "y_test", "labels"):
        # (hypothesis favours the first of sampled values: the common case goes first)
        if draw(st.sampled_from([False] * 19 + [True])) or (
            key == "labels" and draw(st.booleans())
        ):
            continue  # a missing key (labels are optional)
        kind = key.split("_")[0]
        good = draw(st.sampled_from([True, True, True, False]))
        if good:
            dtype = np.dtype({"x": "uint8", "y": "int64", "labels": "<U8"}[kind])
            dtype = (
                np.dtype(draw(st.sampled_from([dtype.str, "float32", "int32"])))
                if (kind != "labels" and draw(st.booleans()))
                else dtype
            )
            rest = sample if kind == "x" else draw(st.sampled_from(_GOOD_SHAPES[kind]))
        else:
            dtype = np.dtype(draw(st.sampled_from(_NPZ_DTYPES)))
            rest = draw(st.sampled_from(_ODD_SHAPES[kind] + _GOOD_SHAPES[kind]))
        n = n_train if key.endswith("train") else n_test
        if not good and draw(st.booleans()):
            n += 1  # one sample more than its partner array
        shape = rest if kind == "labels" else (n, *rest)
        size = int(np.prod(shape))
        if dtype.kind in "iub":
            low, high = (0, 2) if good else (-3, 300)
            values = draw(st.lists(st.integers(low, high), min_size=size, max_size=size))
            info = np.iinfo(dtype) if dtype.kind in "iu" else None
            if info is not None:
                values = [min(max(v, info.min), info.max) for v in values]
            with np.errstate(all="ignore"):
                arr = np.asarray(values).astype(dtype).reshape(shape)
        elif dtype.kind in "fc":
            floats = st.floats(0, 2, width=16) if good else st.floats(width=16)
            values = draw(st.lists(floats, min_size=size, max_size=size))
            with np.errstate(all="ignore"):
                arr = np.asarray(values, dtype=np.float64).astype(dtype).reshape(shape)
        elif dtype.kind == "U":
            names = st.text(max_size=8) if not good else st.sampled_from(["a", "b", "c/d"])
            arr = np.asarray(draw(st.lists(names, min_size=size, max_size=size)), dtype)
            arr = arr.reshape(shape)
        else:
            arr = np.zeros(shape, dtype)
        out[key] = arr
    if draw(st.sampled_from([False] * 9 + [True])):
        out["extra"] = np.zeros(2)
    return out


def fuzz_npz(n: int, seed: int, work: Path) -> Tally:
    """.npz data files: half byte-damaged np.savez/savez_compressed files of Fashion-MNIST
    slices, half well-formed files whose arrays have drawn dtypes, shapes, lengths and values
    (hypothesis); each read as `edgekit export` and `edgekit bench` read --data FILE.npz."""
    tally = Tally("npz")
    path = work / "data.npz"
    work.mkdir(parents=True, exist_ok=True)

    def body(arrays: dict[str, np.ndarray]) -> None:
        np.savez(path, **arrays)
        desc = {k: f"{v.dtype}{list(v.shape)}" for k, v in arrays.items()}
        run_case(
            tally,
            {"arrays": desc, "values": {k: v.ravel()[:6].tolist() for k, v in arrays.items()}},
            lambda: _npz_consumers(path),
        )

    run_hypothesis(n // 2, seed, npz_arrays(), body)
    seeds = list(npz_seeds().items())
    for i in range(n - tally.cases):
        rng = _case_rng(seed, "npz", i)
        name, original = rng.choice(seeds)
        how, data = mutate(original, rng, hot=rng.choice((128, 1024, len(original))))
        path.write_bytes(data)
        run_case(tally, f"bytes case {i}: {name} {how}", lambda: _npz_consumers(path))
    return tally


_VALID_TF_CONFIG = {
    "cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"], "chief": ["10.0.0.3:2222"]},
    "task": {"type": "worker", "index": 1},
}


def _tf_config_consumer(text: str) -> None:
    from edgekit.workstation.tf_config import read_tf_config

    role = read_tf_config({"TF_CONFIG": text})
    json.dumps(role.to_dict())
    _ = (role.name, role.address, role.rank, role.is_chief, role.done_message)


def fuzz_tf_config(n: int, seed: int, work: Path) -> Tally:
    """TF_CONFIG (`--distributed`): JSON-valid configs with wrong types and values (hypothesis,
    from a valid one), and byte-damaged text, read as `edgekit export --distributed` reads it."""
    tally = Tally("tf_config")

    @st.composite
    def configs(draw: Any) -> tuple[Any, list[str]]:
        return mutate_json(draw, _VALID_TF_CONFIG)

    def body(example: tuple[Any, list[str]]) -> None:
        doc, changes = example
        text = json.dumps(doc)
        run_case(tally, {"changes": changes, "TF_CONFIG": text}, lambda: _tf_config_consumer(text))

    run_hypothesis(n // 2, seed, configs(), body)
    original = json.dumps(_VALID_TF_CONFIG).encode()
    for i in range(n - tally.cases):
        rng = _case_rng(seed, "tf_config", i)
        how, data = mutate(original, rng, hot=len(original), tokens=JSON_TOKENS)
        text = data.decode("utf-8", errors="replace")
        run_case(
            tally, {"bytes": how, "TF_CONFIG": text}, lambda text=text: _tf_config_consumer(text)
        )
    return tally


_VALID_GRID = {
    "sparsity": [0.5, 0.8],
    "precision": ["int8", ["float16", "int8"]],
    "hidden": [[32, 16]],
    "epochs": [1],
    "prune": [True],
}


def toml_text(value: Any, top: bool = True) -> str:
    """A value as TOML (what the grid files are written in): tables at the top, inline ones
    below; values TOML cannot hold (None, NaN keys) become strings."""
    if top and isinstance(value, dict):
        return "".join(f"{json.dumps(str(k))} = {toml_text(v, False)}\n" for k, v in value.items())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v, False) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(str(k))} = {toml_text(v, False)}" for k, v in value.items())
        return "{" + inner + "}"
    return json.dumps("none" if value is None else str(value), ensure_ascii=False)


def _grid_consumer(path: Path, out: Path) -> None:
    """A grid file as `edgekit sweep --grid FILE` reads it: parsed, expanded into points over
    the default settings, each point's config checked and hashed (nothing runs)."""
    from edgekit.sweep import expand_grid, parse_grid

    grid = parse_grid([str(path)])
    points = expand_grid(grid, {}, out)  # over the default options
    for p in points:
        _ = p.label


def fuzz_grid(n: int, seed: int, work: Path) -> Tally:
    """Sweep grid files, TOML and JSON: well-formed files with drawn keys and values of every
    type (hypothesis, from a valid grid), and byte-damaged files of both formats."""
    from edgekit.sweep.keys import GRID_KEYS

    tally = Tally("grid")
    work.mkdir(parents=True, exist_ok=True)
    out = work / "sweep"
    keys = st.one_of(
        st.sampled_from(sorted(GRID_KEYS)),
        st.sampled_from(["Sparsity", "--prune-epochs", "prune_epochs ", "grid", "", "x"]),
        st.text(max_size=6),
    )

    @st.composite
    def grids(draw: Any) -> tuple[str, str]:
        if draw(st.booleans()):
            doc, _ = mutate_json(draw, _VALID_GRID)
        else:
            doc = draw(
                st.dictionaries(
                    keys, st.one_of(JSON_VALUES, st.lists(JSON_SCALARS, max_size=3)), max_size=5
                )
            )
        if draw(st.booleans()):
            doc = {"grid": doc}
        fmt = draw(st.sampled_from(("json", "toml")))
        return fmt, json.dumps(doc) if fmt == "json" else toml_text(doc)

    def body(example: tuple[str, str]) -> None:
        fmt, text = example
        path = work / f"grid.{fmt}"
        path.write_text(text, encoding="utf-8")
        run_case(tally, {fmt: text[:1500]}, lambda: _grid_consumer(path, out))

    run_hypothesis(n // 2, seed, grids(), body)
    for i in range(n - tally.cases):
        rng = _case_rng(seed, "grid", i)
        fmt = rng.choice(("json", "toml"))
        original = (json.dumps(_VALID_GRID) if fmt == "json" else toml_text(_VALID_GRID)).encode()
        tokens = JSON_TOKENS if fmt == "json" else TOML_TOKENS
        how, data = mutate(original, rng, hot=len(original), tokens=tokens)
        path = work / f"grid.{fmt}"
        path.write_bytes(data)
        run_case(tally, f"bytes case {i}: {fmt} {how}", lambda p=path: _grid_consumer(p, out))
    return tally


# ---- CLI option values ------------------------------------------------------------------------

OPTION_VALUES = st.one_of(
    st.integers(-3, 10).map(str),
    st.sampled_from(
        [
            "0",
            "-1",
            "1e400",
            "nan",
            "inf",
            "-inf",
            "-0.0",
            "0.5",
            "1.5",
            "2**31",
            "99999999999999999999",
            "9" * 5000,
            "",
            " ",
            "1,2",
            "1,,2",
            ",",
            "0,1",
            "96x96",
            "0x0",
            "x",
            "1x2x3",
            "-5x5",
            "auto:2",
            "auto:x",
            "int8",
            "float32,int8",
            "int8,int99",
            "relu",
            "mlp",
            "none",
            "true",
            "sparsity=0.5",
            "sparsity=",
            "=0.5",
            "precision=int8+float16",
            "hidden=300+100",
            "image_size=96x96,1x0",
            "clusters=none,16",
            "seed=1,1",
            "bogus=1",
            "sparsity=nan",
            "epochs=1e400",
            "hidden=+",
            "\x00",
            "é",
            "--help",
        ]
    ),
    st.text(max_size=12),
)
# Options never fuzzed: where files are written (the harness's own folder), and --data (kept
# on a missing file so that a valid command stops at the data, before anything trains).
_FIXED = {
    "output",
    "json_path",
    "csv_path",
    "markdown_path",
    "plot_path",
    "data_source",
    "data_dir",
}


def _cli_case(draw: Any, command: Any, name: str) -> list[str]:
    args = [name]
    params = [p for p in command.params if p.name not in _FIXED and p.param_type_name == "option"]
    for p in draw(st.lists(st.sampled_from(params), max_size=6, unique_by=lambda p: p.name)):
        flag = draw(st.sampled_from(p.opts + p.secondary_opts))
        if p.is_flag:
            args.append(flag)
        else:
            args += [flag, draw(OPTION_VALUES)]
    return args


def _cli_outcome(result: Any, args: list[str]) -> str | None:
    """None for success, the clean error's kind, or a Finding."""
    output = result.output or ""
    if result.exit_code == 0 and result.exception is None:
        return None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        e = result.exception
        raise Finding(f"{type(e).__name__}: {e} ({_where(e)})")
    if "Traceback" in output:
        raise Finding(f"a traceback: {output[-800:]}")
    errors = [ln for ln in output.splitlines() if ln.startswith("Error:")]
    if result.exit_code not in (1, 2) or len(errors) != 1:
        raise Finding(f"exit {result.exit_code} with output {output[-800:]!r}")
    tail = output[output.index(errors[0]) :].strip()
    if "\n" in tail:
        raise Finding(f"an error of several lines: {tail[:800]!r}")
    return f"exit {result.exit_code}"


def fuzz_cli(n: int, seed: int, work: Path) -> Tally:
    """Option values of every command through click's CliRunner: `inspect`, `verify --no-run`
    and `bench` (on a missing path) run as a user runs them; `export` and `train` run with
    `--data` on a missing .npz so that the options are parsed, checked and built into a
    config and the run stops at the data, before TensorFlow; `sweep`'s options are parsed and
    its grid expanded into checked points (`plan_sweep`), nothing run; `--grid KEY=V` values
    included."""
    from click.testing import CliRunner

    from edgekit.cli.main import main, user_error
    from edgekit.cli.sweep import plan_sweep
    from edgekit.cli.sweep import sweep as sweep_command

    tally = Tally("cli")
    work.mkdir(parents=True, exist_ok=True)
    folder = work / "verify"
    folder.mkdir(exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(seed_manifest(folder)))
    missing = str(work / "missing.npz")
    model = str(folder / "tiny_int8.tflite")
    commands = {
        name: main.commands[name]
        for name in ("inspect", "verify", "bench", "export", "train", "sweep")
    }
    fixed = {
        "inspect": [model],
        "verify": [str(folder), "--no-run"],
        "bench": [str(work / "nothing-here"), "--data", missing],
        "export": ["--data", missing, "-o", str(work / "out")],
        "train": ["--data", missing, "-o", str(work / "out" / "m.keras")],
        "sweep": ["--data", missing, "-o", str(work / "sweep")],
    }
    runner = CliRunner()

    @st.composite
    def cases(draw: Any) -> list[str]:
        name = draw(st.sampled_from(sorted(commands)))
        args = _cli_case(draw, commands[name], name)
        if name == "sweep" and draw(st.sampled_from([True, True, False])):
            for _ in range(draw(st.integers(1, 3))):
                args += ["--grid", draw(OPTION_VALUES)]
        given = list(fixed[name])
        # Paths too, sometimes: the file or folder argument, a MODEL, --data.
        if draw(st.sampled_from([False, False, True])):
            if name in ("inspect", "verify", "bench"):
                given[0] = draw(OPTION_VALUES)
            elif name in ("export", "sweep"):
                given.append(draw(OPTION_VALUES))
        if name in ("export", "train", "sweep") and draw(st.sampled_from([False, False, True])):
            given[1] = draw(OPTION_VALUES)
        return [name, *given, *args[1:]]

    def sweep_case(args: list[str]) -> str | None:
        import click

        try:
            with sweep_command.make_context("sweep", args[1:]) as ctx:
                plan_sweep(ctx.params.pop("model"), ctx.params)
        except click.exceptions.Exit:
            return None
        except Exception as e:  # shown as `edgekit sweep` shows it (cli.main's error handling)
            error = e if isinstance(e, click.ClickException) else user_error(e)
            if error is None:
                raise
            message = error.format_message()
            if "\n" in message.strip():
                raise Finding(f"an error of several lines: {message!r}") from None
            return f"click {type(error).__name__}"
        return None

    def body(args: list[str]) -> None:
        if args[0] == "sweep":
            run_case(tally, args, lambda: sweep_case(args))
        else:
            run_case(tally, args, lambda: _cli_outcome(runner.invoke(main, args), args))

    with contextlib.chdir(work):  # relative paths land in the harness's folder
        run_hypothesis(n, seed, cases(), body)
    shutil.rmtree(work / "out", ignore_errors=True)
    return tally


TARGETS: dict[str, Callable[[int, int, Path], Tally]] = {
    "tflite": fuzz_tflite,
    "tflite_runtime": fuzz_tflite_runtime,
    "tflite_metadata": fuzz_tflite_metadata,
    "manifest": fuzz_manifest,
    "images": fuzz_images,
    "npz": fuzz_npz,
    "tf_config": fuzz_tf_config,
    "grid": fuzz_grid,
    "cli": fuzz_cli,
    "devices": fuzz_devices,
}


def run_target(name: str, n: int, seed: int, work: Path) -> Tally:
    """n cases of one target with `seed`, in a folder of its own under `work`."""
    start = time.monotonic()
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    tally = TARGETS[name](n, seed, folder)
    tally.seconds = time.monotonic() - start
    return tally

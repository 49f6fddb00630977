"""Grid keys and values: `--grid KEY=V1,V2`, TOML/JSON grid files, values as typed.

Keys are `edgekit export`'s option names (dashes or underscores). No TensorFlow.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from edgekit.core.augment import parse_augment
from edgekit.core.config import parse_precision
from edgekit.core.errors import EdgekitError, first_line

# One grid value as parsed: a number, switch or name, the parts of a list-valued key (hidden
# sizes, precisions, an image size), or None (the option's default).
GridValue = int | float | bool | str | tuple[int, ...] | tuple[str, ...] | None
Grid = dict[str, list[GridValue]]

# Inside one grid value: the parts of a list-valued key (`hidden=300+100`, `precision=int8+int4`).
PART_SEPARATOR = "+"


@dataclass(frozen=True)
class GridKey:
    """How a grid key's values are read; where they land is edgekit.core.build's business (a
    grid key is an option name of build_config)."""

    kind: str  # int, float, bool, str, sizes, precisions, image_size, augment
    optional: bool = False  # "none" is a value (the option's default)


GRID_KEYS: dict[str, GridKey] = {
    # data
    "data": GridKey("str"),
    "data_dir": GridKey("str", True),
    "validation_size": GridKey("int"),
    "train_samples": GridKey("int", True),
    "test_samples": GridKey("int", True),
    "test_split": GridKey("float"),
    "image_size": GridKey("image_size", True),
    "pixel_scale": GridKey("float", True),
    "seed": GridKey("int"),  # data, training, pruning, calibration, QAT, clustering
    # training
    "preset": GridKey("str"),
    "arch": GridKey("str"),
    "hidden": GridKey("sizes"),
    "l1": GridKey("float"),
    "l2": GridKey("float"),
    "dropout": GridKey("float", True),
    "dropout_layers": GridKey("int"),
    "alpha_dropout": GridKey("float"),
    "max_norm": GridKey("float", True),
    "init": GridKey("str"),
    "activation": GridKey("str"),
    "batch_norm": GridKey("bool"),
    "standardize": GridKey("bool"),
    "optimizer": GridKey("str"),
    "lr_schedule": GridKey("str"),
    "epochs": GridKey("int", True),
    "batch_size": GridKey("int"),  # training and pruning, as `edgekit export`
    "learning_rate": GridKey("float"),
    "patience": GridKey("int"),
    "augment": GridKey("augment", True),  # flip+translate:0.1 (+ joins the items of one value)
    # pruning: its keys turn pruning on; prune=false turns it off
    "prune": GridKey("bool"),
    "sparsity": GridKey("float"),
    "prune_epochs": GridKey("int", True),
    "min_weights": GridKey("int"),
    "sparsity_structure": GridKey("str"),
    # export
    "precision": GridKey("precisions"),
    "calibration_samples": GridKey("int"),
    "verify_samples": GridKey("int", True),
    "min_agreement": GridKey("float", True),
    "max_accuracy_drop": GridKey("float", True),
    "float_layers": GridKey("str", True),
    "int4_layers": GridKey("str", True),
    "sparse_encoding": GridKey("precisions", True),
    "name": GridKey("str", True),
    # QAT and clustering: their keys turn them on; qat=false / clusters=none turn them off
    "qat": GridKey("bool"),
    "qat_epochs": GridKey("int"),
    "clusters": GridKey("int", True),
    "cluster_epochs": GridKey("int"),
}
_NAMES = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "sizes": "a list of sizes",
    "image_size": "a size HxW",
}


def normalize_key(key: str) -> str:
    """Grid keys are option names: `prune-epochs`, `--prune-epochs` and `prune_epochs` agree."""
    return key.strip().lstrip("-").replace("-", "_").lower()


def check_key(key: str) -> str:
    """The normalized key, or a one-line error listing the valid keys."""
    name = normalize_key(key)
    if name in GRID_KEYS:
        return name
    close = difflib.get_close_matches(name, GRID_KEYS, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise EdgekitError(
        f"unknown grid key {key!r}{hint}: valid keys are {', '.join(sorted(GRID_KEYS))}"
    )


def parse_value(key: str, value: Any) -> GridValue:
    """One grid value of `key` (a string from the command line, or a TOML/JSON value)."""
    spec = GRID_KEYS[key]
    if isinstance(value, str):
        value = value.strip()
        if spec.optional and value.lower() in ("none", "null", "default"):
            return None
    elif value is None:
        if spec.optional:
            return None
        raise EdgekitError(f"grid key {key} needs a value, got none: pass e.g. {_example(key)}")
    try:
        return _convert(spec, value)
    except EdgekitError as e:  # e.g. an unknown precision: its own words
        raise EdgekitError(f"grid value {key}={value!r}: {e}") from None
    except (ValueError, TypeError, OverflowError):
        want = _NAMES.get(spec.kind, "a value")
        raise EdgekitError(
            f"grid value {key}={value!r} is not {want}: pass e.g. {_example(key)}"
        ) from None


def _convert(spec: GridKey, value: Any) -> GridValue:
    if spec.kind == "int":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value) if not isinstance(value, str) else int(value, 10)
    if spec.kind == "float":
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        words = {
            "true": True,
            "yes": True,
            "on": True,
            "1": True,
            "false": False,
            "no": False,
            "off": False,
            "0": False,
        }
        return words[str(value).lower()] if str(value).lower() in words else _fail(value)
    if spec.kind == "sizes":
        parts = _parts(value)
        return tuple(int(p) for p in parts)
    if spec.kind == "precisions":
        return tuple(parse_precision(p).value for p in _parts(value))
    if spec.kind == "augment":  # a file's string may join its items with commas too
        items = value if isinstance(value, (list, tuple)) else str(value).replace("+", ",")
        return parse_augment(items)
    if spec.kind == "image_size":
        if isinstance(value, (list, tuple)):
            h, w = (int(v) for v in value)
        else:
            h, w = (int(v) for v in str(value).lower().split("x"))
        return (h, w)
    return str(value)


def _fail(value: object) -> NoReturn:
    raise ValueError(value)


def _parts(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    parts = [p.strip() for p in str(value).split(PART_SEPARATOR) if p.strip()]
    if not parts:
        raise ValueError(value)
    return parts


_EXAMPLES = {
    "sparsity": "sparsity=0.5,0.8",
    "precision": "precision=int8,float16+int8",
    "hidden": "hidden=300+100,64+32",
    "arch": "arch=mlp,cnn",
    "epochs": "epochs=5,10",
    "image_size": "image_size=96x96",
    "prune": "prune=true,false",
    "clusters": "clusters=none,16",
    "preset": "preset=fast,sparse",
    "augment": "augment=none,flip+translate:0.1",
}


def _example(key: str) -> str:
    if key in _EXAMPLES:
        return _EXAMPLES[key]
    kind = GRID_KEYS[key].kind
    sample = {"int": "1,2", "float": "0.1,0.2", "bool": "true,false"}.get(kind, "A,B")
    return f"{key}={sample}"


def parse_grid(items: Sequence[str]) -> Grid:
    """`--grid` values: `KEY=V1,V2,...` or the path of a .toml/.json grid file (see load_grid_file).

    Raises:
        EdgekitError: a malformed item, an unknown key, a key given twice, a bad value.
    """
    grid: Grid = {}
    for item in items:
        if "=" not in item:
            if item.lower().endswith((".toml", ".json")) or Path(item).is_file():
                _merge(grid, load_grid_file(item), f"grid file {item}")
                continue
            raise EdgekitError(
                f"--grid {item!r} is neither KEY=V1,V2 nor a .toml/.json grid file: pass e.g. "
                "--grid sparsity=0.5,0.8"
            )
        raw_key, _, raw_values = item.partition("=")
        key = check_key(raw_key)
        values = [v for v in raw_values.split(",") if v.strip()]
        if not values:
            raise EdgekitError(f"--grid {item!r} has no values: pass e.g. {_example(key)}")
        _merge(grid, {key: [parse_value(key, v) for v in values]}, "--grid")
    return grid


def _merge(grid: Grid, more: Grid, where: str) -> None:
    for key, values in more.items():
        if key in grid:
            raise EdgekitError(
                f"grid key {key} is given twice ({where} repeats it): give all its values once, "
                f"e.g. {_example(key)}"
            )
        grid[key] = values


def load_grid_file(path: str | os.PathLike[str]) -> Grid:
    """A grid from TOML or JSON: `key = [values]` (a single value is a fixed setting).

    The keys may sit at the top level or in a `grid` table. A list-valued key takes a list per
    value: `hidden = [[300, 100], [64, 32]]`, `precision = ["int8", ["float16", "int8"]]`.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise EdgekitError(
            f"grid file {p} is not UTF-8 text (byte {e.start} is {e.object[e.start]:#04x}): "
            "save it as UTF-8"
        ) from None
    except OSError as e:
        raise EdgekitError(
            f"cannot read grid file {p} ({e.strerror or e}): pass an existing .toml or .json file"
        ) from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import tomllib  # Python >= 3.11

            data = tomllib.loads(text)
    except ImportError:
        raise EdgekitError(
            f"grid file {p}: TOML needs Python >= 3.11 here; write the grid as JSON instead"
        ) from None
    except RecursionError:
        raise EdgekitError(
            f"grid file {p} is nested too deeply: a grid maps keys to lists of values"
        ) from None
    except ValueError as e:  # json.JSONDecodeError and tomllib.TOMLDecodeError
        first = first_line(e)
        raise EdgekitError(f"grid file {p} is not valid {p.suffix[1:].upper()}: {first}") from None
    if isinstance(data, dict) and set(data) == {"grid"}:
        data = data["grid"]
    if not isinstance(data, dict) or not data:
        raise EdgekitError(
            f"grid file {p} must map keys to lists of values, e.g. sparsity = [0.5, 0.8]"
        )
    grid: Grid = {}
    for raw_key, values in data.items():
        key = check_key(str(raw_key))
        values = values if isinstance(values, list) else [values]
        if not values:
            raise EdgekitError(f"grid file {p}: key {key} has no values: e.g. {_example(key)}")
        _merge(grid, {key: [parse_value(key, v) for v in values]}, f"grid file {p}")
    return grid


def format_value(value: GridValue) -> str:
    """A grid value as it is written on the command line."""
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return PART_SEPARATOR.join(format_value(v) for v in value)
    return str(value)


def describe_params(params: dict[str, GridValue]) -> str:
    """'sparsity=0.8 precision=int8'."""
    return " ".join(f"{k}={format_value(v)}" for k, v in params.items()) or "(base config)"

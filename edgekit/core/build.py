"""One way from options to a PipelineConfig: `edgekit export`, a sweep point and a Python call
all build their config here.

Values are keyed by `edgekit export`'s option names, with underscores (`sparsity`,
`prune_epochs`, `precision`, `hidden`, ...), typed (`hidden=(300, 100)`, not "300,100"); a
`SECTION.FIELD` key (`prune.learning_rate`) sets a config field that has no option. The rules
live here and nowhere else:

- a preset's settings replace every value not given explicitly (explicit options beat it);
- a budget (`max_accuracy_drop`) given means the search: cheaper files are tried until one fits;
- `prune` None: on when training, off for a given model;
- one `seed`, handed down by the PipelineConfig to every config that draws random numbers;
- one `batch_size` for training and pruning;
- `sparsity_structure` 2:4 means sparsity 0.5; `sparse_encoding` None: float32 when pruning in
  1x4 blocks (the one structure with a faster kernel), else none.

No TensorFlow here.

Example:
    >>> from edgekit.core.build import build_config
    >>> config = build_config({"sparsity": 0.5, "activation": "relu"}, preset="sparse", seed=3)
    >>> config.train.activation.value, config.train.l2, config.prune.target_sparsity
    ('relu', 0.0001, 0.5)
    >>> config.prune.seed, config.export.calibration_seed
    (3, 3)
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Collection, Mapping
from typing import Any

from edgekit.core.config import (
    DEFAULT_MAX_ACCURACY_DROP,
    ClusterConfig,
    DataConfig,
    ExportConfig,
    PipelineConfig,
    PruneConfig,
    QatConfig,
    TrainConfig,
)
from edgekit.core.errors import EdgekitError
from edgekit.core.presets import preset_settings

SECTIONS: dict[str, type[Any]] = {
    "data": DataConfig,
    "train": TrainConfig,
    "prune": PruneConfig,
    "export": ExportConfig,
    "qat": QatConfig,
    "cluster": ClusterConfig,
}

# Options that set one field: option -> (section, field).
FIELD_OPTIONS: dict[str, tuple[str, str]] = {
    "data": ("data", "source"),
    "data_dir": ("data", "data_dir"),
    "validation_size": ("data", "validation_size"),
    "train_samples": ("data", "train_samples"),
    "test_samples": ("data", "test_samples"),
    "test_split": ("data", "test_split"),
    "image_size": ("data", "image_size"),
    "pixel_scale": ("data", "pixel_scale"),
    "skip_bad_images": ("data", "skip_bad_images"),
    "class_names": ("data", "class_names"),
    "arch": ("train", "arch"),
    "hidden": ("train", "hidden_units"),
    "l1": ("train", "l1"),
    "l2": ("train", "l2"),
    "dropout": ("train", "dropout"),
    "dropout_layers": ("train", "dropout_layers"),
    "alpha_dropout": ("train", "alpha_dropout"),
    "max_norm": ("train", "max_norm"),
    "init": ("train", "init"),
    "activation": ("train", "activation"),
    "batch_norm": ("train", "batch_norm"),
    "standardize": ("train", "standardize"),
    "optimizer": ("train", "optimizer"),
    "lr_schedule": ("train", "lr_schedule"),
    "epochs": ("train", "epochs"),
    "learning_rate": ("train", "learning_rate"),
    "patience": ("train", "patience"),
    "distributed": ("train", "distributed"),
    "augment": ("train", "augment"),
    "sparsity": ("prune", "target_sparsity"),
    "prune_epochs": ("prune", "epochs"),
    "min_weights": ("prune", "min_weights"),
    "sparsity_structure": ("prune", "structure"),
    "precision": ("export", "precisions"),
    "calibration_samples": ("export", "calibration_samples"),
    "verify_samples": ("export", "verify_samples"),
    "min_agreement": ("export", "min_agreement"),
    "float_layers": ("export", "float_layers"),
    "int4_layers": ("export", "int4_layers"),
    "name": ("export", "name"),
    "mc_samples": ("export", "mc_samples"),
    "mc_masks": ("export", "mc_masks"),
    "qat_epochs": ("qat", "epochs"),
    "cluster_epochs": ("cluster", "epochs"),
}

# Options that follow a rule (see the module's docstring), with their defaults.
RULE_OPTIONS: dict[str, Any] = {
    "preset": None,
    "seed": DataConfig.seed,
    "batch_size": TrainConfig.batch_size,
    "prune": None,  # None: on when training, off for a given model
    "max_accuracy_drop": None,  # None: the default budget, no search
    "qat": False,
    "clusters": None,  # None: no clustering
    "sparse_encoding": None,  # None: float32 when pruning in 1x4 blocks, else none
    "output": PipelineConfig.output_dir,
}

OPTION_NAMES: frozenset[str] = frozenset(FIELD_OPTIONS) | frozenset(RULE_OPTIONS)

# Fields the seed and the batch size rules own: not settable as SECTION.FIELD.
_RULE_FIELDS = {"seed", "calibration_seed", "batch_size"}


def _field_default(cls: type[Any], name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def option_defaults() -> dict[str, Any]:
    """Every option's default value: what `edgekit export` uses for an option not given."""
    defaults = {
        option: _field_default(SECTIONS[section], field)
        for option, (section, field) in FIELD_OPTIONS.items()
    }
    return defaults | RULE_OPTIONS


def check_option(name: str) -> None:
    """Raise a one-line EdgekitError unless `name` is an option or a settable SECTION.FIELD."""
    if name in OPTION_NAMES:
        return
    section, dot, field = name.partition(".")
    if dot and section in SECTIONS:
        fields = [f.name for f in dataclasses.fields(SECTIONS[section])]
        if field in fields and field not in _RULE_FIELDS:
            return
        if field in _RULE_FIELDS:
            raise EdgekitError(
                f"{name} is set by the option {'seed' if 'seed' in field else field}: pass that"
            )
    close = difflib.get_close_matches(name, OPTION_NAMES, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise EdgekitError(
        f"unknown option {name!r}{hint}: expected one of {', '.join(sorted(OPTION_NAMES))}, "
        "or SECTION.FIELD of a config (e.g. prune.learning_rate)"
    )


def build_config(
    values: Mapping[str, Any] | None = None,
    *,
    explicit: Collection[str] | None = None,
    preset: str | None = None,
    model_given: bool = False,
    **more: Any,
) -> PipelineConfig:
    """The PipelineConfig of option values: presets, the budget, the seed and pruning resolved.

    Args:
        values: option name -> value (see the module's docstring); missing options take their
            defaults (option_defaults()).
        explicit: the options the user gave (on the command line, in a grid point); a preset
            replaces every other value. None: every key of `values` and `more`.
        preset: a preset's name (the same as values["preset"]).
        model_given: the run starts from a given model (pruning then defaults to off).
        **more: more option values, as keywords.

    Returns:
        The validated PipelineConfig.

    Raises:
        EdgekitError: an unknown option, an unknown preset, or invalid settings (the config's
            own one-line message).
    """
    given = {**(values or {}), **more}
    if preset is not None:
        if given.get("preset") not in (None, preset):
            raise EdgekitError(
                f"two presets given, {given['preset']!r} and {preset!r}: pass one of them"
            )
        given["preset"] = preset
    for name in given:
        check_option(name)
    chosen = set(given) if explicit is None else set(explicit)
    v = option_defaults() | given
    if v["preset"]:
        settings = preset_settings(str(v["preset"]))
        v |= {key: value for key, value in settings.items() if key not in chosen}
    if str(v["sparsity_structure"]) == "2:4" and "sparsity" not in chosen:
        v["sparsity"] = 0.5  # 2 zeros in every 4 weights
    sections = _section_fields(v, given)
    on = {
        "data": True,
        "train": True,
        "prune": (not model_given) if v["prune"] is None else bool(v["prune"]),
        "export": True,
        "qat": bool(v["qat"]),
        "cluster": v["clusters"] is not None,
    }
    if v["sparse_encoding"] is None:
        block = str(v["sparsity_structure"]) == "1x4" and on["prune"]
        sections["export"]["sparse_encoding"] = ("float32",) if block else ()
    # A section switched off is not built: its options are not checked (as --no-prune ignores
    # --sparsity).
    configs: dict[str, Any] = {
        name: SECTIONS[name](**fields) if on[name] else None for name, fields in sections.items()
    }
    seed = None if v["seed"] is None else int(v["seed"])
    return PipelineConfig(**configs, output_dir=str(v["output"]), seed=seed)


def _section_fields(v: dict[str, Any], given: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each config's fields from the resolved option values `v`: one field per option, the
    batch size and budget rules, then the SECTION.FIELD values of `given`."""
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for option, (section, field) in FIELD_OPTIONS.items():
        sections[section][field] = v[option]
    sections["train"]["batch_size"] = sections["prune"]["batch_size"] = v["batch_size"]
    budget = v["max_accuracy_drop"]
    sections["export"]["max_accuracy_drop"] = (
        DEFAULT_MAX_ACCURACY_DROP if budget is None else budget
    )
    sections["export"]["search"] = budget is not None
    sections["cluster"]["clusters"] = v["clusters"]
    sections["export"]["sparse_encoding"] = v["sparse_encoding"]
    for name, value in given.items():
        if "." in name:
            section, _, field = name.partition(".")
            sections[section][field] = value
    return sections


def config_from_record(record: Mapping[str, Any]) -> PipelineConfig:
    """The PipelineConfig of a manifest's or a sweep point's `config` (the dict to_dict wrote).

    The manifest's `run` entry (what the run found: epochs, sparsity, folding) is not a
    setting and is left aside.

    Raises:
        EdgekitError: an unknown key or an invalid setting, in one line.
    """
    return PipelineConfig.from_dict({k: v for k, v in record.items() if k != "run"})

"""The guidance's configurations as presets: TrainConfig settings plus pruning on or off.

No TensorFlow here: the CLI resolves a preset before it imports anything heavy.

| preset           | init  | activation | BN  | regularization    | optimizer | lr     | prune |
| ---------------- | ----- | ---------- | --- | ----------------- | --------- | ------ | ----- |
| default          | he    | elu        | on  | l2 1e-4           | nadam     | 1cycle | off   |
| self-normalizing | lecun | selu       | off | alpha dropout 0.1 | nadam     | 1cycle | off   |
| sparse           | he    | elu        | on  | l1 1e-5 + l2 1e-4 | nadam     | 1cycle | on    |
| fast             | he    | relu       | on  | l1 1e-5           | adam      | cosine | on    |

All of them stop early on validation accuracy (--patience). self-normalizing also standardizes
the inputs (mean 0, std 1). `fast` is edgekit's pipeline as it was before presets (BN folded at
export, ReLU, int8/float16 files).
"""

from __future__ import annotations

from typing import Any

from edgekit.core.config import Activation, TrainConfig
from edgekit.core.errors import EdgekitError

# Settings are TrainConfig field names, plus "prune" (the export's pruning on or off); each is
# also an option of edgekit.core.build.build_config, which applies presets.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "init": "he",
        "activation": "elu",
        "batch_norm": True,
        "l1": 0.0,
        "l2": 1e-4,
        "dropout": None,
        "alpha_dropout": 0.0,
        "max_norm": None,
        "standardize": False,
        "optimizer": "nadam",
        "lr_schedule": "1cycle",
        "prune": False,
    },
    "self-normalizing": {
        "init": "lecun",
        "activation": "selu",
        "batch_norm": False,
        "l1": 0.0,
        "l2": 0.0,
        "dropout": None,
        "alpha_dropout": 0.1,
        "max_norm": None,
        "standardize": True,
        "optimizer": "nadam",
        "lr_schedule": "1cycle",
        "prune": False,
    },
    "sparse": {
        "init": "he",
        "activation": "elu",
        "batch_norm": True,
        "l1": 1e-5,
        "l2": 1e-4,
        "dropout": None,
        "alpha_dropout": 0.0,
        "max_norm": None,
        "standardize": False,
        "optimizer": "nadam",
        "lr_schedule": "1cycle",
        "prune": True,
    },
    "fast": {
        "init": "he",
        "activation": "relu",
        "batch_norm": True,
        "l1": 1e-5,
        "l2": 0.0,
        "dropout": None,
        "alpha_dropout": 0.0,
        "max_norm": None,
        "standardize": False,
        "optimizer": "adam",
        "lr_schedule": "cosine",
        "prune": True,
    },
}

PRUNING_BREAKS_SELF_NORMALIZATION = (
    "pruning breaks self-normalization (SELU's mean-0, variance-1 activations need dense "
    "LeCun-initialized layers): for a sparse model use --preset sparse (He, ELU, L1 + pruning), "
    "or pass --no-prune"
)


def preset_settings(name: str) -> dict[str, Any]:
    """A copy of the settings of preset `name`.

    Raises:
        EdgekitError: no preset has that name.
    """
    try:
        return dict(PRESETS[name])
    except KeyError:
        raise EdgekitError(
            f"unknown preset {name!r}: expected one of {', '.join(PRESETS)}"
        ) from None


def describe_settings(settings: dict[str, Any]) -> str:
    """'init=he activation=elu batch_norm=on ...' (unset values left out)."""
    parts = []
    for key, value in settings.items():
        if value is None or (key in ("dropout", "alpha_dropout") and not value):
            continue
        if isinstance(value, bool):
            value = "on" if value else "off"
        parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def pruning_warning(train: TrainConfig, prune: bool) -> str | None:
    """The guidance's warning when a self-normalizing (SELU) network is pruned, else None."""
    if prune and train.activation is Activation.SELU:
        return f"warning: {PRUNING_BREAKS_SELF_NORMALIZATION}"
    return None

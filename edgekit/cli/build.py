"""The PipelineConfig of the `edgekit` commands' options, built by edgekit.core.build.

Parsing only: option strings become typed values here ("300,100" -> (300, 100)), the names given
on the command line are collected, and the one builder does the rest. No TensorFlow.
"""

from __future__ import annotations

from typing import Any

import click

from edgekit.cli.options import explicit_options, image_size, l1_l2, mc_samples
from edgekit.core.build import OPTION_NAMES, build_config
from edgekit.core.config import DataConfig, PipelineConfig
from edgekit.core.errors import EdgekitError
from edgekit.core.presets import describe_settings, preset_settings, pruning_warning

# Option parameters whose builder option has another name.
_OPTION_OF_PARAM = {"data_source": "data", "precisions": "precision"}


def option_values(kw: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The builder's values of a command's parsed options, and the options given explicitly.

    Args:
        kw: the command's parameters, as click passes them.

    Returns:
        (option name -> typed value, the names given on the command line or by environment).

    Raises:
        EdgekitError: a malformed option value (--hidden, --image-size, --l1-l2, ...).
    """
    values = {
        _OPTION_OF_PARAM.get(param, param): value
        for param, value in kw.items()
        if _OPTION_OF_PARAM.get(param, param) in OPTION_NAMES
    }
    if "image_size" in values:
        values["image_size"] = image_size(values["image_size"])
    if "hidden" in values:
        try:
            values["hidden"] = tuple(int(h) for h in str(kw["hidden"]).split(",") if h.strip())
        except ValueError:
            raise EdgekitError(
                f"--hidden must be comma-separated sizes like 300,100, got {kw['hidden']!r}"
            ) from None
    if "mc_samples" in values:
        values["mc_samples"] = mc_samples(values["mc_samples"])
    if values.get("sparse_encoding") is not None:
        given_sparse = str(values["sparse_encoding"]).strip()
        values["sparse_encoding"] = (
            ()
            if given_sparse.lower() == "none"
            else tuple(p.strip() for p in given_sparse.split(",") if p.strip())
        )
    if "precision" in values:
        given = values.pop("precision")
        if given is not None:
            values["precision"] = tuple(p.strip() for p in given.split(",") if p.strip())
    explicit = {_OPTION_OF_PARAM.get(name, name) for name in explicit_options()}
    if kw.get("class_names") is not None or kw.get("labels_file") is not None:
        values["class_names"] = _class_names(kw.get("class_names"), kw.get("labels_file"))
        explicit.add("class_names")
    else:
        values.pop("class_names", None)
    if kw.get("l1_l2"):
        if {"l1", "l2"} & explicit:
            raise EdgekitError("--l1-l2 sets both factors: pass it or --l1/--l2, not both")
        values["l1"], values["l2"] = l1_l2(kw["l1_l2"])
        explicit |= {"l1", "l2"}
    return values, explicit & OPTION_NAMES


def pipeline_config_from_options(kw: dict[str, Any], model: str | None = None) -> PipelineConfig:
    """The PipelineConfig a command builds from its options (`--preset` applied).

    A preset's settings replace the options not given explicitly, and are printed on stderr
    (unless --quiet). For `export` (the commands with --prune/--no-prune), pruning a SELU
    network prints the guidance's warning, with --quiet too.

    Args:
        kw: the command's parameters, as click passes them.
        model: the MODEL argument (pruning is then off unless --prune).
    """
    values, explicit = option_values(kw)
    exporting = "prune" in kw  # `edgekit train` does not prune
    if values.get("preset") and not kw.get("quiet"):
        settings = preset_settings(values["preset"])
        if not exporting:
            settings.pop("prune")
        over = sorted(k for k in settings if k in explicit)
        note = f" (overridden by options: {', '.join(over)})" if over else ""
        click.echo(f"preset {values['preset']}: {describe_settings(settings)}{note}", err=True)
    config = build_config(values, explicit=explicit, model_given=model is not None)
    warning = pruning_warning(config.train, config.prune is not None) if exporting else None
    if warning:  # a warning, not progress: shown with --quiet too
        click.echo(warning, err=True)
    return config


def data_config_from_options(kw: dict[str, Any]) -> DataConfig:
    """The DataConfig of a command's data options."""
    values, explicit = option_values(kw)
    return build_config(values, explicit=explicit).data


def _class_names(names: str | None, labels_file: str | None) -> tuple[str, ...] | None:
    """--class-names or --labels-file (one of them), as a tuple of names in output order."""
    from edgekit.core.data.classes import parse_class_names, read_labels_file

    if names is not None and labels_file is not None:
        raise EdgekitError("--class-names and --labels-file both name the classes: pass one")
    if labels_file is not None:
        return read_labels_file(labels_file)
    return parse_class_names(names) if names is not None else None

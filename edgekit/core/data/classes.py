"""Class names in a model's output order: `--class-names a,b,...` or a labels file.

A data set numbers its classes its own way (an image folder: its sorted folder names). A user's
model may number them another way. Given the model's order, the data's labels are renumbered
to it, so that label k means the model's output k. No TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgekit.core.errors import DataError

__all__ = ["class_order", "parse_class_names", "read_labels_file"]


def parse_class_names(value: str) -> tuple[str, ...]:
    """'Coat,Bag,...' -> ('Coat', 'Bag', ...): comma-separated, spaces around names dropped."""
    names = tuple(name.strip() for name in value.split(","))
    if any(not name for name in names):
        raise DataError(
            f"--class-names {value!r} holds an empty name: pass the class names in the model's "
            "output order, comma-separated (or --labels-file FILE, one name per line)"
        )
    return names


def read_labels_file(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Class names in output order, one per line (as a labels.txt), blank lines ignored."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(
            f"cannot read labels file {path} ({getattr(e, 'strerror', None) or e}): pass a UTF-8 "
            "text file with one class name per line, in the model's output order"
        ) from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise DataError(f"labels file {path} holds no class names: one name per line")
    return names


def class_order(class_names: Sequence[str], labels: Sequence[str], where: str) -> np.ndarray:
    """For each of the data's classes (in the data's order), its index in `class_names`.

    `class_names` may name more classes than the data has (outputs with no samples here).

    Raises:
        DataError: a repeated name, or a class of the data that `class_names` lacks.
    """
    names = list(class_names)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(
            f"class names repeat {', '.join(repr(n) for n in repeated)}: give each class of the "
            "model's outputs once, in output order"
        )
    missing = [n for n in labels if n not in names]
    if missing:
        raise DataError(
            f"{where} has class(es) {', '.join(repr(n) for n in missing)} that the class names "
            f"given do not name: name every class of {where} once, in the model's output order "
            f"(its classes: {', '.join(labels)})"
        )
    return np.asarray([names.index(n) for n in labels], dtype=np.int64)

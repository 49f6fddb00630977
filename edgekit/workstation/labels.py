"""Do the data's labels mean what the model's outputs mean? Checked before a user's model is
trained further, pruned, quantized or scored.

An image folder numbers its classes by sorted folder name; the model numbers them in the order
it was trained with. When the two differ, every accuracy is wrong and fine-tuning teaches the
model the wrong classes. The model's predictions on the data tell: when each class of the data
is mostly predicted as one output, a different output for each class, and that mapping is not
the identity, the labels are a permutation of the model's classes. edgekit then stops, names
the mapping and how to pass the model's order (`--class-names`, `--labels-file`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.data import Dataset
from edgekit.core.errors import DataError
from edgekit.core.io.console import Progress

__all__ = ["LabelCheck", "check_label_order", "compare_labels"]

# The classes a permutation moves are "mostly" predicted as their outputs: this share at least.
MOSTLY = 0.5
# The model's order must beat the data's by this much accuracy to call the labels permuted.
MIN_GAIN = 0.10
# Near chance: top-1 accuracy below this multiple of 1 / classes.
NEAR_CHANCE = 1.5
# Training samples added to the test set for the check (more samples, steadier shares).
TRAIN_SAMPLES = 2000


@dataclass(frozen=True)
class LabelCheck:
    """How a model's predictions line up with the data's labels.

    Args:
        accuracy: top-1 accuracy with the labels as they are.
        mapped_accuracy: top-1 accuracy with each class mapped to its most predicted output.
        mapping: for each class of the data (its order), (its matched output, the share of its
            samples predicted as that output); output -1 for a class without samples.
        permuted: the labels look like a permutation of the model's classes (compare_labels).
        samples: how many samples were compared.
    """

    accuracy: float
    mapped_accuracy: float
    mapping: tuple[tuple[int, float], ...]
    permuted: bool
    samples: int


def compare_labels(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> LabelCheck:
    """Compare predicted classes with labels (both int arrays of the same length).

    Each class of the data is matched to one output, a different one for each class: the
    largest counts of the confusion matrix first (a weak class whose samples often go to a
    strong class's output then keeps its own). The labels look permuted when that matching is
    not the identity, the classes it moves are mostly predicted as their matched outputs, and
    it scores MIN_GAIN more than the labels as they are.
    """
    predicted, labels = np.asarray(predicted, np.int64), np.asarray(labels, np.int64)
    outputs = max(num_classes, int(predicted.max(initial=0)) + 1)
    confusion = np.zeros((num_classes, outputs), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    counts = confusion.sum(axis=1)
    match = np.full(num_classes, -1)
    taken: set[int] = set()
    for flat in np.argsort(-confusion, axis=None, kind="stable"):
        row, col = divmod(int(flat), outputs)
        if confusion[row, col] == 0:
            break
        if match[row] < 0 and col not in taken:
            match[row] = col
            taken.add(col)
    n = max(int(counts.sum()), 1)
    matched = np.asarray(
        [confusion[i, match[i]] if match[i] >= 0 else 0 for i in range(num_classes)]
    )
    accuracy = float(np.trace(confusion[:, :num_classes]) / n)
    mapped = float(matched.sum() / n)
    moved = [i for i in range(num_classes) if match[i] >= 0 and match[i] != i]
    moved_share = matched[moved].sum() / max(int(counts[moved].sum()), 1) if moved else 0.0
    permuted = bool(moved) and moved_share >= MOSTLY and mapped >= accuracy + MIN_GAIN
    share = matched / np.maximum(counts, 1)
    return LabelCheck(
        accuracy=accuracy,
        mapped_accuracy=mapped,
        mapping=tuple((int(match[i]), float(share[i])) for i in range(num_classes)),
        permuted=permuted,
        samples=int(counts.sum()),
    )


def check_label_order(model: Any, data: Dataset, say: Progress) -> LabelCheck:
    """Refuse data whose labels are a permutation of the model's classes; warn (through `say`)
    when the model scores near chance on the test data.

    Raises:
        DataError: the labels look permuted; one line naming the mapping and the fix.
    """
    from edgekit.workstation.train.model import predict_classes

    n_train = min(len(data.x_train), TRAIN_SAMPLES)
    x_train = np.asarray(data.x_train[:n_train]) if n_train else data.x_test[:0]
    predicted = [predict_classes(model, data.x_test), predict_classes(model, x_train)]
    check = compare_labels(
        np.concatenate(predicted),
        np.concatenate([data.y_test, data.y_train[:n_train]]),
        data.num_classes,
    )
    if check.permuted:
        raise DataError(_permuted_message(check, data))
    test = compare_labels(predicted[0], data.y_test, data.num_classes)
    chance = 1.0 / data.num_classes
    if test.accuracy < NEAR_CHANCE * chance:
        say(
            f"  warning: the model scores {test.accuracy:.1%} on the {len(data.y_test)} test "
            f"samples, near chance ({chance:.1%} for {data.num_classes} classes): check that "
            "the data is what it was trained on, its class order (--class-names) and its pixel "
            "scale (--pixel-scale)"
        )
    return check


def _permuted_message(check: LabelCheck, data: Dataset) -> str:
    kind = "folder" if Path(data.source).is_dir() else "class"
    moved = [
        f"{data.labels[i]!r} -> output {out} ({share:.0%})"
        for i, (out, share) in enumerate(check.mapping)
        if out not in (i, -1)
    ]
    names = _names_in_output_order(check, data)
    if names is not None and not any("," in n for n in names):
        fix = f"--class-names {shlex.quote(','.join(names))} (or --labels-file FILE)"
    else:
        fix = "--labels-file FILE, one name per line"
    return (
        f"the data's labels do not match the model's outputs: its predictions on "
        f"{check.samples} samples are a permutation of them ({kind} {', '.join(moved)}; "
        f"accuracy {check.accuracy:.1%} as labelled, {check.mapped_accuracy:.1%} in the "
        f"model's order): name the classes in the model's output order and the labels are "
        f"renumbered: {fix}"
    )


def _names_in_output_order(check: LabelCheck, data: Dataset) -> list[str] | None:
    """The data's class names in the model's output order, if the mapping names every output."""
    names = {out: data.labels[i] for i, (out, _) in enumerate(check.mapping) if out >= 0}
    if sorted(names) != list(range(data.num_classes)):
        return None  # a class without samples, or the model has more outputs than classes
    return [names[k] for k in range(data.num_classes)]

"""How good the probabilities of a file are: accuracy, calibration and risk-coverage.

For an MC-dropout file (its `mc_mean`) next to the deterministic file it came from, on labeled
test data: accuracy of the mean, expected calibration error (equal-width confidence bins),
negative log-likelihood, and the accuracy on the most certain 50/80/90/100% of the samples.
Certainty is the top mean probability by default, or low predictive entropy. NumPy only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from edgekit.core.errors import EdgekitError
from edgekit.device.mc import predictive_entropy

if TYPE_CHECKING:
    from edgekit.device.bench.records import BenchRow

DEFAULT_ECE_BINS = 15
DEFAULT_COVERAGES = (0.5, 0.8, 0.9, 1.0)
CERTAINTY_CHOICES = ("max_prob", "entropy")
# Probabilities are clipped to this before the log of NLL: a quantized (int8) output of exactly 0
# for the true class would otherwise count as infinitely wrong.
NLL_MIN_PROB = 1e-7


def _check(probs: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise EdgekitError(
            f"probabilities must be shaped (samples, classes) with >= 1 sample and >= 2 "
            f"classes, got shape {p.shape}: pass the files' mean class probabilities"
        )
    if y.ndim != 1 or len(y) != len(p):
        raise EdgekitError(
            f"labels must be one class index per sample ({len(p)}), got shape {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]:
        raise EdgekitError(
            f"labels must be integers in 0..{p.shape[1] - 1}, got {y.dtype} values "
            f"{y.min()}..{y.max()}"
        )
    if not np.isfinite(p).all() or p.min() < 0:
        raise EdgekitError("probabilities must be finite and >= 0: pass softmax outputs")
    return p, y.astype(np.int64)


def accuracy(probs: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Top-1 accuracy of the class probabilities (ties: the lowest class index)."""
    p, y = _check(probs, labels)
    return float((p.argmax(axis=1) == y).mean())


def expected_calibration_error(
    probs: npt.ArrayLike, labels: npt.ArrayLike, bins: int = DEFAULT_ECE_BINS
) -> float:
    """ECE: sum over equal-width confidence bins of (bin share) * |bin accuracy - bin confidence|.

    Confidence is the top probability; bin i holds confidences in (i/bins, (i+1)/bins], the
    first bin also 0. Empty bins count nothing.

    Raises:
        EdgekitError: bins < 1, or probabilities and labels that do not fit.
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise EdgekitError(f"ECE needs >= 1 bins, got {bins!r}")
    p, y = _check(probs, labels)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def negative_log_likelihood(
    probs: npt.ArrayLike, labels: npt.ArrayLike, min_prob: float = NLL_MIN_PROB
) -> float:
    """Mean -log p(true class), p clipped to >= `min_prob` (nats per sample)."""
    if not 0.0 < min_prob < 1.0:
        raise EdgekitError(f"min_prob must be in (0, 1), got {min_prob!r}")
    p, y = _check(probs, labels)
    true = np.clip(p[np.arange(len(y)), y], min_prob, None)
    return float(-np.log(true).mean())


@dataclass(frozen=True)
class CoverageRow:
    """Accuracy on the `samples` most certain samples, `coverage` of the whole set."""

    coverage: float
    samples: int
    accuracy: float

    def to_dict(self) -> dict[str, Any]:
        return {"coverage": self.coverage, "samples": self.samples, "accuracy": self.accuracy}


def certainty_scores(probs: npt.ArrayLike, certainty: str = "max_prob") -> np.ndarray:
    """Higher = more certain: the top probability, or minus the predictive entropy."""
    if certainty not in CERTAINTY_CHOICES:
        raise EdgekitError(
            f"certainty must be one of {', '.join(CERTAINTY_CHOICES)}, got {certainty!r}"
        )
    p = np.asarray(probs, dtype=np.float64)
    return p.max(axis=1) if certainty == "max_prob" else -predictive_entropy(p).astype(np.float64)


def risk_coverage(
    probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    coverages: Sequence[float] = DEFAULT_COVERAGES,
    certainty: str = "max_prob",
) -> tuple[CoverageRow, ...]:
    """Accuracy on the most certain fraction of samples, one row per coverage.

    Samples are ranked by `certainty_scores` (ties keep data order); coverage c keeps the
    round(c * n) most certain samples (at least one).

    Raises:
        EdgekitError: a coverage outside (0, 1], an unknown certainty, or bad probabilities.
    """
    bad = [c for c in coverages if not 0.0 < float(c) <= 1.0]
    if bad or not len(coverages):
        raise EdgekitError(f"coverages must be in (0, 1], got {list(coverages)}")
    p, y = _check(probs, labels)
    order = np.argsort(-certainty_scores(p, certainty), kind="stable")
    correct = (p.argmax(axis=1) == y)[order]
    rows = []
    for c in coverages:
        k = max(1, int(round(float(c) * len(y))))
        rows.append(CoverageRow(float(c), k, float(correct[:k].mean())))
    return tuple(rows)


@dataclass(frozen=True)
class UncertaintyMetrics:
    """Accuracy, calibration and risk-coverage of one file's probabilities."""

    samples: int
    accuracy: float
    ece: float
    nll: float
    certainty: str
    risk_coverage: tuple[CoverageRow, ...]
    ece_bins: int = DEFAULT_ECE_BINS

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "accuracy": self.accuracy,
            "ece": self.ece,
            "ece_bins": self.ece_bins,
            "nll": self.nll,
            "certainty": self.certainty,
            "risk_coverage": [r.to_dict() for r in self.risk_coverage],
        }


def uncertainty_metrics(
    probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    bins: int = DEFAULT_ECE_BINS,
    coverages: Sequence[float] = DEFAULT_COVERAGES,
    certainty: str = "max_prob",
) -> UncertaintyMetrics:
    """Accuracy, ECE, NLL and the risk-coverage table of class probabilities on labels."""
    return UncertaintyMetrics(
        samples=len(_check(probs, labels)[1]),
        accuracy=accuracy(probs, labels),
        ece=expected_calibration_error(probs, labels, bins),
        nll=negative_log_likelihood(probs, labels),
        certainty=certainty,
        risk_coverage=risk_coverage(probs, labels, coverages, certainty),
        ece_bins=bins,
    )


@dataclass(frozen=True)
class UncertaintyComparison:
    """An MC-dropout file next to the deterministic file, on the same labeled samples."""

    mc: UncertaintyMetrics
    deterministic: UncertaintyMetrics

    @property
    def ece_lower(self) -> bool:
        return self.mc.ece < self.deterministic.ece

    @property
    def nll_lower(self) -> bool:
        return self.mc.nll < self.deterministic.nll

    def to_dict(self) -> dict[str, Any]:
        return {
            "mc": self.mc.to_dict(),
            "deterministic": self.deterministic.to_dict(),
            "accuracy_delta": self.mc.accuracy - self.deterministic.accuracy,
            "ece_delta": self.mc.ece - self.deterministic.ece,
            "nll_delta": self.mc.nll - self.deterministic.nll,
        }


def compare_uncertainty(
    mc_probs: npt.ArrayLike,
    deterministic_probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    bins: int = DEFAULT_ECE_BINS,
    coverages: Sequence[float] = DEFAULT_COVERAGES,
    certainty: str = "max_prob",
) -> UncertaintyComparison:
    """`uncertainty_metrics` of the MC file's mean probabilities and of the deterministic file's.

    Raises:
        EdgekitError: the two sets of probabilities differ in shape, or do not fit the labels.
    """
    a, b = np.asarray(mc_probs), np.asarray(deterministic_probs)
    if a.shape != b.shape:
        raise EdgekitError(
            f"MC probabilities {a.shape} and deterministic probabilities {b.shape} differ: "
            "evaluate both files on the same samples"
        )
    return UncertaintyComparison(
        mc=uncertainty_metrics(a, labels, bins, coverages, certainty),
        deterministic=uncertainty_metrics(b, labels, bins, coverages, certainty),
    )


_MC_NAME = re.compile(r"^(?P<stem>.+)_mc(?P<n>\d+)_(?P<precision>[a-z0-9_]+)\.tflite$")


def annotate_uncertainty(
    rows: Sequence[BenchRow], outputs: dict[str, np.ndarray], labels: npt.ArrayLike | None
) -> None:
    """Set `row.uncertainty` of every MC-dropout row (`<stem>_mcN_<precision>.tflite`): its
    mean's accuracy, ECE, NLL and risk-coverage next to the deterministic file of the same
    model and precision (`<stem>_<precision>.tflite`, same folder and thread count)."""
    if labels is None:
        return
    by_key = {(Path(r.path).parent, r.file, r.threads): r for r in rows if r.ok}
    for row in rows:
        m = _MC_NAME.match(row.file)
        if m is None or not row.ok or row.id not in outputs:
            continue
        det_file = f"{m['stem']}_{m['precision']}.tflite"
        det = by_key.get((Path(row.path).parent, det_file, row.threads))
        if det is None or det.id not in outputs:
            continue
        try:
            cmp = compare_uncertainty(outputs[row.id], outputs[det.id], labels)
        except EdgekitError:
            continue
        row.uncertainty = {
            "mc_samples": int(m["n"]),
            "deterministic_file": det_file,
            **cmp.to_dict(),
        }

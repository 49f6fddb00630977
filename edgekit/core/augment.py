"""Data augmentation specs: `--augment flip,translate:0.1,rotate:0.05,zoom:0.1` as a tuple of
normalized items ("flip:horizontal", "translate:0.1", ...). No TensorFlow here.

An item is `KIND` or `KIND:VALUE`; a kind without a value takes its default. What each kind
does in training (tf_keras preprocessing layers in the input pipeline, never in the model) is
edgekit.workstation.train.augment's business.

Example:
    >>> parse_augment("flip, translate:0.1,rotate")
    ('flip:horizontal', 'translate:0.1', 'rotate:0.05')
    >>> parse_augment("none")
    ()
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edgekit.core.errors import EdgekitError


@dataclass(frozen=True)
class AugmentKind:
    """One kind of augmentation: its default value and the range a value must lie in."""

    default: str
    words: tuple[str, ...] = ()  # the values a word-valued kind takes (flip)
    low: float = 0.0  # a numeric value must be > low ...
    high: float = 1.0  # ... and <= high
    meaning: str = ""


AUGMENT_KINDS: dict[str, AugmentKind] = {
    "flip": AugmentKind("horizontal", ("horizontal", "vertical", "both"), meaning="mirror"),
    "translate": AugmentKind("0.1", meaning="shift by up to this fraction of height and width"),
    "rotate": AugmentKind("0.05", high=0.5, meaning="rotate by up to this fraction of a turn"),
    "zoom": AugmentKind("0.1", meaning="zoom in or out by up to this fraction"),
    "contrast": AugmentKind("0.1", meaning="scale contrast by 1 +- this factor"),
    "noise": AugmentKind("0.05", high=float("inf"), meaning="add Gaussian noise of this std"),
}

# Words that mean no augmentation (a grid's "none" is the option's default, which is this).
_OFF = ("", "none", "off", "false", "no")

ACCEPTED_FORMS = (
    "flip[:horizontal|vertical|both], translate[:F], rotate[:F], zoom[:F], contrast[:F], "
    "noise[:STD] (F a fraction in (0, 1], rotate's <= 0.5), comma-separated, or none"
)


def parse_augment(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """The normalized augmentation items of `value`: "flip,translate:0.1" or a sequence of items.

    Raises:
        EdgekitError: an unknown kind, a bad value, or a kind given twice (one line, naming
            the item and the accepted forms).
    """
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    items = [item.strip().lower() for item in items]
    if all(item in _OFF for item in items):
        return ()
    out: dict[str, str] = {}
    given: dict[str, str] = {}
    for item in items:
        if item in _OFF:
            raise EdgekitError(
                f"--augment item {item or '(empty)'!r} cannot be mixed with others: expected "
                f"{ACCEPTED_FORMS}"
            )
        kind, value_text = _item(item)
        if kind in out:
            raise EdgekitError(
                f"--augment gives {kind} twice ({given[kind]!r} and {item!r}): pass it once; "
                f"expected {ACCEPTED_FORMS}"
            )
        out[kind], given[kind] = f"{kind}:{value_text}", item
    return tuple(out.values())


def _item(item: str) -> tuple[str, str]:
    """(kind, normalized value) of one item, or a one-line error naming it."""
    kind, colon, raw = item.partition(":")
    kind, raw = kind.strip(), raw.strip()
    spec = AUGMENT_KINDS.get(kind)
    if spec is None or (colon and not raw):
        raise EdgekitError(f"--augment item {item!r} is not known: expected {ACCEPTED_FORMS}")
    if not colon:
        return kind, spec.default
    if spec.words:
        if raw not in spec.words:
            raise EdgekitError(
                f"--augment item {item!r}: {kind} takes {' or '.join(spec.words)}; expected "
                f"{ACCEPTED_FORMS}"
            )
        return kind, raw
    try:
        number = float(raw)
    except ValueError:
        number = float("nan")
    if not spec.low < number <= spec.high:  # also false for nan
        upper = "" if spec.high == float("inf") else f" and <= {spec.high:g}"
        raise EdgekitError(
            f"--augment item {item!r}: the {kind} value must be a number > {spec.low:g}{upper} "
            f"({spec.meaning}); expected {ACCEPTED_FORMS}"
        )
    return kind, f"{number:g}"


def augment_value(item: str) -> str:
    """The value of a normalized item: 'translate:0.1' -> '0.1'."""
    return item.partition(":")[2]


def augment_kind(item: str) -> str:
    """The kind of a normalized item: 'translate:0.1' -> 'translate'."""
    return item.partition(":")[0]

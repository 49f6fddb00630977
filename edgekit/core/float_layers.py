"""The `--float-layers` spec: layers kept float in an int8 file ("NAME,NAME" or "auto:K").

TF-free, so the CLI can check a spec before TensorFlow is imported.
"""

from __future__ import annotations

from edgekit.core.errors import EdgekitError

_AUTO = "auto:"


def parse_float_layers(spec: str, option: str = "--float-layers") -> tuple[list[str], int | None]:
    """Parse "NAME,NAME" (node or Keras layer names) or "auto:K" (the K worst nodes).

    Returns:
        (names, None) for a list of names (duplicates dropped, order kept), ([], K) for auto:K.

    Raises:
        EdgekitError: an empty spec, an empty name, or K that is not an integer >= 1.
    """
    text = str(spec).strip()
    if not text:
        raise EdgekitError(
            f"{option} is empty: pass layer names separated by commas (e.g. dense_1,dense_2) "
            "or auto:K (e.g. auto:3)"
        )
    if text.lower().startswith(_AUTO):
        k_text = text[len(_AUTO) :].strip()
        k = int(k_text) if k_text.isdigit() else 0  # isdigit: no sign, no decimal point
        if k < 1:
            raise EdgekitError(
                f"{option} {text}: K must be an integer >= 1, got {k_text!r}; "
                "e.g. auto:3 keeps the 3 worst layers float"
            )
        return [], k
    names = [n.strip() for n in text.split(",")]
    if any(not n for n in names):
        raise EdgekitError(
            f"{option} {text!r} holds an empty name: pass names separated by single commas, "
            "e.g. dense_1,dense_2"
        )
    return list(dict.fromkeys(names)), None

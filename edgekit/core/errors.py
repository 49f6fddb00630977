"""User-facing errors. Each message says what was received, what was expected, and how to fix it."""

from __future__ import annotations


class EdgekitError(ValueError):
    """Base class of every error edgekit raises for a user mistake or a failed check."""


class DataError(EdgekitError):
    """The data could not be found, read, or does not fit the model."""


class ModelError(EdgekitError):
    """A Keras model could not be loaded or is not one edgekit can process."""


class ExportError(EdgekitError):
    """Conversion to TensorFlow Lite failed."""


class VerificationError(ExportError):
    """An exported file failed a check (load, run, accuracy agreement)."""


class ModelFileError(EdgekitError):
    """A .tflite file is missing, damaged or cannot be loaded by the runtime."""


class ManifestError(EdgekitError):
    """A manifest.json does not match the files next to it."""


class RuntimeMissingError(EdgekitError):
    """No TFLite runtime can be imported (a missing install, never a damaged file)."""


def first_line(error: object) -> str:
    """The first non-empty line of an exception's message (its type name when it has none),
    for a one-line message that names what a library refused."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class DeviceError(EdgekitError):
    """A board could not be reached, set up or used over SSH, or a devices file is wrong."""

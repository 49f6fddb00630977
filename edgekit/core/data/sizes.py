"""Sample counts that fit the data: the validation split and int8 calibration set, unless given.

A fixed validation split of 5,000 suits Fashion-MNIST's 60,000 training images and refuses a
user's 3,000-image folder. So, unless the user gives a count, the validation split is a
fraction of the training samples (at most `MAX_VALIDATION_SIZE`), calibration uses up to
`MAX_CALIBRATION_SAMPLES` of the training samples that remain, and verification uses the whole
test set. Fashion-MNIST's defaults stay what they were (5,000 validation, 500 calibration, all
10,000 test samples), and so do its files. An explicit count that cannot fit is an error
(validation) or said (calibration), as before.
"""

from __future__ import annotations

import dataclasses

from edgekit.core.config import PipelineConfig

VALIDATION_FRACTION = 0.1
MAX_VALIDATION_SIZE = 5000
MAX_CALIBRATION_SAMPLES = 500


def default_validation_size(available: int) -> int:
    """The validation split of `available` training samples: 10%, at least 1, at most 5,000."""
    return max(1, min(MAX_VALIDATION_SIZE, round(VALIDATION_FRACTION * available)))


def default_calibration_samples(available: int) -> int:
    """int8 calibration samples drawn from `available` training samples: all, up to 500."""
    return max(1, min(MAX_CALIBRATION_SAMPLES, available))


def resolve_sample_counts(
    config: PipelineConfig, train: int, validation: int, test: int
) -> tuple[PipelineConfig, str]:
    """`config` with the counts it left to the data filled in, and one line saying what was
    chosen (for the progress output). `train`, `validation`, `test`: the samples loaded."""
    data, export = config.data, config.export
    parts = [
        f"validation {validation} of {train + validation} training samples "
        + (
            "(given)"
            if data.validation_size is not None
            else f"({VALIDATION_FRACTION:.0%}, at most {MAX_VALIDATION_SIZE})"
        )
    ]
    if data.validation_size is None:
        data = dataclasses.replace(data, validation_size=validation)
    if export.calibration_samples is None:
        export = dataclasses.replace(export, calibration_samples=default_calibration_samples(train))
        parts.append(
            f"int8 calibration {export.calibration_samples} (all, at most "
            f"{MAX_CALIBRATION_SAMPLES})"
        )
    else:
        parts.append(f"int8 calibration {export.calibration_samples} (given)")
    if export.verify_samples is None:
        parts.append(f"verification on all {test} test samples")
    else:
        parts.append(f"verification on {min(export.verify_samples, test)} test samples (given)")
    line = "sample counts: " + ", ".join(parts)
    return dataclasses.replace(config, data=data, export=export), line

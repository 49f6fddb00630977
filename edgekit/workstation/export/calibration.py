"""Which training samples calibrate a quantized file: one seeded draw, shared by the TFLite
converter (`edgekit.workstation.export.converter`) and ai-edge-quantizer
(`edgekit.workstation.export.aeq`).

Never imports TensorFlow.
"""

from __future__ import annotations

import numpy as np

from edgekit.core.errors import ExportError

# Calibration draws use seed + this offset, so they are not the draws that shuffled the data.
_CALIBRATION_SEED_OFFSET = 1


def calibration_indices(available: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of `min(n, available)` distinct samples drawn with `seed`.

    Raises:
        ExportError: there are no samples to draw from.
    """
    if available == 0:
        raise ExportError(
            "int8 calibration needs training samples, got 0: pass data with a training set"
        )
    rng = np.random.default_rng(seed + _CALIBRATION_SEED_OFFSET)
    return np.sort(rng.choice(available, size=min(n, available), replace=False))

"""edgekit: Keras classifier -> small, fast, verified TensorFlow Lite files for edge CPUs.

The package is built in layers, each importing only those below it (checked by import-linter):

- `edgekit.cli`: the click commands and their printed reports;
- `edgekit.sweep`: grids of pipeline runs on local processes or Ray;
- `edgekit.workstation`: the TensorFlow side (train, prune, fold, export, the pipeline);
- `edgekit.device`: numpy and a TFLite runtime only (runtime, verify, bench);
- `edgekit.core`: configs, errors, presets, data readers, atomic files and the folder lock.

Importing this package does not import TensorFlow; neither do `core` and `device`.
"""

from edgekit.core.errors import EdgekitError

__version__ = "0.2.0"
__all__ = ["EdgekitError", "__version__"]

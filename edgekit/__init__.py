"""edgekit: Keras classifier -> small, fast, verified TensorFlow Lite files for edge CPUs.

Importing this package does not import TensorFlow. The device side (`edgekit.device`,
`edgekit.bench`, `edgekit.report`, `edgekit.data`) never does; the workstation side
(`edgekit.train`, `edgekit.optimize`, `edgekit.export`, `edgekit.pipeline`) does, through
`edgekit._keras` only.
"""

from edgekit.errors import EdgekitError

__version__ = "0.1.0"
__all__ = ["EdgekitError", "__version__"]

"""edgekit: Keras classifier -> small, fast, verified TensorFlow Lite files for edge CPUs.

Importing this package does not import TensorFlow; the training side lives in
`edgekit.train`, `edgekit.prune`, `edgekit.fold`, `edgekit.export` and `edgekit.pipeline`.
"""

from edgekit.errors import EdgekitError

__version__ = "0.1.0"
__all__ = ["EdgekitError", "__version__"]

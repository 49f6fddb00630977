"""The .keras baseline row of `edgekit bench`: a Keras model timed in the bench worker's child.

Registered in `edgekit.device.worker.MODEL_KINDS` as "keras"; the worker imports this module by
that name only when a request asks for a .keras file, so the device side holds no import of the
workstation side. TensorFlow is imported inside the methods, in the child process only.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from edgekit.device.worker import input_sample

if TYPE_CHECKING:
    import numpy as np


class KerasModel:
    """A .keras model called at batch 1 through a tf.function (TensorFlow in this child only),
    loaded by export's safe loader; a Keras 3 model is timed as it is (not its rebuild)."""

    @staticmethod
    def prepare(request: dict[str, Any]) -> None:
        from edgekit.core.errors import EdgekitError, ModelError

        try:
            import edgekit.workstation._keras  # noqa: F401  (TensorFlow's own memory is not the model's)
        except (ImportError, EdgekitError) as e:  # _keras says which import failed
            why = str(e.__cause__ or e.__context__ or e)
            raise ModelError(
                f"a .keras baseline needs TensorFlow and tf_keras, which cannot be imported "
                f"here ({why}): `pip install 'edgekit[train]'`, or bench the .tflite files only"
            ) from None

    def __init__(self, request: dict[str, Any]) -> None:
        from edgekit.core.model_path import keras_major_version
        from edgekit.workstation._keras import tf
        from edgekit.workstation.export.model_io import load_keras3_file, load_keras_model

        self.threads, self.path, self.tf = int(request.get("threads", 1)), str(request["path"]), tf
        tf.config.threading.set_intra_op_parallelism_threads(self.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        t0 = time.perf_counter_ns()
        # The loaders export uses: safe mode on, custom classes and foreign modules refused.
        k3 = keras_major_version(self.path) == 3
        self.keras = "Keras 3" if k3 else "tf_keras"
        load = load_keras3_file if k3 else load_keras_model
        self.model = load(self.path, unsafe=bool(request.get("unsafe", False)))
        shape = tuple(int(d or 1) for d in self.model.input_shape[1:])
        self.fn = tf.function(
            lambda t: self.model(t, training=False),
            input_signature=[tf.TensorSpec([None, *shape], tf.float32)],
        )
        self.fn.get_concrete_function()
        self.load_ns = time.perf_counter_ns() - t0
        self.shape = shape
        self.x = tf.constant(input_sample(request.get("input"), (1, *shape)))
        self.last: Any = None

    def invoke(self) -> None:
        self.last = self.fn(self.x)

    def info(self) -> dict[str, Any]:
        return {
            "runtime": {"name": self.keras, "version": f"tensorflow {self.tf.__version__}"},
            "inputs": [{"name": "input", "shape": [1, *self.shape], "dtype": "float32"}],
            "outputs": [{"name": "output", "shape": list(self.last.shape), "dtype": "float32"}],
        }

    def outputs_finite(self) -> bool:
        import numpy as np

        return bool(np.isfinite(self.last.numpy()).all())

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        import numpy as np

        from edgekit.device.runtime import EVAL_BATCH_SIZE

        outs = [
            self.fn(self.tf.constant(np.asarray(x[s : s + EVAL_BATCH_SIZE], np.float32))).numpy()
            for s in range(0, len(x), EVAL_BATCH_SIZE)
        ]
        outputs = np.concatenate(outs).reshape(len(x), -1).astype(np.float32)
        acc = float((outputs.argmax(1) == np.asarray(y)).mean()) if len(y) else float("nan")
        return acc, outputs

    def input_shape(self) -> tuple[int, ...]:
        return self.shape

    def settings(self) -> dict[str, Any]:
        return {"threads": self.threads, "xnnpack": None}

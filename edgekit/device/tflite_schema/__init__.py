"""The TensorFlow Lite flatbuffer schemas, carried by edgekit so any runtime (or none) will do.

`schema_py_generated.py` is the file `flatc --python` generates from LiteRT's `schema.fbs`,
copied unchanged from ai-edge-litert 2.3.0 (Apache License 2.0, see LICENSE in this folder;
Copyright The TensorFlow Authors / Google LLC). tflite-runtime's wheels do not ship it, so
reading files through the runtime's copy failed on devices that carry tflite-runtime.

`metadata_schema_py_generated.py` is the file `flatc --python` generates from TFLite Model
Metadata's `metadata_schema.fbs` (schema 1.5.0, file identifier "M001"), copied unchanged from
the tflite-support 0.4.4 wheel (Apache License 2.0, see LICENSE-tflite-support; Copyright The
TensorFlow Authors). tflite-support itself does not install beside TensorFlow 2.21 (it pins
protobuf<4), so edgekit writes and reads the metadata with this module alone.

Both need only the `flatbuffers` package (and numpy for the *AsNumpy accessors).
"""

from edgekit.device.tflite_schema import metadata_schema_py_generated as metadata_schema
from edgekit.device.tflite_schema import schema_py_generated as schema

SCHEMA_SOURCE = "ai-edge-litert 2.3.0 schema_py_generated.py"
METADATA_SCHEMA_SOURCE = "tflite-support 0.4.4 metadata_schema_py_generated.py"

__all__ = ["METADATA_SCHEMA_SOURCE", "SCHEMA_SOURCE", "metadata_schema", "schema"]

"""The TensorFlow Lite flatbuffer schema, carried by edgekit so any runtime (or none) will do.

`schema_py_generated.py` is the file `flatc --python` generates from LiteRT's `schema.fbs`,
copied unchanged from ai-edge-litert 2.3.0 (Apache License 2.0, see LICENSE in this folder;
Copyright The TensorFlow Authors / Google LLC). tflite-runtime's wheels do not ship it, so
reading files through the runtime's copy failed on devices that carry tflite-runtime.
It needs only the `flatbuffers` package (and numpy for the *AsNumpy accessors).
"""

from edgekit.device.tflite_schema import schema_py_generated as schema

SCHEMA_SOURCE = "ai-edge-litert 2.3.0 schema_py_generated.py"

__all__ = ["SCHEMA_SOURCE", "schema"]

"""The device side: what runs on a phone, a Raspberry Pi or a board with only a TFLite runtime.

numpy, click, rich, flatbuffers and a runtime (ai-edge-litert, or tflite-runtime on 32-bit
ARM): never TensorFlow. `runtime` loads and runs files, `modelfile` reads a .tflite with the
schema edgekit carries (`tflite_schema`), `manifest` is the typed record of an export,
`verify` checks a copied folder against it, and `worker` is the child process in which
`verify` and `bench` load each model, so a file that crashes the runtime costs one row.
"""

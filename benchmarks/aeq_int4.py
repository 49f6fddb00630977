"""int4 and mixed int4/int8 files (ai-edge-quantizer) next to edgekit's float32 and int8 files.

    python benchmarks/aeq_int4.py [--int4-layers dense1]   # -> results/aeq_int4.json

Runs the default pipeline (MLP, full Fashion-MNIST) in a temporary folder, then quantizes its
float32 file with `edgekit.workstation.export.aeq`: int4 dynamic, int4 weight-only and mixed (int4
in the
layers `--int4-layers` names, static int8 elsewhere). For every file: bytes, gzip -9 bytes,
weight sparsity and dtypes, accuracy on the whole test set, which ops XNNPACK takes (LiteRT's
default delegate) and which run on the built-in kernels, and p50 latency at batch 1, 1 thread,
with XNNPACK and without (reference kernels).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"


def p50_us(interpreter: Any, x: np.ndarray, seconds: float) -> float:
    """p50 of invoke() at batch 1 on the first sample of x (contention.py's timing loop)."""
    from contention import p50_us as timed_p50  # benchmarks/ is sys.path[0]

    from edgekit.device.runtime import input_details, quantize

    inp = input_details(interpreter)[0]
    interpreter.set_tensor(inp.index, quantize(x[:1], inp))
    return timed_p50(interpreter, seconds)


def undelegated_ops(interpreter: Any) -> list[str]:
    """Ops of the execution plan no delegate took (they run on the built-in kernels).

    A DELEGATE node replaces the ops between its input and output tensors: walk back from its
    outputs through the ops producing them until its inputs.
    """
    ops = interpreter._get_ops_details()
    originals = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {int(t): op["index"] for op in originals for t in op["outputs"]}
    covered: set[int] = set()
    for node in (op for op in ops if op["op_name"] == "DELEGATE"):
        stop = {int(t) for t in node["inputs"]}
        todo = [int(t) for t in node["outputs"]]
        while todo:
            tensor = todo.pop()
            if tensor in stop or tensor not in producer or producer[tensor] in covered:
                continue
            covered.add(producer[tensor])
            todo += [int(t) for t in ops[producer[tensor]]["inputs"] if t >= 0]
    return [op["op_name"] for op in originals if op["index"] not in covered]


def measure(data: bytes, x: np.ndarray, y: np.ndarray, seconds: float) -> dict[str, Any]:
    from edgekit.device.modelfile import parse_model_bytes
    from edgekit.device.runtime import evaluate, load_interpreter

    info = parse_model_bytes(data)
    xnnpack = load_interpreter(data, num_threads=1)
    reference = load_interpreter(data, num_threads=1, xnnpack=False)
    return {
        "bytes": info.bytes,
        "gzip_bytes": info.gzip_bytes,
        "weight_sparsity": round(info.weight_sparsity, 4),
        "weights": {"x".join(map(str, w.shape)): w.dtype for w in info.weights},
        "operators": info.operators,
        "accuracy": evaluate(data, x, y).accuracy,
        "not_delegated_to_xnnpack": undelegated_ops(xnnpack),
        "p50_us_xnnpack": round(p50_us(xnnpack, x, seconds), 2),
        "p50_us_reference": round(p50_us(reference, x, seconds), 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--int4-layers", default="dense1", help="regex of the mixed file's int4 layers")
    ap.add_argument("--seconds", type=float, default=2.0, help="timing per file and kernel set")
    ap.add_argument("--out", type=Path, default=RESULTS / "aeq_int4.json")
    args = ap.parse_args()

    from edgekit.core.config import PipelineConfig
    from edgekit.core.io.files import write_json_atomic
    from edgekit.device.bench import machine_info
    from edgekit.workstation.export.aeq import quantize_int4, quantize_mixed
    from edgekit.workstation.pipeline import run_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        result = run_pipeline(PipelineConfig(output_dir=tmp))
        folder = Path(result.export.output_dir)
        f32 = next(folder.glob("*_float32.tflite")).read_bytes()
        int8 = next(folder.glob("*_int8.tflite")).read_bytes()
    data = result.dataset
    files: dict[str, bytes] = {"float32": f32, "int8 (edgekit)": int8}
    timings: dict[str, float] = {}
    for name, make in (
        ("int4 dynamic", lambda: quantize_int4(f32)),
        ("int4 weight-only", lambda: quantize_int4(f32, mode="weight_only")),
        (
            f"mixed ({args.int4_layers} int4)",
            lambda: quantize_mixed(f32, args.int4_layers, data.x_train),
        ),
    ):
        t0 = time.perf_counter()
        files[name] = make()
        timings[name] = round(time.perf_counter() - t0, 3)
    rows = {}
    for name, blob in files.items():
        rows[name] = measure(blob, data.x_test, data.y_test, args.seconds)
        if name in timings:
            rows[name]["quantize_s"] = timings[name]
        r = rows[name]
        print(
            f"{name:24s} {r['bytes']:>9,} B {r['gzip_bytes']:>8,} gz  acc {r['accuracy']:.4f}  "
            f"p50 {r['p50_us_xnnpack']:.2f}/{r['p50_us_reference']:.2f} us  "
            f"not on XNNPACK: {r['not_delegated_to_xnnpack']}",
            file=sys.stderr,
        )
    from importlib.metadata import version

    versions = {d: version(d) for d in ("ai-edge-litert", "ai-edge-quantizer")}
    write_json_atomic(
        args.out,
        {
            "machine": machine_info(),
            "versions": versions,
            "test_samples": len(data.y_test),
            "int4_layers": args.int4_layers,
            "files": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

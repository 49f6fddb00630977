#!/usr/bin/env python3
"""Raw outputs of every .tflite file of an export, dumped on one machine and compared with another.

    python device_outputs.py dump EXPORT_DIR TEST.npz OUT.npz [--runtime litert] [--no-xnnpack]
    python device_outputs.py compare HOST.npz DEVICE.npz [--int8-atol 0] [--json OUT.json]
    python device_outputs.py output0 EXPORT_DIR TEST.npz [--runtime litert] [--json OUT.json]

`dump` runs every *.tflite file of EXPORT_DIR at batch 1 on the images `x_test` of TEST.npz
(uint8, turned into the files' input by edgekit's `preprocess` with the `input` record of
EXPORT_DIR/manifest.json, or scaled to [0, 1] when the manifest has none) and stores each
file's RAW output tensor: int8 as the runtime returns it (not dequantized), float as float.
It imports numpy and edgekit's device-side runtime only, never TensorFlow, so it runs on a
board that has only a TFLite runtime. --no-xnnpack uses the runtime's builtin kernels only.

`compare` checks, per file: the same files and shapes, top-1 agreement 100%, int8 (any integer)
outputs bit-exact (or within --int8-atol steps), float outputs within rtol 1e-4 / atol 1e-6.
One line per file, with the number of int8 values that differ; exit status 1 on any failure.
Measured with LiteRT 2.3.0: the int8 SOFTMAX output rounds exact .5 ties differently on aarch64
and x86 (identical logits), and XNNPACK's int8 kernels differ from the builtin ones (which
tflite-runtime 2.14 uses for int8) by 1 in a few values: across machines use --int8-atol 1.

`output0` checks, per file, what an app that reads output 0 gets (Android, iOS and C++ apps, the
Task Library, benchmark_model): `get_output_details()[0]`, by index, one image per invoke, is the
class probabilities (each row sums to 1; top-1 accuracy on y_test far above chance), it is the
very tensor edgekit reads by name (`mc_mean` in an MC-dropout file, also through the signature
runner), and the file's TFLite metadata names it (`probabilities` or `mc_mean`) and carries the
labels. Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.device.metadata import read_metadata
from edgekit.device.outputs import MC_MEAN, mc_output_indices
from edgekit.device.runtime import (
    dequantize,
    get_runtime,
    input_details,
    load_interpreter,
    output_details,
    preprocess,
    quantize,
)

RTOL = 1e-4
ATOL = 1e-6
_META = "__meta__"


def _raw_outputs(path: Path, x: np.ndarray, runtime: Any, xnnpack: bool) -> np.ndarray:
    """The first output tensor of `path` for every image of x (float in [0, 1]), at batch 1."""
    interpreter = load_interpreter(path, runtime=runtime, num_threads=1, xnnpack=xnnpack)
    inp = input_details(interpreter)[0]
    if inp.shape and inp.shape[0] != 1:
        interpreter.resize_tensor_input(inp.index, [1, *inp.shape[1:]], strict=False)
        interpreter.allocate_tensors()
        inp = input_details(interpreter)[0]
    out = output_details(interpreter)[0]
    sample_shape = (1, *inp.shape[1:])
    rows = []
    for image in x:
        interpreter.set_tensor(inp.index, quantize(image.reshape(sample_shape), inp))
        interpreter.invoke()
        rows.append(np.array(interpreter.get_tensor(out.index)).reshape(-1))
    return np.stack(rows) if rows else np.zeros((0, int(np.prod(out.shape[1:]))), out.dtype)


def dump(export_dir: Path, test_npz: Path, out_npz: Path, runtime_name: str, xnnpack: bool) -> int:
    files = sorted(export_dir.glob("*.tflite"))
    if not files:
        print(f"error: no .tflite file in {export_dir}", file=sys.stderr)
        return 1
    with np.load(test_npz, allow_pickle=False) as data:
        x_raw = data["x_test"]
    if x_raw.dtype != np.uint8:
        print(f"error: {test_npz}: x_test is {x_raw.dtype}, expected uint8", file=sys.stderr)
        return 1
    manifest = export_dir / "manifest.json"
    spec = json.loads(manifest.read_text()).get("input") if manifest.is_file() else None
    x = preprocess(x_raw, spec) if spec else x_raw.astype(np.float32) / np.float32(255.0)
    runtime = get_runtime(runtime_name)
    arrays: dict[str, np.ndarray] = {}
    for path in files:
        arrays[path.name] = _raw_outputs(path, x, runtime, xnnpack)
        print(f"{path.name}: {arrays[path.name].dtype} {arrays[path.name].shape}")
    meta = {
        "runtime": runtime.name,
        "runtime_version": runtime.version,
        "xnnpack": xnnpack,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "images": int(len(x)),
        "input": spec or "uint8 / 255 (no input record in the manifest)",
        "files": [p.name for p in files],
    }
    arrays[_META] = np.array(json.dumps(meta))
    out_npz.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out_npz, **arrays)  # type: ignore[arg-type]
    print(
        f"{len(files)} files x {len(x)} images on {meta['machine']} with "
        f"{runtime.name} {runtime.version}, XNNPACK {'on' if xnnpack else 'off'} -> {out_npz}"
    )
    return 0


def _test_set(export_dir: Path, test_npz: Path) -> tuple[np.ndarray, np.ndarray, Any]:
    """x_test as the files' float input (the manifest's `input`, else uint8 / 255), y_test."""
    with np.load(test_npz, allow_pickle=False) as data:
        x_raw, y = data["x_test"], data["y_test"]
    manifest = export_dir / "manifest.json"
    spec = json.loads(manifest.read_text()).get("input") if manifest.is_file() else None
    x = preprocess(x_raw, spec) if spec else x_raw.astype(np.float32) / np.float32(255.0)
    return x, np.asarray(y, np.int64), spec


def check_output0(path: Path, x: np.ndarray, y: np.ndarray, runtime: Any) -> dict[str, Any]:
    """Output 0 of `path`, read by index as apps read it: the class probabilities?"""
    res: dict[str, Any] = {"file": path.name, "ok": False}
    interpreter = load_interpreter(path, runtime=runtime, num_threads=1)
    inp, out0 = input_details(interpreter)[0], output_details(interpreter)[0]
    if inp.shape and inp.shape[0] != 1:
        interpreter.resize_tensor_input(inp.index, [1, *inp.shape[1:]], strict=False)
        interpreter.allocate_tensors()
        inp = input_details(interpreter)[0]
    rows = []
    for image in x:
        interpreter.set_tensor(inp.index, quantize(image[None], inp))
        interpreter.invoke()
        rows.append(dequantize(interpreter.get_tensor(out0.index), out0).reshape(-1))
    probs = np.stack(rows)
    mc = mc_output_indices(interpreter)
    by_name = mc[MC_MEAN] if mc else out0.index
    sums = probs.sum(axis=1)
    # int8 softmax outputs move in 1/256 steps; a float softmax sums to 1 within rounding.
    atol = 0.02 if "int8" in {inp.dtype, out0.dtype} or out0.quantized else 1e-4
    accuracy = float((probs.argmax(axis=1) == y).mean()) if len(y) else 0.0
    res.update(
        tensor=out0.name,
        index=out0.index,
        classes=int(probs.shape[1]),
        max_sum_error=float(np.abs(sums - 1).max()) if len(sums) else 0.0,
        accuracy=accuracy,
        mc=bool(mc),
        same_tensor_as_by_name=by_name == out0.index,
    )
    problems = []
    if not np.allclose(sums, 1.0, atol=atol) or probs.min() < -atol:
        problems.append(f"rows are not probabilities (|sum - 1| up to {res['max_sum_error']:.3g})")
    if accuracy < 2.0 / max(probs.shape[1], 2):  # chance is 1/classes
        problems.append(f"top-1 accuracy {accuracy:.1%} is near chance")
    if by_name != out0.index:
        problems.append(f"output 0 is tensor {out0.index}, mc_mean is {by_name}")
    if mc:
        runner = interpreter.get_signature_runner()
        key = next(iter(runner.get_input_details()))
        got = runner(**{key: quantize(x[:8], inp)})[MC_MEAN]
        del runner  # a live runner holds the interpreter
        if not np.allclose(dequantize(got, out0), probs[:8], rtol=1e-5, atol=1e-6):
            problems.append("the signature runner's mc_mean differs from output 0")
    meta = read_metadata(path.read_bytes(), path.name)
    if meta is None:
        problems.append("no TFLite metadata")
    else:
        res.update(metadata_output0=meta.output_names[0], labels=len(meta.labels))
        if meta.output_names[0] not in ("probabilities", MC_MEAN):
            problems.append(f"the metadata names output 0 {meta.output_names[0]!r}")
        if len(meta.labels) != probs.shape[1]:
            problems.append(f"{len(meta.labels)} labels in the file for {probs.shape[1]} classes")
    res["problems"] = problems
    res["ok"] = not problems
    return res


def output0(export_dir: Path, test_npz: Path, runtime_name: str, json_out: Path | None) -> int:
    files = sorted(export_dir.glob("*.tflite"))
    if not files:
        print(f"error: no .tflite file in {export_dir}", file=sys.stderr)
        return 1
    x, y, _ = _test_set(export_dir, test_npz)
    runtime = get_runtime(runtime_name)
    results = []
    for path in files:
        try:
            r = check_output0(path, x, y, runtime)
        except Exception as e:  # a file that fails to load or run is a failed check
            r = {"file": path.name, "ok": False, "problems": [f"{type(e).__name__}: {e}"]}
        results.append(r)
        what = (
            f"output 0 = {r.get('tensor')} ({r.get('metadata_output0')}), "
            f"{r.get('classes')} classes, accuracy {100 * r.get('accuracy', 0):.1f}%, "
            f"|sum - 1| <= {r.get('max_sum_error', 0):.2g}"
            if "tensor" in r
            else ""
        )
        print(f"{'OK  ' if r['ok'] else 'FAIL'} {path.name}: {what} {'; '.join(r['problems'])}")
    ok = all(r["ok"] for r in results)
    print(
        f"output 0 read by index on {platform.machine()} with {runtime.name} {runtime.version}: "
        f"{sum(r['ok'] for r in results)} of {len(results)} files OK on {len(x)} images"
    )
    if json_out is not None:
        meta = {"runtime": runtime.name, "runtime_version": runtime.version}
        summary = {"ok": ok, **meta, "machine": platform.machine(), "files": results}
        json_out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if ok else 1


def _load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays.pop(_META))) if _META in arrays else {}
    return arrays, meta


def compare_one(
    name: str, ref: np.ndarray, got: np.ndarray | None, int8_atol: int
) -> dict[str, Any]:
    res: dict[str, Any] = {"file": name, "ok": False}
    if got is None:
        res["error"] = "missing from the device dump"
        return res
    res.update(dtype=str(ref.dtype), shape=list(ref.shape))
    if ref.shape != got.shape or ref.dtype != got.dtype:
        res["error"] = f"device has {got.dtype} {got.shape}, host {ref.dtype} {ref.shape}"
        return res
    agree = float((ref.argmax(axis=1) == got.argmax(axis=1)).mean()) if len(ref) else 1.0
    res["top1_agreement"] = agree
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    res["max_abs_diff"] = float(diff.max()) if diff.size else 0.0
    if np.issubdtype(ref.dtype, np.integer):
        res["mode"] = "bit-exact" if int8_atol == 0 else f"within {int8_atol} step(s)"
        res["mismatches"] = int((ref != got).sum())
        res["values"] = int(ref.size)
        close = res["max_abs_diff"] <= int8_atol
    else:
        res["mode"] = f"rtol {RTOL:g} atol {ATOL:g}"
        close = bool(np.allclose(got, ref, rtol=RTOL, atol=ATOL))
    res["ok"] = bool(close and agree == 1.0)
    return res


def _describe(meta: dict[str, Any]) -> str:
    xnn = "" if "xnnpack" not in meta else ("XNNPACK on" if meta["xnnpack"] else "XNNPACK off")
    return f"{meta.get('machine')} {meta.get('runtime')} {meta.get('runtime_version')} {xnn}"


def compare(host_npz: Path, device_npz: Path, int8_atol: int, json_out: Path | None) -> int:
    host, host_meta = _load(host_npz)
    device, device_meta = _load(device_npz)
    results = [compare_one(name, host[name], device.get(name), int8_atol) for name in sorted(host)]
    results += [
        {"file": name, "ok": False, "error": "not in the host dump"}
        for name in sorted(set(device) - set(host))
    ]
    print(f"host {_describe(host_meta)} / device {_describe(device_meta)}")
    for r in results:
        if "error" in r:
            line = r["error"]
        else:
            agree = 100 * float(r["top1_agreement"])
            line = (
                f"{r['dtype']} {tuple(r['shape'])}, top-1 agreement {agree:.2f}%,"
                f" max |diff| {r['max_abs_diff']:.3g} ({r['mode']}"
            )
            if "mismatches" in r:
                line += f", {r['mismatches']} of {r['values']} values differ"
            line += ")"
        print(f"{'OK  ' if r['ok'] else 'FAIL'} {r['file']}: {line}")
    ok = bool(results) and all(r["ok"] for r in results)
    if not host:
        print("FAIL: the host dump holds no file")
    if json_out is not None:
        summary = {
            "ok": ok,
            "int8_atol": int8_atol,
            "host": host_meta,
            "device": device_meta,
            "files": results,
        }
        json_out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="raw outputs of every .tflite file of EXPORT_DIR")
    d.add_argument("export_dir", type=Path)
    d.add_argument("test_npz", type=Path)
    d.add_argument("out_npz", type=Path)
    d.add_argument("--runtime", default="auto", help="auto, litert, tflite-runtime or tf")
    d.add_argument(
        "--no-xnnpack",
        dest="xnnpack",
        action="store_false",
        help="builtin kernels only (the runtime's XNNPACK delegate off)",
    )
    c = sub.add_parser("compare", help="compare a host dump with a device dump")
    c.add_argument("host_npz", type=Path)
    c.add_argument("device_npz", type=Path)
    c.add_argument(
        "--int8-atol",
        type=int,
        default=0,
        help="integer outputs may differ by this many steps (default 0: bit-exact)",
    )
    c.add_argument("--json", type=Path, default=None, help="write the per-file results here")
    o = sub.add_parser("output0", help="output 0, read by index, is the class probabilities")
    o.add_argument("export_dir", type=Path)
    o.add_argument("test_npz", type=Path)
    o.add_argument("--runtime", default="auto", help="auto, litert, tflite-runtime or tf")
    o.add_argument("--json", type=Path, default=None, help="write the per-file results here")
    args = parser.parse_args(argv)
    if args.cmd == "output0":
        return output0(args.export_dir, args.test_npz, args.runtime, args.json)
    if args.cmd == "dump":
        return dump(args.export_dir, args.test_npz, args.out_npz, args.runtime, args.xnnpack)
    return compare(args.host_npz, args.device_npz, args.int8_atol, args.json)


if __name__ == "__main__":
    sys.exit(main())

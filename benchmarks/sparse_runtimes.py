"""Which x86 runtime has a faster sparse path? One export's sparse float32 file against its
dense twin, timed by `edgekit bench` under LiteRT (this Python) and under tflite-runtime 2.14
(a venv: tflite-runtime has no wheel for numpy 2).

    python benchmarks/sparse_runtimes.py                 # exports the default MLP, 1x4 at 80%
    python benchmarks/sparse_runtimes.py --folder DIR    # an export folder you already have

The venv is the one `sudo bash scripts/device-smoke.sh x86-tflite-runtime` builds
(`/var/cache/edgekit-devices/venv-x86-tflite-runtime`: tflite-runtime 2.14.0, numpy<2 and
edgekit's pure-Python dependencies); `--venv` names another. The bench runs this checkout's
edgekit in both (PYTHONPATH), 1 thread, batch 1, each runtime's default kernels (XNNPACK on),
the files interleaved in rounds; the ratio is the dense file's p50 over the sparse file's (> 1:
sparse is faster). Both runtimes run one after the other in the same script: take the figures
with nothing else running (the JSON records the load average).

Writes benchmarks/results/sparse_runtimes.json (or --out) with the CPU and its flags.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV = Path("/var/cache/edgekit-devices/venv-x86-tflite-runtime")
EXPORT = [
    "--precision",
    "float32",
    "--sparsity-structure",
    "1x4",
    "--sparsity",
    "0.8",
    "--sparse-encoding",
    "float32",
]


def pair(folder: Path) -> tuple[Path, Path]:
    """The folder's sparse float32 file and its dense twin (the same name without '_sparse')."""
    sparse = sorted(folder.glob("*_sparse_float32.tflite"))
    if not sparse:
        sys.exit(f"{folder}: no *_sparse_float32.tflite file; export with {' '.join(EXPORT)}")
    dense = sparse[0].with_name(sparse[0].name.replace("_sparse_float32", "_float32"))
    if not dense.is_file():
        sys.exit(f"{folder}: {sparse[0].name} has no dense twin {dense.name}")
    return sparse[0], dense


def bench(python: str, runtime: str, files: tuple[Path, Path], args: argparse.Namespace) -> Any:
    """`edgekit bench` of both files in `python` with `runtime`; its JSON and the command."""
    with tempfile.TemporaryDirectory(prefix="edgekit-sparse-rt-") as tmp:
        out = Path(tmp) / "bench.json"
        argv = [python, "-m", "edgekit.cli.main", "bench"]
        argv += [str(f) for f in files]
        argv += ["--runtime", runtime, "--threads", "1", "--no-accuracy", "--quiet"]
        argv += ["--min-time", str(args.min_time), "--rounds", str(args.rounds)]
        argv += ["--json", str(out)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        load = os.getloadavg()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            sys.exit(f"bench under {runtime} failed ({proc.returncode}): {' | '.join(tail)}")
        return json.loads(out.read_text()), argv, [load, os.getloadavg()]


def runtime_row(
    name: str, python: str, files: tuple[Path, Path], args: argparse.Namespace
) -> dict[str, Any]:
    """One runtime's row: both files' p50, the ratio, and whether the sparse kernel ran."""
    report, argv, load = bench(python, name, files, args)
    rows = {Path(r["file"]).name: r for r in report["rows"]}
    sparse, dense = (rows[f.name] for f in files)
    for r in (sparse, dense):
        if r.get("status") != "ok":
            sys.exit(f"{r['file']} under {name}: {r.get('error')}")
    sparse_us, dense_us = (r["latency"]["p50_us"] for r in (sparse, dense))
    return {
        "runtime": report["machine"]["runtime"],
        "xnnpack": report["machine"]["xnnpack"],
        "python": report["machine"]["python"],
        "numpy": report["machine"]["numpy"],
        "bench_command": " ".join(argv[:-2]),  # less its temporary --json
        "sparse_p50_us": sparse_us,
        "dense_p50_us": dense_us,
        "speedup_sparse_vs_dense": round(dense_us / sparse_us, 3),
        "sparse_kernel": sparse.get("sparse"),
        "rounds": report["rounds"],
        "load_average": load,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, help="an export folder with a sparse float32 file")
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="tflite-runtime's venv")
    ap.add_argument("--min-time", type=float, default=3.0, help="bench --min-time per file")
    ap.add_argument("--rounds", type=int, default=10, help="bench --rounds")
    ap.add_argument("--out", type=Path, default=RESULTS / "sparse_runtimes.json")
    args = ap.parse_args()
    venv_python = args.venv / "bin" / "python"
    if not venv_python.is_file():
        ap.error(
            f"{venv_python} not found: build it with `sudo bash scripts/device-smoke.sh "
            "x86-tflite-runtime`, or name a venv with tflite-runtime in --venv"
        )
    from edgekit import __version__
    from edgekit.core.io.files import write_json_atomic
    from edgekit.device.bench import machine_info

    with tempfile.TemporaryDirectory(prefix="edgekit-sparse-rt-export-") as tmp:
        folder = args.folder
        export_argv = None
        if folder is None:
            folder = Path(tmp) / "export"
            export_argv = ["edgekit", "export", "-o", str(folder), *EXPORT]
            print(" ".join(export_argv), flush=True)
            proc = subprocess.run(export_argv, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                tail = proc.stderr.strip().splitlines()[-3:]
                sys.exit(f"export failed ({proc.returncode}): {' | '.join(tail)}")
        files = pair(folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        gate = next(
            (f["variant"].get("sparse") for f in manifest["files"] if f["file"] == files[0].name),
            None,
        )
        rows = []
        for name, python in (("litert", sys.executable), ("tflite-runtime", str(venv_python))):
            row = runtime_row(name, python, files, args)
            print(
                f"{row['runtime']}: sparse {row['sparse_p50_us']} us, dense "
                f"{row['dense_p50_us']} us p50 -> {row['speedup_sparse_vs_dense']}x",
                flush=True,
            )
            rows.append(row)
    result = {
        "benchmark": "sparse_runtimes",
        "edgekit_version": __version__,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["python", *sys.argv]),
        "machine": machine_info(),
        "export_command": export_argv,
        "files": {"sparse": files[0].name, "dense": files[1].name},
        "export_speed_gate": gate,
        "note": "speedup = dense p50 / sparse p50, 1 thread, batch 1, same bench run per runtime",
        "runtimes": rows,
    }
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

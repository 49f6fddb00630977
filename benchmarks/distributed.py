"""What `--distributed` costs: one process against 2 workers on this machine (loopback).

    python benchmarks/distributed.py                        # tiny run -> results/distributed.json
    python benchmarks/distributed.py --train-samples 20000 --epochs 3 --prune-epochs 2

Each repetition runs the same `run_pipeline` config once in one process and once as 2 worker
processes (MultiWorkerMirroredStrategy, TF_CONFIG on 127.0.0.1 ports), alternating, and records
the wall time of the whole command (process start to exit, TensorFlow import included), the
seconds of each stage of the chief, and the sha256 of the weights after pruning on each worker.
Both workers share this machine's cores, so this measures the overhead of the strategy and its
collectives, not a speed-up: on real machines each worker has its own CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
DEFAULT_OUT = RESULTS / "distributed.json"

# One pipeline run (a worker of a cluster when TF_CONFIG is set); prints one JSON line.
_CHILD = r"""
import json, sys
from edgekit.core.config import DataConfig, ExportConfig, PipelineConfig, PruneConfig, TrainConfig
from edgekit.workstation.pipeline import run_pipeline
a = json.loads(sys.argv[1])
config = PipelineConfig(
    data=DataConfig(train_samples=a["train_samples"], test_samples=a["test_samples"],
                    validation_size=a["validation_size"]),
    train=TrainConfig(epochs=a["epochs"], distributed=a["distributed"]),
    prune=PruneConfig(epochs=a["prune_epochs"]),
    export=ExportConfig(precisions=("float32",)),
    output_dir=a["output"],
)
result = run_pipeline(config, progress=lambda _m: None)
print(json.dumps({"stage_seconds": result.stage_seconds,
                  "weights_sha256": result.info.get("distributed", {}).get("weights_sha256"),
                  "chief": result.export is not None}))
"""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _run(args: dict[str, Any], workers: int, folder: Path) -> dict[str, Any]:
    """One run on `workers` processes (1: no TF_CONFIG, not distributed)."""
    ports = _free_ports(workers)
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    procs = []
    t0 = time.perf_counter()
    for i in range(workers):
        child_args = {**args, "distributed": workers > 1, "output": str(folder / f"w{i}")}
        child_env = dict(env)
        if workers > 1:
            cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
            child_env["TF_CONFIG"] = json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": i}}
            )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, json.dumps(child_args)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=child_env,
            )
        )
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=1800)
        if p.returncode != 0:
            raise SystemExit(f"a run failed ({p.returncode}):\n{err[-3000:]}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - t0
    chief = next(o for o in outs if o["chief"])
    return {
        "workers": workers,
        "wall_s": round(wall, 2),
        "stage_seconds": chief["stage_seconds"],
        "weights_sha256": [o["weights_sha256"] for o in outs],
    }


def _median(rows: list[dict[str, Any]], key: str) -> float:
    values = [r["wall_s"] if key == "wall" else r["stage_seconds"].get(key, 0.0) for r in rows]
    return round(statistics.median(values), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--train-samples", type=int, default=600)
    parser.add_argument("--test-samples", type=int, default=200)
    parser.add_argument("--validation-size", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--prune-epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ns = parser.parse_args()
    args = {
        k: getattr(ns, k)
        for k in ("train_samples", "test_samples", "validation_size", "epochs", "prune_epochs")
    }
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(ns.reps):
            for workers in (1, 2):
                row = _run(args, workers, Path(tmp) / f"r{rep}_{workers}")
                runs.append(row)
                print(
                    f"rep {rep} workers {workers}: {row['wall_s']} s, stages "
                    f"{row['stage_seconds']}",
                    file=sys.stderr,
                )
    summary = {}
    for workers in (1, 2):
        rows = [r for r in runs if r["workers"] == workers]
        summary[f"{workers}_process" if workers == 1 else f"{workers}_workers"] = {
            key: _median(rows, key) for key in ("wall", "join workers", "train", "prune")
        }
    two = [r for r in runs if r["workers"] == 2]
    result = {
        "args": args,
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor(),
            "load_average_1m": os.getloadavg()[0],
        },
        "median_seconds": summary,
        "workers_equal_weights": all(len(set(r["weights_sha256"])) == 1 for r in two),
        "same_weights_every_distributed_run": len({r["weights_sha256"][0] for r in two}) == 1,
        "runs": runs,
    }
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median_seconds"], indent=2))
    print(f"wrote {ns.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

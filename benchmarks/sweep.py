"""What does each sweep engine cost? One 12-point grid on Fashion-MNIST run by every engine.

    python benchmarks/sweep.py            # quick: a data slice, few epochs (a few minutes)
    python benchmarks/sweep.py --engines local1,local,ray,local,ray   # alternate engines
    python benchmarks/sweep.py --full     # full data, default epochs (~1 min per point)
    -> results/sweep.json (+ sweep.md, sweep.png: the frontier of the last engine's run)

The grid: sparsity 0.5, 0.8, 0.9 x precision int8, float16 x hidden 300+100, 64+32 (the
guidance's MLP and a cheap one). Engines, each into a fresh folder (nothing resumed):
local with 1 worker, local with --jobs workers, a local Ray with --jobs CPUs. Per engine: the
wall time of the points (p50 not measured: that is the same work for every engine), the sum
of the points' pipeline stages (the useful work), and the overhead per point: CPU-slot seconds
not spent in a pipeline stage (process start, TensorFlow import, Ray scheduling, writing),
(wall x workers - pipeline sum) / points, split into start-up inside the point's process and
dispatch outside it. The machine's 1-minute load average before and after each engine is
recorded: on a shared machine other tenants' work shows there, not in the numbers' labels.
The files of every engine are compared by sha256.
Then p50 of every file is measured once (edgekit.device.bench, 1 thread, interleaved) by resuming
the first engine's sweep, and its frontier is written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgekit.cli.report.sweep import sweep_markdown, write_sweep_outputs
from edgekit.core.config import DataConfig, ExportConfig, PipelineConfig, PruneConfig, TrainConfig
from edgekit.core.io.files import write_bytes_atomic, write_json_atomic, write_text_atomic
from edgekit.device.bench import machine_info
from edgekit.sweep import SweepConfig, expand_grid, parse_grid, point_salt, run_sweep

RESULTS = Path(__file__).parent / "results"
DEFAULT_OUT = RESULTS / "sweep.json"
GRID = ["sparsity=0.5,0.8,0.9", "precision=int8,float16", "hidden=300+100,64+32"]
# The quick mode's slice: every point a real pipeline run, minutes in all on 2 cores.
QUICK = {
    "train_samples": 6000,
    "validation_size": 1000,
    "test_samples": 2000,
    "epochs": 3,
    "prune_epochs": 2,
    "calibration_samples": 200,
}


def base_config(full: bool) -> PipelineConfig:
    if full:
        return PipelineConfig()
    q = QUICK
    return PipelineConfig(
        data=DataConfig(
            train_samples=q["train_samples"],
            validation_size=q["validation_size"],
            test_samples=q["test_samples"],
        ),
        train=TrainConfig(epochs=q["epochs"]),
        prune=PruneConfig(epochs=q["prune_epochs"]),
        export=ExportConfig(calibration_samples=q["calibration_samples"]),
    )


def run_engine(
    name: str, config: SweepConfig, grid: dict[str, Any], base: PipelineConfig, say: Any
) -> tuple[dict[str, Any], Any]:
    points = expand_grid(grid, base, config.output_dir, salt=point_salt(1))
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    result = run_sweep(points, config, grid, progress=say)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()
    workers = config.jobs
    pipeline = sum(sum((p.get("stage_seconds") or {}).values()) for p in result.points)
    in_worker = sum(p.get("seconds") or 0.0 for p in result.points)
    n = len(result.points)
    return {
        "engine": name,
        "workers": workers,
        "points": n,
        "failed": len(result.failed),
        "wall_s": round(wall, 1),
        "ray_init_s": result.engine.get("init_s"),
        "point_seconds_sum": round(in_worker, 1),
        "pipeline_seconds_sum": round(pipeline, 1),
        "ideal_wall_s": round(pipeline / workers, 1),
        "overhead_per_point_s": round((wall * workers - pipeline) / n, 2),
        # ... of which inside the point's process, before and around the pipeline (Python and
        # TensorFlow import), and outside it (process start, scheduling, results, writing).
        "startup_in_worker_per_point_s": round((in_worker - pipeline) / n, 2),
        "dispatch_per_point_s": round((wall * workers - in_worker) / n, 2),
        "wall_per_point_s": round(wall / n, 2),
        "load_average_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "sha256": {f"{r.point}/{r.file}": r.sha256 for r in result.rows if r.file},
    }, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="Full data, default epochs.")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument(
        "--engines",
        default="local1,local,ray",
        help="Comma-separated: local1 (1 worker), local (--jobs), ray; repeat one "
        "to alternate engines (e.g. local,ray,local,ray: the machine's drift "
        "then hits both).",
    )
    ap.add_argument("--keep", type=Path, help="Keep the sweep folders here.")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)

    def say(msg: str) -> None:
        print(f"  {msg}", file=sys.stderr, flush=True)

    grid = parse_grid(GRID)
    base = base_config(args.full)
    root = args.keep or Path(tempfile.mkdtemp(prefix="edgekit-sweep-bench-"))
    names = args.engines.split(",")
    if set(names) - {"local1", "local", "ray"}:
        raise SystemExit(f"unknown engine in {args.engines!r}: local1, local, ray")

    def engine(i: int, name: str) -> SweepConfig:  # a fresh folder per run: nothing resumed
        folder = str(root / f"{i}_{name}")
        if name == "local1":
            return SweepConfig(folder, jobs=1, bench=False)
        return SweepConfig(folder, jobs=args.jobs, ray=name == "ray", bench=False)

    runs = []
    configs = [engine(i, name) for i, name in enumerate(names)]
    try:
        for name, config in zip(names, configs, strict=True):
            say(f"== engine {name}")
            info, _ = run_engine(name, config, grid, base, say)
            runs.append(info)
            say(f"== {name}: {info['wall_s']} s, overhead {info['overhead_per_point_s']} s/point")
        first = configs[0]
        say("== p50 of every file (resuming the first engine's sweep)")
        bench_config = SweepConfig(first.output_dir, jobs=1, bench=True)
        points = expand_grid(grid, base, first.output_dir, salt=point_salt(1))
        final = run_sweep(points, bench_config, grid, progress=say)
        written = write_sweep_outputs(final, first.output_dir)
        png = next(p for p in written if p.suffix == ".png")
        write_bytes_atomic(args.out.with_suffix(".png"), png.read_bytes())
        write_text_atomic(args.out.with_suffix(".md"), sweep_markdown(final))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    digests = [r.pop("sha256") for r in runs]
    report = {
        "benchmark": "sweep",
        "command": "python benchmarks/sweep.py" + (" --full" if args.full else ""),
        "machine": machine_info(),
        "mode": "full" if args.full else "quick",
        "data": "full Fashion-MNIST, default epochs (early stopping)"
        if args.full
        else (
            f"QUICK SLICE, not full size: {QUICK['train_samples']} training samples "
            f"({QUICK['validation_size']} of them held out for validation), "
            f"{QUICK['test_samples']} test samples, {QUICK['epochs']} training + "
            f"{QUICK['prune_epochs']} pruning epochs, {QUICK['calibration_samples']} "
            "calibration samples: accuracies are far below full-size ones"
        ),
        "grid": GRID,
        "threads_per_point": 1,
        "same_files_on_every_engine": all(d == digests[0] for d in digests),
        "files_compared": len(digests[0]) if digests else 0,
        "engines": runs,
        "median_wall_s": {
            n: statistics.median(r["wall_s"] for r in runs if r["engine"] == n)
            for n in dict.fromkeys(names)
        },
        "frontier": [
            {
                "point": r.point,
                "label": r.label,
                "precision": r.precision,
                "accuracy": r.accuracy,
                "gzip_bytes": r.gzip_bytes,
                "p50_us": r.p50_us,
            }
            for r in final.frontier
        ],
        "rows": [r.to_dict() for r in final.rows],
        "p50": final.bench,
    }
    write_json_atomic(args.out, report)
    print(f"wrote {args.out}, {args.out.with_suffix('.md')}, {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

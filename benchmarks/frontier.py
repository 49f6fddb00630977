"""Size-accuracy frontier of int8 Fashion-MNIST models, held on 3 seeds: accuracy vs gzip bytes.

    python benchmarks/frontier.py --points quick --seeds 0,1,2   # smoke run: 2 + 1 epochs
    python benchmarks/frontier.py --points full                   # every point, 3 seeds
    python benchmarks/frontier.py --points full --only cnn/h32@0.7/c16/qat4 --seeds 0
    python benchmarks/frontier.py --points full --only cnn/h32@0.7/c16/qat4/aug/drop0/e30 \\
        --workdir DIR
    python benchmarks/frontier.py --combine a.json b.json         # merge runs into frontier.json

Every point is an `edgekit export` command line, run as a user types it (one process per point
and seed, full data: 55,000 train, 5,000 validation, 10,000 test images, int8 only); the
results list each command. The int8 accuracy is the manifest's: LiteRT on the whole 10k test
set. A point's claim is the mean and the worst of its seeds (`int8_accuracy_seeds`), at the
largest of its seeds' gzipped sizes. Latency of the first seed's file is measured in-process:
one thread, XNNPACK, batch 1, a real test image, LATENCY_WARMUP then LATENCY_RUNS invokes timed
one by one with time.perf_counter_ns, with the CPU's class and flags in the JSON.

Writes benchmarks/results/frontier.json (or --out) and a PNG plot next to it (frontier.png),
marking the Pareto frontier (no other point has >= mean accuracy at <= gzip bytes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RESULTS = Path(__file__).parent / "results"
# Issue 18's goal: the mean of 3 seeds, the worst seed, at <= 64 KB gzipped.
GOAL_ACCURACY = 0.930
GOAL_WORST_ACCURACY = 0.927
GOAL_GZIP_BYTES = 64 * 1024
DEFAULT_SEEDS = (0, 1, 2)
LATENCY_WARMUP = 50
LATENCY_RUNS = 500

# Clustering (16 values per kernel, zeros kept) buys gzip room for fewer zeros, and
# cluster-preserving QAT on top (the int8_qat file is the point's file).
_CLUSTERED_QAT: dict[str, Any] = {
    "arch": "cnn",
    "hidden": "32",
    "sparsity": 0.7,
    "prune-epochs": 8,
    "clusters": 16,
    "qat": True,
    "qat-epochs": 4,
}
_AUGMENT = {"augment": "flip,translate:0.1"}

# A point: `edgekit export` options (option name without "--" -> value; True = a flag).
POINTS: dict[str, list[dict[str, Any]]] = {
    "quick": [
        {"arch": "cnn_gap", "sparsity": 0.75, "epochs": 2, "prune-epochs": 1},
    ],
    "full": [
        {"arch": "cnn_gap", "sparsity": 0.75},
        {"arch": "cnn", "sparsity": 0.8},
        {"arch": "cnn", "hidden": "32", "sparsity": 0.8},
        _CLUSTERED_QAT,
        # The same with augmentation and twice the epochs (augmented nets underfit at 4-10
        # epochs: benchmarks/results/augment.json). Not run on 3 seeds.
        {**_CLUSTERED_QAT, "epochs": 20, **_AUGMENT},
        # Augmented, the cnn underfits with its default dropout 0.3 (seed 0: 91.3% on augmented
        # training batches, 92.6% validation at epoch 15 of 20): no dropout, 24 epochs.
        # benchmarks/results/frontier_3seeds_e24.json.
        {**_CLUSTERED_QAT, "epochs": 24, "dropout": 0, **_AUGMENT},
        # The 24-epoch point's validation accuracy still rose at its last epochs and its worst
        # seed missed the goal by 0.01 point: 30 epochs (the cosine schedule spans them all).
        # benchmarks/results/frontier_3seeds.json: the goal met on every seed.
        {**_CLUSTERED_QAT, "epochs": 30, "dropout": 0, **_AUGMENT},
    ],
}


def point_label(p: dict[str, Any]) -> str:
    """'arch/hH@sparsity' (plus '/cN' with clusters, '/qatE' with QAT, '/aug' with
    augmentation, '/dropD' and '/eN' with a dropout or an epoch count), the name --only selects a
    point by."""
    hidden = f"/h{str(p['hidden']).replace(',', '-')}" if p.get("hidden") else ""
    label = f"{p['arch']}{hidden}@{p['sparsity']:g}"
    label += f"/c{p['clusters']}" if p.get("clusters") else ""
    if p.get("qat"):
        label += f"/qat{p['qat-epochs']}" if p.get("qat-epochs") else "/qat"
    label += "/aug" if p.get("augment") else ""
    label += f"/drop{p['dropout']:g}" if "dropout" in p else ""
    label += f"/e{p['epochs']}" if "epochs" in p else ""
    return label


def export_command(p: dict[str, Any], seed: int, out: str) -> list[str]:
    """The `edgekit export` command line of a point at one seed, writing into `out`."""
    argv = ["edgekit", "export", "-o", out, "--precision", "int8", "--seed", str(seed)]
    for key, value in p.items():
        if value is True:
            argv.append(f"--{key}")
        elif value is not None and value is not False:
            argv += [f"--{key}", str(value)]
    return argv


def latency_us(tflite: bytes, image: Any) -> dict[str, float]:
    """p50/p90 latency in microseconds of one int8 invoke (1 thread, XNNPACK, batch 1)."""
    import numpy as np

    from edgekit.device.runtime import input_details, load_interpreter, quantize

    interp = load_interpreter(tflite, num_threads=1)
    info = input_details(interp)[0]
    interp.set_tensor(info.index, quantize(image[None].astype(np.float32), info))
    for _ in range(LATENCY_WARMUP):
        interp.invoke()
    ns = np.empty(LATENCY_RUNS, dtype=np.int64)
    for i in range(LATENCY_RUNS):
        t0 = time.perf_counter_ns()
        interp.invoke()
        ns[i] = time.perf_counter_ns() - t0
    return {
        "p50_us": round(float(np.percentile(ns, 50)) / 1e3, 2),
        "p90_us": round(float(np.percentile(ns, 90)) / 1e3, 2),
    }


def pareto(rows: list[dict[str, Any]]) -> None:
    """Set row['pareto']: no other row is at least as accurate at no more gzip bytes (and
    strictly better in one of the two)."""
    for r in rows:
        r["pareto"] = not any(
            o is not r
            and o["int8_accuracy"] >= r["int8_accuracy"]
            and o["gzip_bytes"] <= r["gzip_bytes"]
            and (o["int8_accuracy"] > r["int8_accuracy"] or o["gzip_bytes"] < r["gzip_bytes"])
            for o in rows
        )


def run_point(p: dict[str, Any], seeds: list[int], workdir: Path) -> dict[str, Any]:
    """Run a point's command once per seed; its row: per-seed accuracies and sizes, mean, worst."""
    from edgekit.core.config import DataConfig
    from edgekit.core.data import load_dataset
    from edgekit.device.manifest import read_manifest

    label = point_label(p)
    tag = "int8_qat" if p.get("qat") else "int8"
    runs: list[dict[str, Any]] = []
    first_file: bytes | None = None
    for seed in seeds:
        out = workdir / f"{label.replace('@', '_sp').replace('/', '_')}_s{seed}"
        argv = export_command(p, seed, str(out))
        log = out.parent / f"{out.name}.log"  # the export's progress, readable while it runs
        print(f"{label} seed {seed}: {' '.join(argv)} (progress in {log})", flush=True)
        t0 = time.perf_counter()
        with log.open("w") as log_file:
            proc = subprocess.run(argv, stdout=log_file, stderr=subprocess.STDOUT, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {' | '.join(tail)}")
        manifest = read_manifest(out)
        rec = next(f for f in manifest.files if f.variant.get("tag") == tag)
        assert rec.accuracy is not None and rec.gzip_bytes is not None
        if first_file is None:
            first_file = (out / rec.file).read_bytes()
        runs.append(
            {
                "seed": seed,
                "command": " ".join(argv),
                "int8_accuracy": rec.accuracy.accuracy,
                "float_accuracy": manifest.keras_accuracy,
                "bytes": rec.bytes,
                "gzip_bytes": rec.gzip_bytes,
                "weight_sparsity": rec.weight_sparsity,
                "file": rec.file,
                "seconds": round(wall, 1),
                "stage_seconds": manifest.stage_seconds,
            }
        )
        print(
            f"{label} seed {seed}: int8 {rec.accuracy.accuracy:.4f}, {rec.gzip_bytes} B gzip, "
            f"{wall:.0f} s",
            flush=True,
        )
    accs = [r["int8_accuracy"] for r in runs]
    gz = [r["gzip_bytes"] for r in runs]
    image = load_dataset(DataConfig(train_samples=100, test_samples=1, validation_size=10))
    assert first_file is not None
    row: dict[str, Any] = {
        "point": label,
        "options": p,
        "commands": [r["command"] for r in runs],
        "seeds": seeds,
        "int8_accuracy_seeds": accs,
        "int8_accuracy": round(statistics.fmean(accs), 5),  # the mean: the claim
        "int8_accuracy_worst": min(accs),
        "float_accuracy_seeds": [r["float_accuracy"] for r in runs],
        "gzip_bytes_seeds": gz,
        "gzip_bytes": max(gz),  # the claim holds for every seed's file
        "bytes": max(r["bytes"] for r in runs),
        "weight_sparsity_seeds": [r["weight_sparsity"] for r in runs],
        "latency_first_seed": latency_us(first_file, image.x_test[0]),
        "seconds_seeds": [r["seconds"] for r in runs],
        "runs": runs,
    }
    row["meets_goal"] = (
        row["int8_accuracy"] >= GOAL_ACCURACY
        and row["int8_accuracy_worst"] >= GOAL_WORST_ACCURACY
        and row["gzip_bytes"] <= GOAL_GZIP_BYTES
    )
    return row


def run_points(
    points: list[dict[str, Any]],
    seeds: list[int],
    workdir: Path,
    on_row: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every point on every seed; `on_row` gets the rows done so far after each point."""
    rows: list[dict[str, Any]] = []
    for p in points:
        rows.append(run_point(p, seeds, workdir))
        pareto(rows)
        if on_row is not None:
            on_row(rows)
    return rows


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Accuracy vs gzip KB, one colour per network, the Pareto frontier joined by a line."""
    from edgekit.cli.report.plot import figure_png

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        for arch in sorted({r["point"].split("@")[0] for r in rows}):  # arch (/hidden units)
            pts = [r for r in rows if r["point"].split("@")[0] == arch]
            ax.scatter(
                [r["gzip_bytes"] / 1024 for r in pts],
                [100 * r["int8_accuracy"] for r in pts],
                label=arch,
                s=40,
            )
            for r in pts:
                ax.annotate(
                    f"sp{r['options']['sparsity']:g}",
                    (r["gzip_bytes"] / 1024, 100 * r["int8_accuracy"]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                )
        front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["gzip_bytes"])
        ax.plot(
            [r["gzip_bytes"] / 1024 for r in front],
            [100 * r["int8_accuracy"] for r in front],
            "k--",
            lw=1,
            label="Pareto frontier",
        )
        ax.axhline(100 * GOAL_ACCURACY, color="g", lw=0.8, ls=":")
        ax.axvline(
            GOAL_GZIP_BYTES / 1024, color="g", lw=0.8, ls=":", label="goal (93.0% mean, 64 KB)"
        )
        ax.set_xlabel("int8 .tflite, gzip -9 (KB)")
        ax.set_ylabel("int8 test accuracy, 10k images, mean of seeds (%)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    path.write_bytes(figure_png(draw, figsize=(7, 4.5), dpi=120))


def combine(paths: list[Path], out: Path) -> int:
    """Merge the points of frontier JSON files (runs made one after another) into `out`."""
    parts = [json.loads(p.read_text()) for p in paths]
    rows = [r for part in parts for r in part["points"]]
    pareto(rows)
    report = {
        **{k: v for k, v in parts[0].items() if k not in ("points", "command", "wall_seconds")},
        "command": " ".join(["python", *sys.argv]),
        "runs": [
            {
                "command": part["command"],
                "points": [r["point"] for r in part["points"]],
                "points_done": part.get("points_done"),
                "wall_seconds": part.get("wall_seconds"),
            }
            for part in parts
        ],
        "points": rows,
        "meets_goal": [r["point"] for r in rows if r["meets_goal"]],
    }
    report.pop("points_done", None)
    out.write_text(json.dumps(report, indent=2) + "\n")
    png = out.with_suffix(".png")
    plot(
        rows,
        png,
        f"edgekit int8 Fashion-MNIST, seeds {report['seeds']}, {report['machine']['cpu']}",
    )
    print(f"wrote {out} and {png}; meets the goal: {report['meets_goal'] or 'none'}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", choices=sorted(POINTS), default="quick")
    ap.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="LABEL",
        help="run only these points of the list (repeatable), e.g. cnn_gap@0.75",
    )
    ap.add_argument(
        "--seeds",
        default=",".join(str(s) for s in DEFAULT_SEEDS),
        help="comma-separated seeds: each point's command runs once per seed",
    )
    ap.add_argument("--out", type=Path, default=None, help="JSON path (PNG next to it)")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep each export's folder and progress log here (default: a temporary folder)",
    )
    ap.add_argument(
        "--combine",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="run nothing: merge the points of earlier frontier JSON files into --out",
    )
    args = ap.parse_args()
    t_start = time.perf_counter()
    if args.combine:
        return combine(args.combine, args.out or RESULTS / "frontier.json")
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    points = POINTS[args.points]
    if args.only:
        points = [p for p in points if point_label(p) in args.only]
        if not points:
            labels = ", ".join(point_label(p) for p in POINTS[args.points])
            ap.error(f"--only matched no point of --points {args.points}: choose from {labels}")

    from edgekit.device.bench import machine_info
    from edgekit.device.runtime import get_runtime
    from edgekit.workstation._keras import keras, tf, tfmot
    from edgekit.workstation.train.model import GAP_STAGES

    rt = get_runtime()
    report: dict[str, Any] = {
        "benchmark": "frontier",
        "command": " ".join(["python", *sys.argv]),
        "points_list": args.points,
        "seeds": seeds,
        "machine": machine_info(),
        "versions": {
            "tensorflow": tf.__version__,
            "tf_keras": keras.__version__,
            "tfmot": getattr(tfmot, "__version__", "unknown"),
            "runtime": f"{rt.name} {rt.version}",
        },
        "cnn_gap_stages": [list(s) for s in GAP_STAGES],
        "goal": {
            "int8_accuracy_mean": GOAL_ACCURACY,
            "int8_accuracy_worst": GOAL_WORST_ACCURACY,
            "gzip_bytes": GOAL_GZIP_BYTES,
        },
        "notes": {
            "int8_accuracy": "LiteRT on the full 10,000-image test set (export manifest)",
            "gzip_bytes": "gzip -9 of the .tflite (edgekit.device.modelfile.gzip_size)",
            "latency": f"in-process, 1 thread, XNNPACK, batch 1, {LATENCY_WARMUP} warm-up then "
            f"{LATENCY_RUNS} timed invokes (perf_counter_ns)",
            "int8_accuracy_mean": "the mean of the point's seeds; int8_accuracy_seeds each",
            "gzip_bytes_claim": "the largest of the point's seeds' files",
            "pareto": "no other point has >= mean accuracy at <= gzip bytes",
        },
        "points": [],
        "points_done": f"0 of {len(points)}",
    }
    out = args.out or RESULTS / "frontier.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(rows: list[dict[str, Any]]) -> None:  # after each point: a long run keeps its rows
        report["points"] = rows
        report["points_done"] = f"{len(rows)} of {len(points)}"
        report["meets_goal"] = [r["point"] for r in rows if r["meets_goal"]]
        report["wall_seconds"] = round(time.perf_counter() - t_start, 1)
        out.write_text(json.dumps(report, indent=2) + "\n")

    if args.workdir is not None:  # kept: each export's folder and progress log
        args.workdir.mkdir(parents=True, exist_ok=True)
        rows = run_points(points, seeds, args.workdir, on_row=write)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            rows = run_points(points, seeds, Path(tmp), on_row=write)
    png = out.with_suffix(".png")
    plot(rows, png, f"edgekit int8 Fashion-MNIST, seeds {seeds}, {report['machine']['cpu']}")
    print(f"wrote {out} and {png}; meets the goal: {report['meets_goal'] or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

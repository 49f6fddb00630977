"""Size-accuracy frontier of int8 Fashion-MNIST models: accuracy vs gzipped bytes, per point.

    python benchmarks/frontier.py --points quick   # ~3 min here: 2 + 1 epochs (smoke run)
    python benchmarks/frontier.py --points full    # default epochs of each architecture
    python benchmarks/frontier.py --points full --only cnn_gap@0.75   # one point of the list
    python benchmarks/frontier.py --combine a.json b.json   # merge runs into frontier.json

Every point goes through edgekit.workstation.pipeline.run_pipeline on the full data (55,000 train,
5,000
validation, 10,000 test images) and exports int8 only. Points of one (arch, epochs) share one
training run: the first trains without pruning (that is the sparsity-0 point), the trained
model is saved, and each pruned point gives run_pipeline that file (model_path) to prune,
fine-tune, fold and export. Accuracy is LiteRT's on the whole 10k test set (the manifest's);
latency is measured in-process: one thread, XNNPACK, batch 1, a real test image,
LATENCY_WARMUP then LATENCY_RUNS invokes timed one by one with time.perf_counter_ns.

Writes benchmarks/results/frontier.json (or --out) and a PNG plot next to it (frontier.png),
marking the Pareto frontier (no other point has >= accuracy at <= gzip bytes).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RESULTS = Path(__file__).parent / "results"
# Issue 9's goal for one point.
GOAL_ACCURACY = 0.925
GOAL_GZIP_BYTES = 64 * 1024
LATENCY_WARMUP = 50
LATENCY_RUNS = 500

# (arch, sparsity, epochs, prune_epochs, clusters); epochs None = the architecture's default
# (edgekit.core.config.DEFAULT_EPOCHS). clusters: `--clusters N` after pruning
# (edgekit.workstation.train.cluster).
POINTS: dict[str, list[dict[str, Any]]] = {
    "quick": [
        {"arch": "cnn_gap", "sparsity": 0.0, "epochs": 2, "prune_epochs": 1},
        {"arch": "cnn_gap", "sparsity": 0.75, "epochs": 2, "prune_epochs": 1},
    ],
    "full": [
        {"arch": "cnn_gap", "sparsity": 0.0, "epochs": None, "prune_epochs": None},
        {"arch": "cnn_gap", "sparsity": 0.75, "epochs": None, "prune_epochs": None},
        {"arch": "cnn_gap", "sparsity": 0.6, "epochs": None, "prune_epochs": None},
        {"arch": "cnn", "sparsity": 0.8, "epochs": None, "prune_epochs": None},
        {"arch": "cnn", "hidden": [32], "sparsity": 0.8, "epochs": None, "prune_epochs": None},
        # Clustering (16 values per kernel, zeros kept) buys gzip room for fewer zeros.
        {
            "arch": "cnn",
            "hidden": [32],
            "sparsity": 0.7,
            "epochs": None,
            "prune_epochs": 8,
            "clusters": 16,
        },
        {
            "arch": "cnn",
            "hidden": [32],
            "sparsity": 0.8,
            "epochs": None,
            "prune_epochs": 8,
            "clusters": 16,
        },
        # ... and cluster-preserving QAT on top (the int8_qat file).
        {
            "arch": "cnn",
            "hidden": [32],
            "sparsity": 0.7,
            "epochs": None,
            "prune_epochs": 8,
            "clusters": 16,
            "qat": True,
        },
        {
            "arch": "cnn",
            "hidden": [32],
            "sparsity": 0.7,
            "epochs": None,
            "prune_epochs": 8,
            "clusters": 16,
            "qat": True,
            "qat_epochs": 4,
        },
    ],
}


def point_label(p: dict[str, Any]) -> str:
    """'arch@sparsity' (plus '/cN' with clusters), the name --only selects a point by."""
    hidden = f"/h{'-'.join(str(u) for u in p['hidden'])}" if p.get("hidden") else ""
    label = f"{p['arch']}{hidden}@{p['sparsity']:g}"
    label += f"/c{p['clusters']}" if p.get("clusters") else ""
    qat = f"/qat{p['qat_epochs']}" if p.get("qat_epochs") else "/qat"
    return label + (qat if p.get("qat") else "")


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


def run_points(
    points: list[dict[str, Any]],
    seed: int,
    workdir: Path,
    on_row: Callable[[list[dict[str, Any]]], None] | None = None,
    trained_model: Path | None = None,
) -> list[dict[str, Any]]:
    """Run every point through run_pipeline; one training per (arch, epochs).

    `on_row` gets the rows done so far (Pareto marked) after each point. `trained_model`: a
    model an earlier run of this script trained (its `*_trained.keras`) for the points' arch:
    it is pruned (and clustered) as it is, not trained again.
    """
    from edgekit.core.config import (
        DEFAULT_EPOCHS,
        ClusterConfig,
        DataConfig,
        ExportConfig,
        PipelineConfig,
        PruneConfig,
        QatConfig,
        TrainConfig,
    )
    from edgekit.workstation.pipeline import run_pipeline

    has_cluster = importlib.util.find_spec("edgekit.workstation.train.cluster") is not None
    trained: dict[tuple[Any, ...], tuple[Path, float, Any]] = {}
    rows: list[dict[str, Any]] = []
    export = ExportConfig(precisions=("int8",))
    for p in points:
        arch, sp = p["arch"], float(p["sparsity"])
        epochs = p.get("epochs") or DEFAULT_EPOCHS[arch][0]
        prune_epochs = p.get("prune_epochs") or DEFAULT_EPOCHS[arch][1]
        hidden = {"hidden_units": tuple(p["hidden"])} if p.get("hidden") else {}
        train = TrainConfig(arch=arch, epochs=epochs, seed=seed, **hidden)
        data = DataConfig(seed=seed)
        out = workdir / point_label(p).replace("@", "_sp").replace("/", "_")
        row: dict[str, Any] = {
            "point": point_label(p),
            "arch": arch,
            "sparsity": sp,
            "epochs": epochs,
            "prune_epochs": prune_epochs if sp > 0 else 0,
            "clusters": p.get("clusters"),
        }
        if p.get("clusters") and not has_cluster:
            row["clusters_note"] = (
                "edgekit.workstation.train.cluster does not exist in this branch: "
                "clustering skipped"
            )
        key = (arch, train.hidden_units, epochs)
        if trained_model is not None and key not in trained:
            trained[key] = (trained_model, 0.0, None)
        if key not in trained:  # train once without pruning: the sparsity-0 file
            t0 = time.perf_counter()
            res = run_pipeline(
                PipelineConfig(
                    data=data,
                    train=train,
                    prune=None,
                    export=export,
                    output_dir=str(
                        out if sp == 0 else workdir / f"{arch}_{len(trained)}_e{epochs}"
                    ),
                )
            )
            path = workdir / f"{arch}_{len(trained)}_e{epochs}_trained.keras"
            res.models["trained"].save(path)
            trained[key] = (path, time.perf_counter() - t0, res)
        path, train_s, base = trained[key]
        t0 = time.perf_counter()
        if sp == 0:
            res, wall = base, train_s
        else:
            prune = PruneConfig(target_sparsity=sp, epochs=prune_epochs, seed=seed)
            qat = QatConfig(epochs=p.get("qat_epochs", 2), seed=seed) if p.get("qat") else None
            cluster = (
                ClusterConfig(clusters=p["clusters"], seed=seed)
                if p.get("clusters") and has_cluster
                else None
            )
            res = run_pipeline(
                PipelineConfig(
                    data=data,
                    train=train,
                    prune=prune,
                    export=export,
                    output_dir=str(out),
                    cluster=cluster,
                    qat=qat,
                ),
                model_path=path,
            )
            wall = time.perf_counter() - t0
        base = base or res  # a given trained model: its accuracy as loaded
        # With qat the point is the QAT int8 file (int8_qat); the post-training one is kept too.
        f = next(
            x
            for x in res.export.files
            if x.record.variant.get("tag") == ("int8_qat" if p.get("qat") else "int8")
        )
        image = res.dataset.x_test[0]
        row |= {
            "float_accuracy": base.accuracy["float_keras"],
            "pruned_accuracy": res.accuracy.get("pruned_keras"),
            "clustered_accuracy": res.accuracy.get("clustered_keras"),
            "int8_accuracy": f.record.accuracy.accuracy,
            "file": f.file,
            "other_files": {
                x.file: {"accuracy": x.record.accuracy.accuracy, "gzip_bytes": x.record.gzip_bytes}
                for x in res.export.files
                if x is not f
            },
            "bytes": f.record.bytes,
            "gzip_bytes": f.record.gzip_bytes,
            "kernel_sparsity": res.kernel_sparsity,
            "weight_sparsity": f.record.weight_sparsity,
            "latency": latency_us(f.data, image),
            "train_seconds": round(train_s, 1),  # shared by the points of one (arch, epochs)
            "point_seconds": round(wall, 1),  # sparsity 0: the training run; else prune+export
            "parameters": int((base.models.get("trained") or base.models["loaded"]).count_params()),
        }
        row["meets_goal"] = (
            row["int8_accuracy"] >= GOAL_ACCURACY and row["gzip_bytes"] <= GOAL_GZIP_BYTES
        )
        print(
            f"{row['point']}: float {row['float_accuracy']:.4f} pruned "
            f"{row['pruned_accuracy'] or float('nan'):.4f} int8 {row['int8_accuracy']:.4f} "
            f"{row['bytes']} B gzip {row['gzip_bytes']} B p50 {row['latency']['p50_us']} us "
            f"{row['point_seconds']} s",
            flush=True,
        )
        rows.append(row)
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
                    f"sp{r['sparsity']:g}",
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
        ax.axvline(GOAL_GZIP_BYTES / 1024, color="g", lw=0.8, ls=":", label="goal (92.5%, 64 KB)")
        ax.set_xlabel("int8 .tflite, gzip -9 (KB)")
        ax.set_ylabel("int8 test accuracy, 10k images (%)")
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
        rows, png, f"edgekit int8 Fashion-MNIST, seed {report['seed']}, {report['machine']['cpu']}"
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
        metavar="ARCH@SPARSITY",
        help="run only these points of the list (repeatable), e.g. cnn_gap@0.75",
    )
    ap.add_argument("--seed", type=int, default=42, help="seed of data, training and pruning")
    ap.add_argument(
        "--trained",
        type=Path,
        default=None,
        help="a *_trained.keras an earlier run saved: prune it instead of training",
    )
    ap.add_argument("--out", type=Path, default=None, help="JSON path (PNG next to it)")
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
        "seed": args.seed,
        "machine": machine_info(),
        "versions": {
            "tensorflow": tf.__version__,
            "tf_keras": keras.__version__,
            "tfmot": getattr(tfmot, "__version__", "unknown"),
            "runtime": f"{rt.name} {rt.version}",
        },
        "cnn_gap_stages": [list(s) for s in GAP_STAGES],
        "goal": {"int8_accuracy": GOAL_ACCURACY, "gzip_bytes": GOAL_GZIP_BYTES},
        "notes": {
            "int8_accuracy": "LiteRT on the full 10,000-image test set (export manifest)",
            "gzip_bytes": "gzip -9 of the .tflite (edgekit.device.modelfile.gzip_size)",
            "latency": f"in-process, 1 thread, XNNPACK, batch 1, {LATENCY_WARMUP} warm-up then "
            f"{LATENCY_RUNS} timed invokes (perf_counter_ns)",
            "train_seconds": "one training per (arch, epochs), shared by its points",
            "pareto": "no other point has >= accuracy at <= gzip bytes",
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

    with tempfile.TemporaryDirectory() as tmp:
        rows = run_points(points, args.seed, Path(tmp), on_row=write, trained_model=args.trained)
    png = out.with_suffix(".png")
    plot(rows, png, f"edgekit int8 Fashion-MNIST, seed {args.seed}, {report['machine']['cpu']}")
    print(f"wrote {out} and {png}; meets the goal: {report['meets_goal'] or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

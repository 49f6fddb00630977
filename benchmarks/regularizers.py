"""Every regularizer and preset of the guidance on Fashion-MNIST, and MC dropout N = 1..100.

    python benchmarks/regularizers.py --quick   # 20,000 training images, 5 epochs, 3 pruning
    python benchmarks/regularizers.py           # 55,000 images, 20 epochs (early stopping), 8
    -> benchmarks/results/regularizers.json and regularizers.md (the Markdown is also printed)

Each setting is edgekit's pipeline (run_pipeline) on the MLP 784-300-100-10, with ONE change
from the baseline (TrainConfig defaults, which are the `fast` preset: He init, ReLU, batch norm,
L1 1e-5, Adam, cosine decay); each preset is `build_config(preset=P)`. Every run is pruned to
80% (TF-MOT, also for the presets that do not prune, to measure what pruning does to them) and
exports float32 and int8 files, gated at 100 points so nothing measured is refused. Per setting:
test accuracy (the full 10,000 images) of the float Keras model, of the pruned model and of
the int8 file made from it, plus the int8 file of the unpruned model (a preset that does not
prune ships that one), weight sparsity and gzipped size of the int8 file, the ops an int8 file
keeps in float (ELU), and the int8 file's p50.

MC dropout: the `dropout 0.2` setting also exports <stem>_mcN_float32/int8.tflite files for
N = 1, 5, 10, 30, 100 (fixed masks); their mean's accuracy, ECE (15 bins) and NLL are compared
with the deterministic float32 and int8 files of the same run (edgekit.device.bench.uncertainty).

Latency: ONE `edgekit.device.bench.run_bench` call over every int8 file and every MC file (one child
process per file, batch 1, 1 thread, XNNPACK, interleaved rounds, data=None), so the ratio
MC N=10 int8 / deterministic int8 comes from one run. Identical settings (l1 1e-5 = baseline
= preset fast) are run once and listed with `same_as`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
MC_SAMPLES = (1, 5, 10, 30, 100)
MC_SETTING = "dropout 0.2"
TARGET_SPARSITY = 0.8
# The floors for the MC N=10 int8 file against the deterministic int8 file.
MC_MAX_P50_RATIO = 3.0
MC_MIN_ACCURACY_DELTA_POINTS = -0.3
# Quick mode: fewer training images and epochs; the test set is always the full 10,000.
QUICK = {"train_samples": 20_000, "epochs": 5, "prune_epochs": 3}

# (name, TrainConfig changes from the baseline, what the guidance says about it)
REGULARIZERS: list[tuple[str, dict[str, Any], str]] = [
    ("baseline", {}, "edgekit's fast defaults: he, relu, BN, l1 1e-5, adam, cosine"),
    ("no regularization", {"l1": 0.0}, "control: the baseline without L1"),
    ("l1 1e-5", {"l1": 1e-5}, "L1 for sparse models (pruning)"),
    ("l2 1e-4", {"l1": 0.0, "l2": 1e-4}, "L2 (weight decay) as the default regularizer"),
    ("l1_l2 1e-5,1e-4", {"l1": 1e-5, "l2": 1e-4}, "both"),
    ("dropout 0.2", {"dropout": 0.2}, "dropout on the top hidden layer"),
    ("max_norm 1", {"max_norm": 1.0}, "max-norm constraint on hidden kernels"),
    ("elu", {"activation": "elu"}, "ELU, the default configuration's activation"),
    (
        "selu+lecun+alpha dropout 0.1",
        {"activation": "selu", "init": "lecun", "alpha_dropout": 0.1, "batch_norm": False},
        "self-normalizing (BN off: SELU replaces it)",
    ),
    ("leaky_relu", {"activation": "leaky_relu"}, "a fast activation"),
    ("nadam", {"optimizer": "nadam"}, "Nadam"),
    ("momentum", {"optimizer": "momentum"}, "SGD, Nesterov momentum 0.9, at the same lr 1e-3"),
    ("1cycle", {"lr_schedule": "1cycle"}, "1cycle schedule, peak lr 1e-3"),
    ("no batch norm", {"batch_norm": False}, "BN off"),
]
PRESET_NAMES = ("default", "self-normalizing", "sparse", "fast")


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def run_setting(
    name: str, train: Any, data_cfg: Any, prune_epochs: int | None, mc: tuple[int, ...], root: Path
) -> dict[str, Any]:
    """One pipeline run (pruned to 80%, float32 + int8) plus the int8 file of the unpruned model."""
    from edgekit.core.config import ExportConfig, PipelineConfig, PruneConfig
    from edgekit.device.modelfile import gzip_size
    from edgekit.device.opcheck import float_ops
    from edgekit.device.runtime import evaluate
    from edgekit.workstation.export import convert, recipe_for
    from edgekit.workstation.pipeline import run_pipeline
    from edgekit.workstation.train import keras_accuracy

    out = root / slug(name)
    config = PipelineConfig(
        data=data_cfg,
        train=train,
        prune=PruneConfig(target_sparsity=TARGET_SPARSITY, epochs=prune_epochs, seed=train.seed),
        export=ExportConfig(
            precisions=("float32", "int8"),
            calibration_samples=500,
            mc_samples=mc,
            max_accuracy_drop=100.0,
            name=slug(name),
        ),
        output_dir=str(out),
    )
    t0 = time.perf_counter()
    result = run_pipeline(config, progress=lambda _m: None)
    wall = time.perf_counter() - t0
    data, acc = result.dataset, result.accuracy
    files = {f.file: f for f in result.export.files}
    int8 = files[f"{slug(name)}_int8.tflite"]
    trained = result.models["trained"]
    # The unpruned model must be untouched by pruning (prune_model clones it): check, then
    # make the int8 file a preset without pruning ships.
    trained_acc = keras_accuracy(trained, data.x_test, data.y_test)
    blob = convert(trained, recipe_for("int8"), data.x_train, 500, data_cfg.seed)
    unpruned = evaluate(blob, data.x_test, data.y_test)
    row = {
        "setting": name,
        "train": _train_dict(train),
        "epochs_trained": result.info.get("epochs_trained"),
        "float_accuracy": acc["float_keras"],
        "pruned_accuracy": acc["pruned_keras"],
        "int8_accuracy": acc["tflite_int8"],
        "float32_file_accuracy": acc["tflite_float32"],
        "int8_unpruned_accuracy": unpruned.accuracy,
        "unpruned_model_rechecked_accuracy": trained_acc,
        "kernel_sparsity": result.kernel_sparsity,
        "int8_weight_sparsity": int8.record.weight_sparsity,
        "int8_bytes": int8.record.bytes,
        "int8_gzip_bytes": int8.record.gzip_bytes,
        "int8_unpruned_gzip_bytes": gzip_size(blob),
        "int8_float_ops": int8.record.variant.get("float_ops", []),
        "int8_unpruned_float_ops": float_ops(blob),
        "int8_file": str(out / int8.file),
        "stage_seconds": result.stage_seconds,
        "wall_seconds": round(wall, 1),
    }
    if result.export.rejected:  # gated at 100 points: only files that failed to load or run
        row["files_left_out"] = [r.to_dict() for r in result.export.rejected]
    if mc:
        row["mc_files"] = {f.file: str(out / f.file) for f in result.export.files}
        row["mc_built_here"] = build_left_out_mc(result, config, out, row["mc_files"])
        row["test"] = (data.x_test, data.y_test)
    return row


def build_left_out_mc(result: Any, config: Any, out: Path, files: dict[str, str]) -> list[str]:
    """Make the MC files export left out for "lost the zeros" with export's own calls.

    Export's zeros gate counts the fixed masks (N x units constants, 1/(1-rate) or 0) as
    weights: at N=100 they lower an 80%-sparse file's weight sparsity to 0.778 and the file is
    refused. The same build_mc_model + convert_mc calls on the same folded model, calibration
    data and seed make the file here; N=30 (which export wrote) is rebuilt too and must come
    out byte-identical, or the benchmark stops.
    """
    from edgekit.workstation.export.mc import build_mc_model, convert_mc

    model, x_train = result.models["folded"], result.dataset.x_train
    seed, samples = config.export.calibration_seed, config.export.calibration_samples
    refused = {r.file: r.reason for r in result.export.rejected}
    stem, built = config.export.name, []
    for name, reason in refused.items():
        if not (name.startswith(f"{stem}_mc") and reason.startswith("lost the zeros")):
            continue
        n, precision = name[len(stem) + 3 : -len(".tflite")].split("_", 1)
        blob = convert_mc(
            build_mc_model(model, int(n), config.export.mc_masks, seed),
            precision,
            x_train,
            samples,
            seed,
        )
        (out / name).write_bytes(blob)
        files[name] = str(out / name)
        built.append(name)
    if built:  # the same calls must give export's own file where export wrote one
        check = f"{stem}_mc30_float32.tflite"
        blob = convert_mc(
            build_mc_model(model, 30, config.export.mc_masks, seed),
            "float32",
            x_train,
            samples,
            seed,
        )
        if check in files and blob != Path(files[check]).read_bytes():
            raise SystemExit(f"rebuilt {check} differs from export's: the workaround is not valid")
    return built


def _train_dict(train: Any) -> dict[str, Any]:
    from edgekit.core.config import to_dict

    return dict(to_dict(train))


def mc_rows(files: dict[str, str], stem: str, x: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    """Accuracy, ECE, NLL of the deterministic files and of each MC file (against them)."""
    from edgekit.device.bench.uncertainty import compare_uncertainty
    from edgekit.device.mc import predict_mc
    from edgekit.device.runtime import load_interpreter, predict

    det = {
        p: predict(load_interpreter(files[f"{stem}_{p}.tflite"]), x) for p in ("float32", "int8")
    }
    rows = []
    for p in ("float32", "int8"):
        m = compare_uncertainty(det[p], det[p], y).deterministic
        rows.append(
            {
                "file": f"{stem}_{p}.tflite",
                "samples": 0,
                "precision": p,
                "path": files[f"{stem}_{p}.tflite"],
                **_metrics(m),
                "mean_confidence": float(det[p].max(-1).mean()),
            }
        )
    for n in MC_SAMPLES:
        for p in ("float32", "int8"):
            name = f"{stem}_mc{n}_{p}.tflite"
            if name not in files:  # left out by export: the row's files_left_out says why
                rows.append({"file": name, "samples": n, "precision": p, "left_out": True})
                continue
            mean = predict_mc(files[name], x).mean
            c = compare_uncertainty(mean, det[p], y)
            d = c.to_dict()
            rows.append(
                {
                    "file": name,
                    "samples": n,
                    "precision": p,
                    "path": files[name],
                    **_metrics(c.mc),
                    "mean_confidence": float(mean.max(-1).mean()),
                    "accuracy_delta_points": 100 * d["accuracy_delta"],
                    "ece_delta": d["ece_delta"],
                    "nll_delta": d["nll_delta"],
                    "ece_lower": c.ece_lower,
                    "nll_lower": c.nll_lower,
                }
            )
    return rows


def _metrics(m: Any) -> dict[str, Any]:
    d = m.to_dict()
    return {
        "accuracy": d["accuracy"],
        "ece": d["ece"],
        "nll": d["nll"],
        "risk_coverage": d["risk_coverage"],
    }


def bench_p50(paths: list[str], min_time_s: float, rounds: int) -> tuple[dict[str, Any], Any]:
    """p50 (us) of every file, one run_bench call: batch 1, 1 thread, XNNPACK, no data."""
    from edgekit.device.bench import BenchConfig, run_bench

    config = BenchConfig(
        threads=(1,), xnnpack=True, data=None, min_time_s=min_time_s, rounds=rounds
    )
    result = run_bench(paths, config)
    by_path = {}
    for r in result.rows:
        by_path[str(Path(r.path).resolve())] = {
            "p50_us": r.latency.p50_us if r.latency else None,
            "p90_us": r.latency.p90_us if r.latency else None,
            "runs": r.latency.runs if r.latency else None,
            "round_p50_us": r.round_p50_us,
            "round_spread": r.round_spread,
            "error": r.error,
        }
    return by_path, result


def p50_of(lat: dict[str, Any], path: str) -> float | None:
    return lat.get(str(Path(path).resolve()), {}).get("p50_us")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="20,000 training images, 5 epochs, 3 pruning epochs"
    )
    ap.add_argument("--only", default=None, help="comma-separated setting/preset names")
    ap.add_argument(
        "--noise-seeds",
        default="1,2",
        help="extra seeds the baseline is rerun with (seed noise); '' for none",
    )
    ap.add_argument("--bench-seconds", type=float, default=2.0, help="timed seconds per file")
    ap.add_argument("--bench-rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS / "regularizers.json")
    args = ap.parse_args()
    t_start = time.perf_counter()

    from edgekit.core.build import build_config
    from edgekit.core.config import DataConfig, TrainConfig
    from edgekit.device.bench import machine_info

    epochs = QUICK["epochs"] if args.quick else None
    prune_epochs = QUICK["prune_epochs"] if args.quick else None
    train_samples = QUICK["train_samples"] if args.quick else None
    base = TrainConfig(epochs=epochs)
    jobs: list[tuple[str, str, Any, str]] = []  # (kind, name, TrainConfig, note)
    for name, change, note in REGULARIZERS:
        jobs.append(("regularizer", name, dataclasses.replace(base, **change), note))
    preset_prunes = {}
    for name in PRESET_NAMES:
        built = build_config({"epochs": epochs}, preset=name)
        train, prunes = built.train, built.prune is not None
        preset_prunes[name] = prunes
        jobs.append(("preset", name, train, f"preset {name} (prunes: {prunes})"))
    seeds = [int(s) for s in args.noise_seeds.split(",") if s.strip()]
    for s in seeds:
        jobs.append(
            (
                "seed",
                f"baseline seed {s}",
                dataclasses.replace(base, seed=s),
                "seed noise of the baseline",
            )
        )
    if args.only:
        wanted = {w.strip() for w in args.only.split(",")}
        jobs = [j for j in jobs if j[1] in wanted]

    rows: list[dict[str, Any]] = []
    done: dict[str, dict[str, Any]] = {}  # TrainConfig (as JSON) -> the row that measured it
    mc_source: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="edgekit-regbench-") as tmp:
        root = Path(tmp)
        for kind, name, train, note in jobs:
            key = json.dumps(_train_dict(train), sort_keys=True)
            seed = train.seed
            data_cfg = DataConfig(train_samples=train_samples, seed=seed)
            if key in done:
                first = done[key]
                row = {k: v for k, v in first.items() if k not in ("mc_files", "test")}
                row |= {"setting": name, "same_as": first["setting"]}
            else:
                mc = MC_SAMPLES if name == MC_SETTING else ()
                print(f"[{time.perf_counter() - t_start:6.0f} s] {kind} {name}", file=sys.stderr)
                row = run_setting(name, train, data_cfg, prune_epochs, mc, root)
                done[key] = row
                if mc:
                    mc_source = row
            row |= {"kind": kind, "note": note}
            if kind == "preset":
                row["preset_prunes"] = preset_prunes[name]
            rows.append(row)

        mc: list[dict[str, Any]] = []
        if mc_source is not None:
            x, y = mc_source.pop("test")
            mc = mc_rows(mc_source.pop("mc_files"), slug(MC_SETTING), x, y)
        print(f"[{time.perf_counter() - t_start:6.0f} s] bench", file=sys.stderr)
        paths = sorted({r["int8_file"] for r in rows} | {r["path"] for r in mc if "path" in r})
        lat, bench = bench_p50(paths, args.bench_seconds, args.bench_rounds)
        for r in rows:
            r["int8_p50_us"] = p50_of(lat, r["int8_file"])
            r["int8_file"] = Path(r["int8_file"]).name
        for r in mc:
            if "path" in r:
                r["p50_us"] = p50_of(lat, r.pop("path"))
        for r in rows:
            r.pop("mc_files", None)
            r.pop("test", None)

    report = build_report(
        args,
        rows,
        mc,
        lat,
        bench,
        machine_info(),
        t_start,
        {"train_samples": train_samples, "epochs": epochs, "prune_epochs": prune_epochs},
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)
    return 0


def build_report(
    args: Any,
    rows: list[dict[str, Any]],
    mc: list[dict[str, Any]],
    lat: dict[str, Any],
    bench: Any,
    machine: dict[str, Any],
    t_start: float,
    budget: dict[str, Any],
) -> dict[str, Any]:
    floors: dict[str, Any] = {}
    by = {r["file"]: r for r in mc}
    stem = slug(MC_SETTING)
    det8, mc8 = by.get(f"{stem}_int8.tflite"), by.get(f"{stem}_mc10_int8.tflite")
    if det8 and mc8 and det8.get("p50_us") and mc8.get("p50_us"):
        ratio = mc8["p50_us"] / det8["p50_us"]
        delta = 100 * (mc8["accuracy"] - det8["accuracy"])
        floors = {
            "mc10_int8_p50_us": mc8["p50_us"],
            "deterministic_int8_p50_us": det8["p50_us"],
            "p50_ratio": ratio,
            "p50_ratio_max": MC_MAX_P50_RATIO,
            "p50_ratio_ok": ratio <= MC_MAX_P50_RATIO,
            "accuracy_delta_points": delta,
            "accuracy_delta_min": MC_MIN_ACCURACY_DELTA_POINTS,
            "accuracy_ok": delta >= MC_MIN_ACCURACY_DELTA_POINTS,
            "ece_lower_than_deterministic_int8": mc8["ece_lower"],
            "nll_lower_than_deterministic_int8": mc8["nll_lower"],
        }
    quick = args.quick
    return {
        "benchmark": "regularizers",
        "command": " ".join(["python", *sys.argv]),
        "mode": "quick" if quick else "full",
        "budget": {
            "train_samples": budget["train_samples"] or "all 55,000 (60,000 - 5,000 validation)",
            "validation_samples": 5000,
            "test_samples": 10_000,
            "train_epochs": budget["epochs"] or "20 (default; early stopping, patience 8)",
            "prune_epochs": budget["prune_epochs"] or "8 (the mlp default)",
            "target_sparsity": TARGET_SPARSITY,
            "model": "MLP 784-300-100-10 (edgekit build_model), batch 128, lr 1e-3",
            "calibration_samples": 500,
        },
        "latency": {
            "how": "edgekit.device.bench.run_bench over all files at once: "
            "one child process per file, "
            "batch 1, 1 thread, XNNPACK, interleaved rounds, BenchConfig(data=None)",
            "min_time_s": args.bench_seconds,
            "rounds": args.bench_rounds,
            "rounds_summary": bench.rounds,
            "bench_seconds": round(bench.duration_s, 1),
            "note": "2 cores shared with other jobs: p50s carry that noise (see round spreads)",
        },
        "machine": machine,
        "accuracy_notes": {
            "float_accuracy": "trained Keras model, full test set",
            "pruned_accuracy": "after TF-MOT pruning to 80% + fine-tuning (Keras)",
            "int8_accuracy": "int8 file of the pruned, BN-folded model (LiteRT)",
            "int8_unpruned_accuracy": "int8 file of the trained model before pruning (LiteRT)",
        },
        "rows": rows,
        "mc_dropout": {
            "setting": MC_SETTING,
            "samples": list(MC_SAMPLES),
            "masks": "fixed",
            "model": "the dropout 0.2 row's model (pruned 80%, BN folded), dropout after the top "
            "hidden layer",
            "rows": mc,
            "floors_n10_int8": floors,
        },
        "wall_seconds": round(time.perf_counter() - t_start, 1),
    }


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def markdown(report: dict[str, Any]) -> str:
    b = report["budget"]
    lines = [
        f"## Regularizers and presets on Fashion-MNIST ({report['mode']} mode)",
        "",
        f"MLP 784-300-100-10; training images: {b['train_samples']}; epochs: "
        f"{b['train_epochs']}; pruning epochs: {b['prune_epochs']}; test: 10,000 images. "
        f"CPU: {report['machine'].get('cpu')}. p50: int8 file, batch 1, 1 thread, XNNPACK "
        "(edgekit bench, one run over all files). Accuracy in %.",
        "",
        "| setting | float | pruned 80% | int8 | int8 unpruned | sparsity | int8 gz KB "
        "| p50 us | float ops in int8 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in report["rows"]:
        name = r["setting"] + (f" (= {r['same_as']})" if r.get("same_as") else "")
        if r.get("kind") == "preset":
            name = f"preset {name}" + ("" if r.get("preset_prunes") else " (does not prune)")
        p50 = r.get("int8_p50_us")
        ops = ", ".join(sorted(set(r["int8_float_ops"]))) or "-"
        lines.append(
            f"| {name} | {_pct(r['float_accuracy'])} | {_pct(r['pruned_accuracy'])} "
            f"| {_pct(r['int8_accuracy'])} | {_pct(r['int8_unpruned_accuracy'])} "
            f"| {r['int8_weight_sparsity']:.3f} | {r['int8_gzip_bytes'] / 1000:.1f} "
            f"| {'-' if p50 is None else f'{p50:.2f}'} | {ops} |"
        )
    mc = report["mc_dropout"]
    if mc["rows"]:
        lines += [
            "",
            f"## MC dropout ({mc['setting']}, fixed masks) against the deterministic files",
            "",
            "| file | N | accuracy | vs det. (points) | mean top prob. | ECE | NLL | p50 us |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in mc["rows"]:
            if r.get("left_out"):
                lines.append(
                    f"| {r['file']} | {r['samples']} | left out by export (see JSON) | | | | | |"
                )
                continue
            delta = r.get("accuracy_delta_points")
            p50 = r.get("p50_us")
            lines.append(
                f"| {r['file']} | {r['samples'] or 'det.'} | {_pct(r['accuracy'])} "
                f"| {'-' if delta is None else f'{delta:+.2f}'} "
                f"| {100 * r['mean_confidence']:.2f} | {r['ece']:.4f} "
                f"| {r['nll']:.4f} | {'-' if p50 is None else f'{p50:.2f}'} |"
            )
        f = mc["floors_n10_int8"]
        if f:
            lines += [
                "",
                f"MC N=10 int8 vs deterministic int8, one bench run: p50 ratio "
                f"{f['p50_ratio']:.2f}x (floor <= {f['p50_ratio_max']:g}x: "
                f"{'PASS' if f['p50_ratio_ok'] else 'FAIL'}), accuracy "
                f"{f['accuracy_delta_points']:+.2f} points (floor >= "
                f"{f['accuracy_delta_min']:g}: {'PASS' if f['accuracy_ok'] else 'FAIL'}); "
                f"ECE {'lower' if f['ece_lower_than_deterministic_int8'] else 'NOT lower'}, "
                f"NLL {'lower' if f['nll_lower_than_deterministic_int8'] else 'NOT lower'} "
                "than the deterministic int8 file's.",
            ]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""Quantization that keeps accuracy, full size: QAT, clustering, int4 and the accuracy budget.

    python benchmarks/quantization.py   # -> benchmarks/results/quantization.json

Three runs on the full Fashion-MNIST (10,000 test images), seed 42:
  1. the default MLP (300-100, 80% pruning) with --qat: plain int8 vs QAT int8, zeros per kernel;
  2. the same with --clusters 16: gzipped int8 against (1)'s plain int8;
  3. a self-normalizing MLP (SELU, LeCun normal, 784-300-100-10): plain int8, the per-layer
     report's worst layers, float fallback auto:1/auto:2, int4, and the budget search at 0.5.
Every file is measured by export itself (LiteRT, full test set); p50 comes from `edgekit bench`'s
measurement (1 thread, XNNPACK) run on the written folders.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def _files(result: Any) -> dict[str, Any]:
    return {
        r["file"]: {
            k: r[k]
            for k in (
                "precision",
                "bytes",
                "gzip_bytes",
                "weight_sparsity",
                "accuracy",
                "agreement",
                "accuracy_drop_points",
            )
        }
        for r in result.rows()
    }


def _p50(folder: Path) -> dict[str, float]:
    from edgekit.device.bench import BenchConfig, run_bench

    res = run_bench(
        [str(folder)], BenchConfig(threads=(1,), data=None, min_runs=300, min_time_s=0.5, rounds=3)
    )
    return {r.file: round(r.latency.p50_us, 2) for r in res.rows if r.ok and r.latency}


def _kernel_sparsity(path: Path) -> dict[str, float]:
    from edgekit.device.modelfile import read_model_file

    return {w.name.split(";")[0]: round(w.sparsity, 4) for w in read_model_file(path).weights}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "quantization.json")
    args = ap.parse_args()
    from edgekit.core.config import (
        ClusterConfig,
        ExportConfig,
        PipelineConfig,
        PruneConfig,
        QatConfig,
    )
    from edgekit.device.bench import machine_info
    from edgekit.workstation.pipeline import run_pipeline

    report: dict[str, Any] = {
        "benchmark": "quantization",
        "command": " ".join(["python", *sys.argv]),
        "machine": machine_info(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        # 1. QAT on the default pruned MLP.
        t0 = time.perf_counter()
        out = Path(tmp) / "qat"
        cfg = PipelineConfig(
            prune=PruneConfig(),
            export=ExportConfig(precisions=("float32", "int8")),
            qat=QatConfig(),
            output_dir=str(out),
        )
        res = run_pipeline(cfg)
        files = _files(res.export)
        p50 = _p50(out)
        report["qat"] = {
            "accuracy": res.accuracy,
            "files": files,
            "p50_us": p50,
            "kernel_sparsity_int8_qat": _kernel_sparsity(
                out / "fashion_mnist_mlp_sp80_int8_qat.tflite"
            ),
            "qat_vs_pruned_keras_points": round(
                100
                * (
                    files["fashion_mnist_mlp_sp80_int8_qat.tflite"]["accuracy"]
                    - res.accuracy["pruned_keras"]
                ),
                3,
            ),
            "wall_seconds": round(time.perf_counter() - t0, 1),
        }
        # 2. Clustering after pruning.
        t0 = time.perf_counter()
        out = Path(tmp) / "clusters"
        cfg = PipelineConfig(
            prune=PruneConfig(),
            export=ExportConfig(precisions=("float32", "int8")),
            cluster=ClusterConfig(clusters=16),
            output_dir=str(out),
        )
        res = run_pipeline(cfg)
        files = _files(res.export)
        int8 = files["fashion_mnist_mlp_sp80_int8.tflite"]
        report["clusters16"] = {
            "accuracy": res.accuracy,
            "files": files,
            "p50_us": _p50(out),
            "unique_values": res.info.get("clustering", {}).get("unique_values"),
            "int8_vs_pruned_keras_points": round(
                100 * (int8["accuracy"] - res.accuracy["pruned_keras"]), 3
            ),
            "wall_seconds": round(time.perf_counter() - t0, 1),
        }
        # 3. A self-normalizing MLP whose plain int8 loses many points.
        report["selu"] = _selu(Path(tmp) / "selu")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("qat", "clusters16")}, indent=1)[:3000])
    print(json.dumps(report["selu"], indent=1)[:3000])
    print(f"wrote {args.out}")
    return 0


def _selu(folder: Path) -> dict[str, Any]:
    from edgekit.core.config import DataConfig, ExportConfig, Precision
    from edgekit.core.data import load_dataset
    from edgekit.workstation._keras import keras, set_determinism
    from edgekit.workstation.export import export_tflite
    from edgekit.workstation.export.layer_debug import debug_layers

    t0 = time.perf_counter()
    set_determinism(42)
    data = load_dataset(DataConfig())
    init = keras.initializers.LecunNormal(seed=42)
    model = keras.Sequential(
        [
            keras.layers.Input(data.input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(300, activation="selu", kernel_initializer=init, name="hidden1"),
            keras.layers.Dense(100, activation="selu", kernel_initializer=init, name="hidden2"),
            keras.layers.Dense(10, activation="softmax", name="output"),
        ]
    )
    model.compile(keras.optimizers.Nadam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(
        data.x_train,
        data.y_train,
        epochs=10,
        batch_size=128,
        verbose=0,
        validation_data=(data.x_val, data.y_val),
    )
    worst = [e.to_dict() for e in debug_layers(model, data.x_train)[:5]]
    out: dict[str, Any] = {
        "train_seconds": round(time.perf_counter() - t0, 1),
        "worst_layers": worst,
    }
    every = ExportConfig(
        precisions=tuple(Precision(p) for p in ("float32", "float16", "int8", "int4", "dynamic")),
        max_accuracy_drop=100.0,
    )
    res = export_tflite(model, data, every, folder / "all", "selu")
    out["all_variants"] = _files(res)
    out["p50_us"] = _p50(folder / "all")
    for k in (1, 2):
        cfg = ExportConfig(
            precisions=("float32",), float_layers=f"auto:{k}", max_accuracy_drop=100.0
        )
        res = export_tflite(model, data, cfg, folder / f"fallback{k}", "selu")
        out[f"fallback_auto{k}"] = _files(res)
        out[f"fallback_auto{k}_p50_us"] = _p50(folder / f"fallback{k}")
    t1 = time.perf_counter()
    budget = ExportConfig(max_accuracy_drop=0.5, search=True)
    res = export_tflite(model, data, budget, folder / "budget", "selu")
    out["budget_0.5"] = {
        "files": _files(res),
        "recommended": res.recommended,
        "rejected": [r.to_dict() for r in res.rejected],
        "seconds": round(time.perf_counter() - t1, 1),
    }
    out["float_keras_accuracy"] = res.keras_accuracy
    return out


if __name__ == "__main__":
    sys.exit(main())

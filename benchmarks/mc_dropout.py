"""MC-dropout files (edgekit.workstation.export.mc) against the deterministic file: latency,
accuracy, ECE, NLL.

    python benchmarks/mc_dropout.py [--samples 1,10,30] [--epochs 8]   # -> results/mc_dropout.json

Trains the MLP 784-300-100-10 with Dropout(0.2) after each hidden layer on the full Fashion-MNIST
training set, exports the deterministic float32 and int8 files and, for each N, MC-dropout
files with N fixed masks in float32 and int8. For each file: bytes, p50 latency at batch 1,
one thread, XNNPACK (in process: the median of 3 rounds, each the median of `--invokes`
invokes after 200 warm-up ones), and on the 10,000 test images accuracy, expected calibration
error (15 bins), NLL and the risk-coverage table (certainty: top mean probability).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"


def p50_us(data: bytes, x: np.ndarray, invokes: int) -> float:
    from edgekit.device.runtime import input_details, load_interpreter, quantize

    interpreter = load_interpreter(data, num_threads=1)
    inp = input_details(interpreter)[0]
    interpreter.set_tensor(inp.index, quantize(x[:1], inp))
    rounds = []
    for _ in range(3):
        for _ in range(200):
            interpreter.invoke()
        times = []
        for _ in range(invokes):
            t0 = time.perf_counter_ns()
            interpreter.invoke()
            times.append(time.perf_counter_ns() - t0)
        rounds.append(float(np.median(times)) / 1e3)
    return float(np.median(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default="1,10,30", help="N values, comma-separated")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--invokes", type=int, default=500)
    parser.add_argument("--output", default=str(RESULTS / "mc_dropout.json"))
    args = parser.parse_args()
    from edgekit.core.config import DataConfig
    from edgekit.core.data import load_dataset
    from edgekit.core.recipes import recipe_for
    from edgekit.device.bench.machine import cpu_model
    from edgekit.device.bench.uncertainty import compare_uncertainty
    from edgekit.device.mc import predict_mc
    from edgekit.device.runtime import load_interpreter, predict
    from edgekit.workstation._keras import keras, set_determinism
    from edgekit.workstation.export.converter import convert
    from edgekit.workstation.export.mc import build_mc_model, convert_mc

    data = load_dataset(DataConfig())
    x_train = np.asarray(data.x_train)
    set_determinism(42)
    model = keras.Sequential(
        [
            keras.layers.Input(data.input_shape, name="image"),
            keras.layers.Flatten(),
            keras.layers.Dense(300, activation="relu", kernel_initializer="he_normal"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(100, activation="relu", kernel_initializer="he_normal"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(data.num_classes, activation="softmax"),
        ],
        name="mlp_dropout",
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.time()
    model.fit(
        x_train,
        data.y_train,
        epochs=args.epochs,
        batch_size=64,
        verbose=0,
        validation_data=(np.asarray(data.x_val), data.y_val),
    )
    train_s = time.time() - t0
    x, y = data.x_test, data.y_test
    det = {p: convert(model, recipe_for(p), x_train, 500, 42) for p in ("float32", "int8")}
    det_probs = {p: predict(load_interpreter(b), x) for p, b in det.items()}
    rows: list[dict[str, Any]] = []
    for p, b in det.items():
        m = compare_uncertainty(det_probs[p], det_probs[p], y).deterministic
        rows.append(
            {
                "file": f"deterministic {p}",
                "samples": 0,
                "precision": p,
                "bytes": len(b),
                "p50_us": p50_us(b, x, args.invokes),
                **m.to_dict(),
            }
        )
    for n in [int(s) for s in args.samples.split(",")]:
        mc_model = build_mc_model(model, n)
        for p in ("float32", "int8"):
            b = convert_mc(mc_model, p, x_train, 500, 42)
            got = predict_mc(b, x)
            c = compare_uncertainty(got.mean, det_probs[p], y)
            rows.append(
                {
                    "file": f"mc N={n} {p}",
                    "samples": n,
                    "precision": p,
                    "bytes": len(b),
                    "p50_us": p50_us(b, x, args.invokes),
                    **c.mc.to_dict(),
                    "ece_delta": c.to_dict()["ece_delta"],
                    "nll_delta": c.to_dict()["nll_delta"],
                }
            )
    out = {
        "machine": {"cpu": cpu_model(), "python": platform.python_version()},
        "train_seconds": train_s,
        "keras_test_accuracy": float(model.evaluate(x, y, verbose=0)[1]),
        "rows": rows,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=2))
    print(f"{'file':<24}{'bytes':>9}{'p50 us':>9}{'acc':>8}{'ECE':>8}{'NLL':>8}  acc@50/80/90%")
    for r in rows:
        rc = "/".join(f"{c['accuracy']:.4f}" for c in r["risk_coverage"][:3])
        print(
            f"{r['file']:<24}{r['bytes']:>9}{r['p50_us']:>9.1f}{r['accuracy']:>8.4f}"
            f"{r['ece']:>8.4f}{r['nll']:>8.4f}  {rc}"
        )


if __name__ == "__main__":
    main()

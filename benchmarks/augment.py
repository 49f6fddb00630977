"""Does `--augment` help generalization in a short run? One `edgekit export`, with and without it.

    python benchmarks/augment.py                       # cnn, 5 epochs, full data, seed 42
    python benchmarks/augment.py --epochs 3 --arch cnn --augment flip,translate:0.1

Each run is an `edgekit export` command line, run as a user types it (one process each, the two
side by side, full Fashion-MNIST: 55,000 train, 5,000 validation, 10,000 test images; no pruning,
float32 file only, so the numbers are about training). From each run: the per-epoch training
accuracy (on the batches it trained on: augmented ones with --augment) and validation accuracy
from the progress lines, and the float Keras model's and the float32 file's test accuracy from
the manifest. The gap (last training accuracy minus test accuracy) is the overfitting measure.
One seed: differences of a few tenths of a point are within seed-to-seed noise.

Writes benchmarks/results/augment.json (or --out), with the commands, the CPU, its flags and
the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
DEFAULT_AUGMENT = "flip,translate:0.1"
EPOCH_LINE = re.compile(
    r"train epoch (\d+)/\d+: loss=([\d.]+) accuracy=([\d.]+) val_accuracy=([\d.]+)"
)


def command(out: Path, arch: str, epochs: int, seed: int, augment: str | None) -> list[str]:
    cmd = ["edgekit", "export", "--arch", arch, "--epochs", str(epochs), "--no-prune"]
    cmd += ["--precision", "float32", "--seed", str(seed), "--name", "run", "-o", str(out)]
    return cmd + (["--augment", augment] if augment else [])


def summarize(stderr: str, manifest: dict[str, Any]) -> dict[str, Any]:
    epochs = [
        {
            "epoch": int(m[1]),
            "loss": float(m[2]),
            "accuracy": float(m[3]),
            "val_accuracy": float(m[4]),
        }
        for m in EPOCH_LINE.finditer(stderr)
    ]
    test = float(manifest["keras_accuracy"])  # the (folded) float Keras model, 10k test images
    files = {f["precision"]: f for f in manifest["files"]}
    return {
        "epochs": epochs,
        "test_accuracy_float_keras": test,
        "test_accuracy_float32_file": files["float32"]["accuracy"]["accuracy"],
        "best_val_accuracy": max(e["val_accuracy"] for e in epochs),
        "last_train_accuracy": epochs[-1]["accuracy"],
        "train_test_gap_points": round(100 * (epochs[-1]["accuracy"] - test), 2),
        "train_seconds": manifest.get("stage_seconds", {}).get("train"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="cnn")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--augment", default=DEFAULT_AUGMENT)
    ap.add_argument("--out", type=Path, default=RESULTS / "augment.json")
    args = ap.parse_args(argv)

    from edgekit.core.io.files import write_json_atomic
    from edgekit.device.bench import machine_info

    load_before = os.getloadavg()
    t0 = time.time()
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cmds = {
            name: command(Path(tmp) / name, args.arch, args.epochs, args.seed, augment)
            for name, augment in (("plain", None), ("augment", args.augment))
        }
        logs = {name: Path(tmp) / f"{name}.log" for name in cmds}
        procs = {}
        for name, cmd in cmds.items():
            with logs[name].open("w") as log:
                procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            print(f"{name}: {' '.join(cmd)} (progress in {logs[name]})", flush=True)
        for name, proc in procs.items():
            proc.wait()
            output = logs[name].read_text()
            if proc.returncode != 0:
                print(output, file=sys.stderr)
                raise SystemExit(f"{name} run failed: {' '.join(cmds[name])}")
            manifest = json.loads((Path(tmp) / name / "manifest.json").read_text())
            runs[name] = {"command": " ".join(cmds[name]), **summarize(output, manifest)}
    plain, aug = runs["plain"], runs["augment"]
    report = {
        "benchmark": "augment",
        "question": "in a short run, does --augment raise test accuracy, shrink the train-test gap",
        "settings": {
            "arch": args.arch,
            "epochs": args.epochs,
            "seed": args.seed,
            "augment": args.augment,
            "data": "Fashion-MNIST, 55,000 train / 5,000 validation / 10,000 test",
        },
        "runs": runs,
        "test_accuracy_change_points": round(
            100 * (aug["test_accuracy_float_keras"] - plain["test_accuracy_float_keras"]), 2
        ),
        "gap_change_points": round(
            aug["train_test_gap_points"] - plain["train_test_gap_points"], 2
        ),
        "wall_seconds": round(time.time() - t0, 1),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "machine": machine_info(),
        "note": "one seed; the two runs ran side by side on a shared machine (wall times are "
        "not comparable); training accuracy with --augment is on augmented batches",
    }
    write_json_atomic(args.out, report)
    print(json.dumps({k: report[k] for k in ("test_accuracy_change_points", "gap_change_points")}))
    for name, run in runs.items():
        print(name, run["test_accuracy_float_keras"], run["train_test_gap_points"], run["command"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Same seed, same files? Two full default `edgekit export` runs compared byte for byte, and
what TensorFlow's op determinism costs in training time.

    python benchmarks/reproducibility.py                # -> results/reproducibility.json
    python benchmarks/reproducibility.py --skip-export  # the determinism cost only

Part 1 runs `edgekit export -o DIR` twice (full size, default seed, separate processes, one after
the other) and compares the sha256 of every file its manifest lists, and the manifests
themselves apart from the output folder each run was given.

Part 2 times `build_model` + `train_model` (the training stage alone, data already loaded) in
fresh processes with op determinism on (what edgekit always does) and off, alternating, and
records a hash of the trained weights of each run: same hash = same model. Op determinism is
process-wide and cannot be switched off once on, so every sample is its own process. "Off" is
made by marking it as already enabled in `edgekit.workstation._keras` before training starts
(edgekit has
no switch for it: a benchmark-only hack, see _TRAIN_CHILD).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
DEFAULT_OUT = RESULTS / "reproducibility.json"

# One timed training run in a fresh process; prints one JSON line.
_TRAIN_CHILD = r"""
import hashlib, json, sys, time
import numpy as np
arch, samples, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
deterministic = sys.argv[4] == "on"
import edgekit.workstation._keras as ek  # sets TF_USE_LEGACY_KERAS before TensorFlow is imported
from tensorflow.python.framework.config import is_op_determinism_enabled  # already imported
if not deterministic:
    ek._determinism_on = True  # set_determinism() then seeds only, skipping enable_op_determinism
from edgekit.core.config import DataConfig, TrainConfig
from edgekit.core.data import load_dataset
from edgekit.workstation.train import build_model, train_model
data = load_dataset(DataConfig(train_samples=samples))
config = TrainConfig(arch=arch, epochs=epochs, patience=epochs)
t0 = time.perf_counter()
model = build_model(config, data.input_shape, data.num_classes)
result = train_model(model, data, config, progress=lambda _m: None)
seconds = time.perf_counter() - t0
digest = hashlib.sha256(b"".join(np.asarray(w).tobytes() for w in model.get_weights()))
print(json.dumps({"seconds": seconds, "weights_sha256": digest.hexdigest(),
                  "op_determinism": bool(is_op_determinism_enabled()),
                  "epochs_run": result.epochs_run}))
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_twice(work: Path) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for name in ("run1", "run2"):
        out = work / name
        cmd = [sys.executable, "-m", "edgekit.cli.main", "export", "-o", str(out), "--quiet"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        manifest = json.loads((out / "manifest.json").read_text())
        listed = [*manifest["files"], manifest["keras_model"]]
        on_disk = {r["file"]: _sha256(out / r["file"]) for r in listed}
        runs.append(
            {
                "command": "edgekit export -o " + name + " --quiet",
                "seconds": round(seconds, 1),
                "sha256": {r["file"]: r["sha256"] for r in listed},
                "manifest_matches_files": on_disk == {r["file"]: r["sha256"] for r in listed},
                "manifest": manifest,
            }
        )
        print(f"{name}: {seconds:.0f} s", file=sys.stderr)
    a, b = runs
    differing = sorted(f for f in a["sha256"] if a["sha256"][f] != b["sha256"].get(f))
    for run in runs:
        run["manifest"]["config"].pop("output_dir", None)
    same_manifest = a["manifest"] == b["manifest"]
    accuracy = {f["file"]: f["accuracy"]["accuracy"] for f in a["manifest"]["files"]}
    for run in runs:
        del run["manifest"]
    return {
        "identical": not differing and same_manifest,
        "files_compared": len(a["sha256"]),
        "files_differing": differing,
        "manifests_equal_apart_from_output_dir": same_manifest,
        "accuracy": accuracy,
        "runs": runs,
    }


def determinism_cost(arch: str, samples: int, epochs: int, repeats: int) -> dict[str, Any]:
    samples_by_mode: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for rep in range(repeats):
        # Alternate which mode goes first, so drift of the machine favours neither.
        for mode in ("on", "off") if rep % 2 == 0 else ("off", "on"):
            proc = subprocess.run(
                [sys.executable, "-c", _TRAIN_CHILD, arch, str(samples), str(epochs), mode],
                capture_output=True,
                text=True,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
            )
            if proc.returncode != 0:
                raise SystemExit(f"training child failed:\n{proc.stderr}")
            sample = json.loads(proc.stdout.strip().splitlines()[-1])
            if sample["op_determinism"] != (mode == "on"):
                raise SystemExit(f"op determinism was not {mode} in the child: {sample}")
            samples_by_mode[mode].append(sample)
            print(f"{arch} determinism {mode}: {sample['seconds']:.1f} s", file=sys.stderr)
    median = {m: statistics.median(s["seconds"] for s in v) for m, v in samples_by_mode.items()}
    return {
        "arch": arch,
        "train_samples": samples,
        "epochs": epochs,
        "repeats": repeats,
        "median_seconds": {m: round(v, 2) for m, v in median.items()},
        "cost_ratio_on_over_off": round(median["on"] / median["off"], 3),
        "seconds": {m: [round(s["seconds"], 2) for s in v] for m, v in samples_by_mode.items()},
        "distinct_weights": {
            m: len({s["weights_sha256"] for s in v}) for m, v in samples_by_mode.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-export", action="store_true", help="only measure determinism cost")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per mode and arch")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)

    from edgekit.device.bench import machine_info

    report: dict[str, Any] = {
        "benchmark": "reproducibility",
        "command": " ".join(["python", *sys.argv]),
        "machine": machine_info(),
    }
    with tempfile.TemporaryDirectory(prefix="edgekit-repro-") as tmp:
        if not args.skip_export:
            report["same_seed_export"] = export_twice(Path(tmp))
    from edgekit.workstation._keras import versions

    report["versions"] = versions()
    # mlp: the default network on the full training set; cnn: conv kernels, a slice of it.
    report["determinism_cost"] = [
        determinism_cost("mlp", 55000, 3, args.repeats),
        determinism_cost("cnn", 10000, 1, args.repeats),
    ]
    report["determinism_note"] = (
        "seconds = build_model + train_model in a fresh process (data already loaded); "
        "'off' skips tf.config.experimental.enable_op_determinism, seeds stay set; "
        "distinct_weights = how many different trained models the repeats gave"
    )
    from edgekit.core.io.files import write_json_atomic

    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, report)
    same = report.get("same_seed_export", {})
    if same:
        print(
            f"same seed: {same['files_compared']} files, "
            f"{'identical' if same['identical'] else 'DIFFERENT: ' + str(same['files_differing'])}"
        )
    for cost in report["determinism_cost"]:
        print(
            f"{cost['arch']}: op determinism on {cost['median_seconds']['on']} s, off "
            f"{cost['median_seconds']['off']} s (x{cost['cost_ratio_on_over_off']}); "
            f"distinct models on/off: {cost['distinct_weights']}"
        )
    print(f"wrote {args.out}")
    return 0 if not same or same["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())

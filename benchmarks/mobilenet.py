"""Edge architectures as a user brings them, through `edgekit export --prune` and `bench`.

A Keras 3 MobileNetV2 (alpha 0.35, 96x96 RGB) on an image folder, exported with
`edgekit export model.keras --data DIR --prune`; with --arch, a Keras 3 MobileNetV3-Small (full:
hard swish, squeeze-excite), an EfficientNet-Lite-like or a ResNet-18-like net (tests/nets.py)
the same way.

    python benchmarks/mobilenet.py              # -> benchmarks/results/mobilenet.json
    python benchmarks/mobilenet.py --images 600 --epochs 1 --prune-epochs 2   # a quick look
    python benchmarks/mobilenet.py --arch resnet18 --images 1500
        # -> benchmarks/results/mobilenet_resnet18.json

1. Writes Fashion-MNIST training images, upscaled to 96x96 (bilinear) and turned RGB, as PNGs
   into DIR/<label>_<name>/ (folder names sorted in label order, so labels match).
2. Builds `keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None,
   include_top=False, pooling="avg")` behind a `Rescaling(1/127.5, offset=-1)` input and a new
   Dense head (423,018 parameters), batch norm momentum 0.9 (the application's 0.999 needs
   thousands of steps), trains it briefly with Keras 3 on the folder, saves .keras. Other
   architectures: `tests/nets.py`'s builder with Keras 3 (ARCH_OPTIONS: their widths here).
3. Runs `edgekit export model.keras --data DIR --prune --sparsity 0.5` in a child process (no
   validation or calibration option: the defaults that fit the data), recording its wall time
   and peak RSS (ru_maxrss of the child), then `edgekit bench` on the files (1 thread, XNNPACK).

Writes the CPU model and flags, the load average before and after, export time, peak memory,
file sizes, float/int8 accuracy, the pruned sparsity of every layer (and the layers left
dense, with why), and the p50 of every file. Latency on a shared machine: compare files with
each other (same run), not with other machines' figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from keras3_images import fit_and_save  # benchmarks/ is sys.path[0]

RESULTS = Path(__file__).parent / "results"
TESTS = Path(__file__).resolve().parents[1] / "tests"  # nets.py: the architectures' builders
SIZE = 96
ALPHA = 0.35
BN_MOMENTUM = 0.9
ARCHS = ("mobilenetv2", "mobilenetv3small", "efficientnet_lite", "resnet18")
# Builder options of tests/nets.py for the benchmark (the tests use tiny widths).
ARCH_OPTIONS: dict[str, dict[str, Any]] = {
    "mobilenetv3small": {"alpha": 0.75},
    "efficientnet_lite": {"width": 16},
    "resnet18": {"width": 16},
}


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def write_folder(root: Path, images: int) -> dict[str, Any]:
    """The first `images` Fashion-MNIST training images as 96x96 RGB PNGs, one folder per class
    named `<label>_<name>` (sorted order = label order)."""
    from PIL import Image

    from edgekit.core.data import FASHION_MNIST_LABELS, load_fashion_mnist_arrays

    raw, _ = load_fashion_mnist_arrays()
    x, y = raw["x_train"][:images], raw["y_train"][:images]
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        name = FASHION_MNIST_LABELS[int(label)].replace("/", "-")
        folder = root / f"{int(label)}_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        big = Image.fromarray(image).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        big.convert("RGB").save(folder / f"{i:05d}.png")
    return {"images": int(len(y)), "per_class": np.bincount(y, minlength=10).tolist()}


def train_model(folder: Path, path: Path, epochs: int, arch: str = "mobilenetv2") -> dict[str, Any]:
    """`arch` (MobileNetV2 0.35 + new head by default), trained with Keras 3 on raw 0..255
    pixels of the folder."""
    from edgekit.core.config import DataConfig
    from edgekit.core.data import load_dataset
    from edgekit.workstation._keras import import_keras3

    k3 = import_keras3()
    data = load_dataset(
        DataConfig(source=str(folder), input_shape=(SIZE, SIZE, 3), pixel_scale=1.0)
    )
    k3.utils.set_random_seed(42)
    if arch != "mobilenetv2":
        sys.path.insert(0, str(TESTS))
        from nets import BN_MOMENTUM as NETS_MOMENTUM
        from nets import build

        model = build(arch, k3, SIZE, data.num_classes, **ARCH_OPTIONS[arch])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return fit_and_save(model, data, path, epochs, batch_size=64) | {
            "builder": f"tests/nets.py {arch}({ARCH_OPTIONS[arch]})",
            "batchnorm_momentum": NETS_MOMENTUM,
        }
    inputs = k3.Input((SIZE, SIZE, 3), name="image")
    h = k3.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    base = k3.applications.MobileNetV2(
        alpha=ALPHA,
        input_shape=(SIZE, SIZE, 3),
        weights=None,
        include_top=False,
        pooling="avg",
    )
    # keras.applications' MobileNetV2 uses batch norm momentum 0.999: its moving statistics
    # need thousands of steps, and after a brief training the model scores at chance in
    # inference mode (measured: 9.5% after 2 epochs). 0.9 settles within the 80 steps trained.
    for layer in base.layers:
        if isinstance(layer, k3.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    outputs = k3.layers.Dense(data.num_classes, activation="softmax")(base(h))
    model = k3.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return fit_and_save(model, data, path, epochs, batch_size=64) | {
        "batchnorm_momentum": BN_MOMENTUM,
    }


# What each architecture is, for the JSON's "what".
DESCRIBE = {
    "mobilenetv2": "Keras 3 MobileNetV2 0.35 96x96 + new head",
    "mobilenetv3small": (
        "Keras 3 MobileNetV3Small(alpha=0.75, minimalistic=False) 96x96 + new head "
        "(hard swish, squeeze-excite: rebuilt in tf_keras from built-in layers)"
    ),
    "efficientnet_lite": (
        "Keras 3 EfficientNet-Lite-like net (tests/nets.py, width 16: MBConv, ReLU6, "
        "depthwise 3x3/5x5, no squeeze-excite) 96x96"
    ),
    "resnet18": (
        "Keras 3 ResNet-18-like net (tests/nets.py, width 16: 2-2-2-2 basic blocks, "
        "strided 1x1 shortcuts) 96x96"
    ),
}


def run_child(cmd: list[str]) -> tuple[subprocess.CompletedProcess[str], float, float | None]:
    """Run `cmd`; its wall seconds and peak RSS in MB (None if an earlier child was larger)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    return proc, seconds, (round(peak_kb / 1024, 1) if peak_kb > before else None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=ARCHS, default="mobilenetv2")
    ap.add_argument("--out", type=Path, help="default: results/mobilenet[_ARCH].json")
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=3, help="Keras 3 training epochs")
    ap.add_argument("--prune-epochs", type=int, help="default: export's own")
    args = ap.parse_args(argv)
    stem = "mobilenet" if args.arch == "mobilenetv2" else f"mobilenet_{args.arch}"
    args.out = args.out or RESULTS / f"{stem}.json"
    name = "mobilenetv2_035_96" if args.arch == "mobilenetv2" else f"{args.arch}_96"

    from edgekit.core.io.files import write_json_atomic
    from edgekit.device.bench import machine_info

    load_before = loadavg()
    with tempfile.TemporaryDirectory(prefix="edgekit-mobilenet-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        images = write_folder(root / "images", args.images)
        images["write_pngs_s"] = round(time.perf_counter() - t0, 1)
        trained = train_model(root / "images", root / "mobilenet.keras", args.epochs, args.arch)
        out = root / "out"
        export = [
            sys.executable, "-m", "edgekit.cli.main", "export", str(root / "mobilenet.keras"),
            "--data", str(root / "images"), "--prune", "--sparsity", "0.5",
            *(["--prune-epochs", str(args.prune_epochs)] if args.prune_epochs else []),
            "--name", name, "-o", str(out),
        ]  # fmt: skip
        proc, export_s, export_rss = run_child(export)
        manifest = json.loads((out / "manifest.json").read_text())
        bench_json = root / "bench.json"
        bench = [
            sys.executable, "-m", "edgekit.cli.main", "bench", str(out), "--no-accuracy",
            "--no-save", "--json", str(bench_json),
        ]  # fmt: skip
        t0 = time.perf_counter()
        bench_proc = subprocess.run(bench, capture_output=True, text=True)
        bench_s = time.perf_counter() - t0
        rows = json.loads(bench_json.read_text())["rows"] if bench_json.is_file() else []
        bench_error = None if bench_proc.returncode == 0 else bench_proc.stderr[-2000:]
    load_after = loadavg()
    run = manifest["config"]["run"]
    p50 = {r["file"]: r["latency"]["p50_us"] for r in rows if r["status"] == "ok"}
    result = {
        "what": (
            f"{DESCRIBE[args.arch]} on a Fashion-MNIST PNG folder (upscaled, "
            "RGB) -> edgekit export model.keras --data DIR --prune --sparsity 0.5 -> edgekit bench"
        ),
        "machine": machine_info(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "folder": images,
        "keras3_training": trained,
        "command": " ".join(["edgekit", *export[3:]]).replace(tmp, "$TMP"),
        **(
            {}
            if args.arch == "mobilenetv2"
            else {
                "arch": args.arch,
                "benchmark_command": " ".join(["python", "benchmarks/mobilenet.py", *sys.argv[1:]]),
                "shared_cpu": (
                    "other jobs ran on the 2 vCPUs during this run (load averages before and "
                    "after): wall times and p50s compare files of this run with each other only"
                ),
            }
        ),
        "export_wall_s": round(export_s, 1),
        "export_peak_rss_mb": export_rss,
        "sample_counts": next(
            (ln.strip() for ln in proc.stderr.splitlines() if "sample counts:" in ln), None
        ),
        "keras3_rebuild": run["source_model"]["keras3"],
        "pruning_schedule": run["pruning_schedule"],
        "kernel_sparsity": run["kernel_sparsity"],
        "pruning_skipped": run["pruning_skipped"],
        "batchnorms_folded": len(run["batchnorm_folding"]["folded"]),
        "keras_accuracy_folded": manifest["keras_accuracy"],
        "files": [
            {
                "file": f["file"],
                "precision": f["precision"],
                "bytes": f["bytes"],
                "gzip_bytes": f["gzip_bytes"],
                "weight_sparsity": f["weight_sparsity"],
                "accuracy": f["accuracy"]["accuracy"],
                "agreement_with_keras": f["accuracy"]["top1_agreement_with_keras"],
                "p50_us_1_thread": p50.get(f["file"]),
            }
            for f in manifest["files"]
        ],
        "bench_wall_s": round(bench_s, 1),
        "bench_error": bench_error,
        "bench_rows": [
            {k: r.get(k) for k in ("file", "status", "error", "peak_memory_bytes", "load_ms")}
            for r in rows
        ],
        "rejected": manifest.get("selection", {}).get("rejected", []),
        "stderr_tail": proc.stderr.strip().splitlines()[-12:],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)
    keys = ("export_wall_s", "export_peak_rss_mb", "loadavg_before", "loadavg_after", "files")
    print(json.dumps({k: result[k] for k in keys}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory of `edgekit export` at full size, in a child process.

    python benchmarks/memory.py                       # -> benchmarks/results/memory.json
    python benchmarks/memory.py -- --arch cnn         # extra arguments go to `edgekit export`
    python benchmarks/memory.py --image-folders 2000,20000   # -> results/memory_folders.json

Peak = the child's maximum resident set size (its own `ru_maxrss`, from `os.wait4` when it
exits: the kernel's high-water mark, nothing missed between samples). The resident size is
also sampled every 50 ms from /proc/PID/status and attributed to the stage the child last
announced on stderr ("[data]", "[train]", ...), to show where the peak is.

`--image-folders` writes Fashion-MNIST training images upscaled to 96x96 RGB as PNG folders
of each size and exports each (a quick MLP: what grows with the folder is the data), to show
whether memory grows with the folder (goal: the largest within 2x of the smallest).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
DEFAULT_OUT = RESULTS / "memory.json"
DEFAULT_FOLDERS_OUT = RESULTS / "memory_folders.json"
FOLDER_IMAGE_SIZE = (96, 96)
# A quick model for the folder runs: what grows with the folder is the data, not the model.
FOLDER_EXPORT_ARGS = ["--hidden", "64", "--epochs", "1", "--prune-epochs", "1"]
SAMPLE_INTERVAL_S = 0.05
MB = 1024 * 1024


def _status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def measure_export(export_args: list[str]) -> dict[str, Any]:
    """Run `edgekit export -o TMP ARGS` in a child process: its peak RSS (the child's own
    ru_maxrss, from wait4), RSS sampled per stage, wall time, output sizes and summary line."""
    with tempfile.TemporaryDirectory(prefix="edgekit-mem-") as tmp:
        cmd = [sys.executable, "-m", "edgekit.cli.main", "export", "-o", tmp, *export_args]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stage = "start (python, imports)"
        per_stage: dict[str, int] = {}
        order: list[str] = [stage]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                rss = _status_kb(proc.pid, "VmRSS")
                if rss is not None:
                    per_stage[stage] = max(per_stage.get(stage, 0), rss)
                done.wait(SAMPLE_INTERVAL_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        assert proc.stderr is not None
        log: list[str] = []
        for line in proc.stderr:
            log.append(line)
            text = line.strip()
            if text.startswith("[") and text.endswith("]"):
                stage = text[1:-1]
                order.append(stage)
            elif text.startswith(("converting ", "verifying ")):
                stage = f"export: {text.split(' on ')[0]}"
                order.append(stage)
        stdout = proc.stdout.read() if proc.stdout else ""
        done.set()
        sampler.join()
        # wait4: this child's own rusage (RUSAGE_CHILDREN would be the largest child so far).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.stderr.write("".join(log[-20:]))
            raise SystemExit(f"{' '.join(cmd)} failed with status {proc.returncode}")
        files = {p.name: p.stat().st_size for p in Path(tmp).iterdir()}
    return {
        "command": "edgekit export -o TMP " + " ".join(export_args),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "peak_rss_source": "ru_maxrss of the export process (os.wait4)",
        "sampled_rss_mb_by_stage": {
            s: round(per_stage[s] / 1024, 1) for s in dict.fromkeys(order) if s in per_stage
        },
        "sample_interval_s": SAMPLE_INTERVAL_S,
        "wall_seconds": round(seconds, 1),
        "output_bytes": files,
        "sample_counts": next((ln.strip() for ln in log if "sample counts:" in ln), ""),
        "summary_line": next((ln for ln in stdout.splitlines() if ln.startswith("manifest:")), ""),
    }


def write_image_folder(root: Path, images: int) -> None:
    """The first `images` Fashion-MNIST training images as 96x96 RGB PNGs, a folder per class."""
    from PIL import Image

    from edgekit.core.data import FASHION_MNIST_LABELS, load_fashion_mnist_arrays

    raw, _ = load_fashion_mnist_arrays()
    for i, (image, label) in enumerate(zip(raw["x_train"][:images], raw["y_train"], strict=False)):
        folder = root / f"{int(label)}_{FASHION_MNIST_LABELS[int(label)].replace('/', '-')}"
        folder.mkdir(parents=True, exist_ok=True)
        big = Image.fromarray(image).resize(FOLDER_IMAGE_SIZE, Image.Resampling.BILINEAR)
        big.convert("RGB").save(folder / f"{i:05d}.png")


def folders(sizes: list[int], export_args: list[str]) -> dict[str, Any]:
    """Peak RSS of `edgekit export --data DIR` on 96x96x3 folders of each size (images)."""
    runs = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="edgekit-memdir-") as tmp:
            t0 = time.perf_counter()
            write_image_folder(Path(tmp), n)
            write_s = time.perf_counter() - t0
            run = measure_export(["--data", tmp, *export_args])
            run["command"] = run["command"].replace(tmp, "DIR")
        runs.append({"images": n, "write_pngs_s": round(write_s, 1), **run})
        print(f"{n} images: peak RSS {run['peak_rss_mb']} MB in {run['wall_seconds']:.0f} s")
    small, large = runs[0], runs[-1]
    return {
        "image_size": [*FOLDER_IMAGE_SIZE, 3],
        "runs": runs,
        "peak_ratio_largest_to_smallest": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
        "goal": "the largest folder within 2x the peak RSS of the smallest",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="default: results/memory.json (or memory_folders)")
    ap.add_argument(
        "--image-folders",
        help="comma-separated image counts, e.g. 2000,20000: export 96x96x3 PNG folders of "
        f"each size ({' '.join(FOLDER_EXPORT_ARGS)} unless arguments follow --)",
    )
    ap.add_argument("export_args", nargs="*", help="extra `edgekit export` arguments (after --)")
    args = ap.parse_args(argv)

    from edgekit.core.io.files import write_json_atomic
    from edgekit.device.bench import machine_info

    machine = machine_info()
    load_before = [round(v, 2) for v in os.getloadavg()]
    if args.image_folders:
        sizes = sorted(int(n) for n in args.image_folders.split(","))
        measured = folders(sizes, args.export_args or FOLDER_EXPORT_ARGS)
        out = args.out or DEFAULT_FOLDERS_OUT
    else:
        measured = measure_export(args.export_args)
        out = args.out or DEFAULT_OUT
    report: dict[str, Any] = {
        "benchmark": "memory",
        "cpu": machine["cpu"],
        "machine": machine,
        "loadavg_before": load_before,
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        **measured,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, report)
    if "runs" in measured:
        print(f"largest/smallest peak RSS: {measured['peak_ratio_largest_to_smallest']}")
    else:
        print(f"peak RSS {measured['peak_rss_mb']} MB in {measured['wall_seconds']:.0f} s")
        for s, mb in measured["sampled_rss_mb_by_stage"].items():
            print(f"  {s:<32} {mb:8.1f} MB")
    print(f"on {machine['cpu']}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

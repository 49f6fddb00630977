"""Peak memory of the default pipeline: `edgekit export` at full size, in a child process.

    python benchmarks/memory.py                       # -> benchmarks/results/memory.json
    python benchmarks/memory.py -- --arch cnn         # extra arguments go to `edgekit export`

Peak = the child's maximum resident set size (`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`
after it exits: the kernel's own high-water mark, nothing missed between samples). The
resident size is also sampled every 50 ms from /proc/PID/status and attributed to the stage
the child last announced on stderr ("[data]", "[train]", ...), to show where the peak is.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
DEFAULT_OUT = RESULTS / "memory.json"
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("export_args", nargs="*", help="extra `edgekit export` arguments (after --)")
    args = ap.parse_args(argv)

    from edgekit.device.bench import machine_info

    with tempfile.TemporaryDirectory(prefix="edgekit-mem-") as tmp:
        cmd = [sys.executable, "-m", "edgekit.cli.main", "export", "-o", tmp, *args.export_args]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
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
        proc.wait()
        seconds = time.perf_counter() - t0
        done.set()
        sampler.join()
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            sys.stderr.write("".join(log[-20:]))
            raise SystemExit(f"{' '.join(cmd)} failed with status {proc.returncode}")
        files = {p.name: p.stat().st_size for p in Path(tmp).iterdir()}

    machine = machine_info()
    report: dict[str, Any] = {
        "benchmark": "memory",
        "command": "edgekit export -o TMP " + " ".join(args.export_args),
        "cpu": machine["cpu"],
        "machine": machine,
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "peak_rss_source": "getrusage(RUSAGE_CHILDREN).ru_maxrss of the export process",
        "peak_rss_note": (
            "exact" if before == 0 else "an earlier child of this script may have been larger"
        ),
        "sampled_rss_mb_by_stage": {
            s: round(per_stage[s] / 1024, 1) for s in dict.fromkeys(order) if s in per_stage
        },
        "sample_interval_s": SAMPLE_INTERVAL_S,
        "wall_seconds": round(seconds, 1),
        "output_bytes": files,
        "summary_line": next((ln for ln in stdout.splitlines() if ln.startswith("manifest:")), ""),
    }
    from edgekit.core.io.files import write_json_atomic

    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, report)
    print(f"peak RSS {report['peak_rss_mb']} MB in {seconds:.0f} s on {machine['cpu']}")
    for s, mb in report["sampled_rss_mb_by_stage"].items():
        print(f"  {s:<32} {mb:8.1f} MB")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

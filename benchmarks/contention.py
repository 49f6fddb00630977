"""Does a busy second core slow a .tflite file? p50 with the other CPU idle, then kept busy.

    python benchmarks/contention.py [PATH ...]   # default: artifacts/ -> results/contention.json

Linux only (CPU affinity). The timing process is pinned to the last usable CPU; for the
"busy" half a child process pinned to another CPU spins (`while True: pass`). Each file is
measured idle, busy, idle, busy, ... (`--repeats` pairs), each a bare `invoke()` loop of
`--seconds` seconds at batch 1, 1 thread, XNNPACK on; the JSON holds every p50 and, per file,
the median busy/idle ratio. On a VM the host's other tenants can put the "idle" half in the
slow state too: the per-repeat p50s show it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.io.files import write_json_atomic
from edgekit.device.bench import DEFAULT_BENCH_DIR, discover_models, machine_info
from edgekit.device.runtime import get_runtime, input_details

DEFAULT_OUT = Path(__file__).parent / "results" / "contention.json"


def p50_us(interpreter: Any, seconds: float) -> float:
    invoke, clock = interpreter.invoke, time.perf_counter_ns
    for _ in range(50):
        invoke()
    samples: list[int] = []
    end = clock() + int(seconds * 1e9)
    while clock() < end:
        t0 = clock()
        invoke()
        samples.append(clock() - t0)
    return float(np.median(samples)) / 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", default=[DEFAULT_BENCH_DIR])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("needs at least 2 usable CPUs")
    me, other = cpus[-1], cpus[0]
    os.sched_setaffinity(0, {me})
    rt = get_runtime("auto")
    files = [f for f in discover_models(args.paths) if f.suffix == ".tflite"]
    interpreters = {}
    for f in files:
        it = rt.interpreter_class(model_path=str(f), num_threads=1)
        it.allocate_tensors()
        info = input_details(it)[0]
        it.set_tensor(info.index, np.zeros(info.shape, info.dtype))
        interpreters[f.name] = it

    idle: dict[str, list[float]] = {n: [] for n in interpreters}
    busy: dict[str, list[float]] = {n: [] for n in interpreters}
    spin = [
        sys.executable,
        "-c",
        f"import os; os.sched_setaffinity(0, {{{other}}})\nwhile True: pass",
    ]
    for rep in range(args.repeats):
        for name, it in interpreters.items():
            idle[name].append(p50_us(it, args.seconds))
            spinner = subprocess.Popen(spin)
            try:
                time.sleep(0.2)  # the spinner is running before timing starts
                busy[name].append(p50_us(it, args.seconds))
            finally:
                spinner.kill()
                spinner.wait()
        print(f"repeat {rep + 1}/{args.repeats} done", file=sys.stderr)

    per_file = []
    for name in interpreters:
        ratio = statistics.median(b / i for b, i in zip(busy[name], idle[name], strict=True))
        per_file.append(
            {
                "file": name,
                "median_busy_over_idle": ratio,
                "idle_p50_us": idle[name],
                "busy_p50_us": busy[name],
            }
        )
        print(
            f"{name}: idle p50 {statistics.median(idle[name]):.2f} us, busy "
            f"{statistics.median(busy[name]):.2f} us, busy/idle {ratio:.2f}x"
        )
    machine = machine_info()
    machine["runtime"] = f"{rt.name} {rt.version}"
    out = {
        "what": "p50 of invoke() (batch 1, 1 thread) with the other CPU idle vs spinning",
        "cpu": machine["cpu"],
        "machine": machine,
        "settings": {"repeats": args.repeats, "seconds": args.seconds, "cpus": [me, other]},
        "files": per_file,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

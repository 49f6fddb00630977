"""Is `edgekit bench` lean? Its p50 against the leanest possible Python loop, same files, same run.

The lean loop: one interpreter per file in this process, the input set once, then
`t0 = perf_counter_ns(); invoke(); samples.append(perf_counter_ns() - t0)` in a tight loop.
`edgekit bench` measures the same files (1 thread, XNNPACK, the same input image) through its
child processes and interleaved rounds. Both are repeated, alternating which goes first.
Done when bench's p50 is within 5% of the lean loop's.

Which p50s are compared: on the 2-vCPU VM of the README's numbers a tiny int8 model runs in
one of two states, about 4.5 us or about 13 us (3x), set by the host (see
benchmarks/contention.py); float32 moves 10-20%.
Those flips last seconds, so one repeat of either side can land in the slow state by chance
and the median of a few repeats then compares states, not harnesses. The verdict therefore
uses the fastest p50 each side reached over the repeats (the uncontended state, where any
overhead of bench shows most); the median-over-repeats ratio and the ratio of pairs adjacent
in time are written next to it.

    python benchmarks/harness.py [PATH ...]          # default: artifacts/
    python benchmarks/harness.py /tmp/run --repeats 5 --out benchmarks/results/harness.json

Writes JSON (atomically) with the CPU model, the settings, and per file both p50s and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.core.data import load_test_set
from edgekit.core.io.files import write_json_atomic
from edgekit.device.bench import (
    DEFAULT_BENCH_DIR,
    DEFAULT_MIN_RUNS,
    DEFAULT_MIN_TIME_S,
    DEFAULT_ROUNDS,
    DEFAULT_WARMUP_RUNS,
    DEFAULT_WARMUP_TIME_S,
    BenchConfig,
    discover_models,
    machine_info,
    run_bench,
)
from edgekit.device.runtime import get_runtime, input_details, quantize

TOLERANCE = 0.05
DEFAULT_OUT = Path(__file__).parent / "results" / "harness.json"


def lean_p50_us(path: Path, x: np.ndarray, min_runs: int, min_time_s: float) -> float:
    """p50 of invoke() in the leanest loop: input set once, nothing else between calls."""
    rt = get_runtime("auto")
    interpreter = rt.interpreter_class(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    info = input_details(interpreter)[0]
    interpreter.set_tensor(info.index, quantize(x.reshape(info.shape), info))
    invoke = interpreter.invoke
    clock = time.perf_counter_ns
    # The same warm-up bench gives each of its rounds, once per round.
    warm_end = clock() + int(DEFAULT_WARMUP_TIME_S * DEFAULT_ROUNDS * 1e9)
    for _ in range(DEFAULT_WARMUP_RUNS * DEFAULT_ROUNDS):
        invoke()
    while clock() < warm_end:
        invoke()
    samples: list[int] = []
    total, min_ns = 0, int(min_time_s * 1e9)
    while len(samples) < min_runs or total < min_ns:
        t0 = clock()
        invoke()
        t1 = clock()
        samples.append(t1 - t0)
        total += t1 - t0
    return float(np.median(samples)) / 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=[DEFAULT_BENCH_DIR])
    parser.add_argument("--repeats", type=int, default=9, help="lean/bench pairs per file")
    parser.add_argument("--min-runs", type=int, default=DEFAULT_MIN_RUNS)
    parser.add_argument("--min-time", type=float, default=DEFAULT_MIN_TIME_S)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    files = [f for f in discover_models(args.paths) if f.suffix == ".tflite"]
    config = BenchConfig(threads=(1,), min_runs=args.min_runs, min_time_s=args.min_time, samples=1)
    # bench times the first test image: so does the loop
    x, _y, _info = load_test_set(config.data or "fashion_mnist", config.data_dir, config.samples)
    lean: dict[str, list[float]] = {f.name: [] for f in files}
    bench: dict[str, list[float]] = {f.name: [] for f in files}
    spreads: list[float] = []

    def run_lean(f: Path) -> None:
        lean[f.name].append(lean_p50_us(f, x[0], args.min_runs, args.min_time))

    def run_edgekit(f: Path) -> None:
        result = run_bench([f], config)
        row = result.rows[0]
        if row.latency is None:
            raise SystemExit(f"bench failed on {row.file}: {row.error}")
        bench[f.name].append(row.latency.p50_us)
        if row.round_spread is not None:
            spreads.append(row.round_spread)

    for rep in range(args.repeats):
        for f in files:
            # Pairs close in time, alternating which goes first: a machine whose speed drifts
            # (other load, frequency changes) favours neither side.
            pair = (run_lean, run_edgekit) if rep % 2 == 0 else (run_edgekit, run_lean)
            for run in pair:
                run(f)
        print(f"repeat {rep + 1}/{args.repeats} done", file=sys.stderr)

    per_file: list[dict[str, Any]] = []
    for f in files:
        b_best, l_best = min(bench[f.name]), min(lean[f.name])
        b_med, l_med = statistics.median(bench[f.name]), statistics.median(lean[f.name])
        ratio = b_best / l_best
        per_file.append(
            {
                "file": f.name,
                "ratio": ratio,  # fastest bench p50 / fastest lean p50 over the repeats
                "within_tolerance": abs(ratio - 1) <= TOLERANCE,
                "bench_p50_us": b_best,
                "lean_p50_us": l_best,
                # Other views of the same data (see the module docstring for why they can be
                # far from 1 on a machine that switches speeds).
                "ratio_of_medians": b_med / l_med,
                "median_pair_ratio": statistics.median(
                    b / le for b, le in zip(bench[f.name], lean[f.name], strict=True)
                ),
                "repeats_in_slow_state": {
                    "bench": sum(v > 1.5 * b_best for v in bench[f.name]),
                    "lean": sum(v > 1.5 * l_best for v in lean[f.name]),
                },
                "bench_p50_us_per_repeat": bench[f.name],
                "lean_p50_us_per_repeat": lean[f.name],
            }
        )
    worst = max(abs(p["ratio"] - 1) for p in per_file)
    machine = machine_info()
    rt = get_runtime("auto")
    machine["runtime"] = f"{rt.name} {rt.version}"
    out = {
        "what": "edgekit bench p50 / lean invoke() loop p50 (fastest over repeats), 1 thread, "
        "XNNPACK, batch 1",
        "cpu": machine["cpu"],
        "machine": machine,
        "settings": {
            "repeats": args.repeats,
            "min_runs": args.min_runs,
            "min_time_s": args.min_time,
            "tolerance": TOLERANCE,
        },
        "bench_round_spread_median": statistics.median(spreads) if spreads else None,
        "files": per_file,
        "max_abs_ratio_deviation": worst,
        "pass": worst <= TOLERANCE,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, out)
    for p in per_file:
        slow = p["repeats_in_slow_state"]
        print(
            f"{p['file']}: bench p50 {p['bench_p50_us']:.2f} us, lean {p['lean_p50_us']:.2f} us, "
            f"ratio {p['ratio']:.3f} (of medians {p['ratio_of_medians']:.3f}, "
            f"paired {p['median_pair_ratio']:.3f}; repeats >1.5x slower: "
            f"bench {slow['bench']}, lean {slow['lean']})"
        )
    print(f"{'PASS' if out['pass'] else 'FAIL'}: worst deviation {worst:.1%} ({machine['cpu']})")
    print(f"wrote {args.out}")
    return 0 if out["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Fuzz every reader of outside input: 10,000 seeded cases per target, counts in JSON.

The harnesses are tests/fuzzing.py's (tests/test_fuzz.py runs a few hundred cases of each):
the .tflite reader, the runtime loading damaged .tflite files (in the model worker's child
process), manifest.json, image files, .npz files, TF_CONFIG, sweep grid files, CLI option
values. A case is a success, a clean error (edgekit's one-line error) or a finding (another
exception, a traceback, a hang over 10 s, a crash); see docs/fuzzing.md.

    nice -n 15 python benchmarks/fuzz.py --jobs 2              # all targets, 10,000 each
    python benchmarks/fuzz.py --target manifest --target npz   # rerun two, keep the others
    python benchmarks/fuzz.py --cases 500 --seed 1 --out /tmp/fuzz.json

Writes JSON (atomically) with the CPU and its flags, the settings, and per target: cases,
successes, clean errors (by kind), findings (by kind, with examples to reproduce them).
Exit status 1 if any target has a finding.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzzing import HANG_S, TARGETS, run_target  # noqa: E402

from edgekit import __version__  # noqa: E402
from edgekit.core.io.files import write_json_atomic  # noqa: E402
from edgekit.device.bench import machine_info  # noqa: E402

DEFAULT_CASES = 10_000
DEFAULT_OUT = Path(__file__).parent / "results" / "fuzz.json"
VERSIONS = ("hypothesis", "ai-edge-litert", "pillow", "numpy", "click", "flatbuffers")


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _git_commit() -> str | None:
    """The commit the run starts from, "+changes" when the code or harness differ from it."""
    import subprocess

    def git(*args: str) -> str:
        root = Path(__file__).resolve().parents[1]
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", "edgekit", "tests/fuzzing.py", "tests/data")
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+changes" if changed else "")


def _run(
    name: str, cases: int, seed: int, work: str, commit: str | None
) -> tuple[str, dict[str, Any]]:
    """One target in this process (its main thread: the hang alarm needs it)."""
    tally = run_target(name, cases, seed, Path(work))
    print(
        f"{name}: {tally.cases} cases, {tally.successes} successes, "
        f"{tally.clean_errors} clean errors, {tally.findings} findings ({tally.seconds:.0f} s)",
        file=sys.stderr,
        flush=True,
    )
    return name, {
        **tally.to_dict(),
        "seed": seed,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": commit,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=DEFAULT_CASES, help="cases per target")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--target",
        action="append",
        choices=sorted(TARGETS),
        help="(repeatable) run these only; the other targets' results in --out are kept",
    )
    ap.add_argument("--jobs", type=int, default=1, help="targets run at once (processes)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    names = args.target or list(TARGETS)
    commit = _git_commit()
    results: dict[str, Any] = {}
    if args.target and args.out.is_file():
        results = json.loads(args.out.read_text()).get("targets", {})
    with tempfile.TemporaryDirectory(prefix="edgekit-fuzz-") as work:
        if args.jobs > 1:
            with ProcessPoolExecutor(args.jobs) as pool:
                futures = [pool.submit(_run, n, args.cases, args.seed, work, commit) for n in names]
                done = dict(f.result() for f in futures)
        else:
            done = dict(_run(n, args.cases, args.seed, work, commit) for n in names)
    results |= done
    results = {n: results[n] for n in TARGETS if n in results}
    report = {
        "benchmark": "fuzz",
        "edgekit_version": __version__,
        "machine": machine_info(),
        "load_average": os.getloadavg(),
        "versions": {dist: _version(dist) for dist in VERSIONS},
        "hang_s": HANG_S,
        "findings": sum(r["findings"] for r in results.values()),
        "targets": results,
    }
    write_json_atomic(args.out, report)
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if report["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())

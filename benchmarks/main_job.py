"""The README's main job, measured: `edgekit export` (timed), then `edgekit bench` on its output.

    python benchmarks/main_job.py                     # -> benchmarks/results/main_job.{json,md}
    python benchmarks/main_job.py --threads 1,2       # bench these thread counts

Runs both as the user would, in child processes, into a temporary folder (artifacts/ is left
alone). bench also measures the folded .keras model the export wrote, as the Keras baseline.
The JSON holds the export's wall time against the 3-minute floor, its summary table, and the
whole bench JSON; the Markdown is bench's own report.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
EXPORT_FLOOR_S = 180.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1", help="bench --threads (default: 1)")
    ap.add_argument("--out", type=Path, default=RESULTS / "main_job.json")
    args = ap.parse_args(argv)

    from edgekit.core.io.files import write_json_atomic, write_text_atomic
    from edgekit.device.bench import machine_info

    with tempfile.TemporaryDirectory(prefix="edgekit-main-") as tmp:
        out = Path(tmp) / "artifacts"
        t0 = time.perf_counter()
        export = subprocess.run(
            [sys.executable, "-m", "edgekit.cli.main", "export", "-o", str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        export_s = time.perf_counter() - t0
        if export.returncode != 0:
            print(export.stderr, file=sys.stderr)
            return 1
        keras_files = sorted(str(p) for p in out.glob("*_folded.keras"))
        bench_json, bench_md = Path(tmp) / "bench.json", Path(tmp) / "bench.md"
        bench = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgekit.cli.main",
                "bench",
                str(out),
                *keras_files,
                "--threads",
                args.threads,
                "--quiet",
                "--json",
                str(bench_json),
                "--markdown",
                str(bench_md),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if bench.returncode != 0:
            print(bench.stdout, bench.stderr, file=sys.stderr)
            return 1
        result = {
            "benchmark": "main_job",
            "commands": [
                "edgekit export",
                f"edgekit bench OUT OUT/*_folded.keras --threads {args.threads}",
            ],
            "cpu": machine_info()["cpu"],
            "machine": machine_info(),
            "export_wall_seconds": round(export_s, 1),
            "export_under_3_minutes": export_s < EXPORT_FLOOR_S,
            "export_summary": export.stdout,
            "bench": json.loads(bench_json.read_text()),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out, result)
        write_text_atomic(args.out.with_suffix(".md"), bench_md.read_text())
    print(export.stdout)
    print(bench.stdout)
    print(f"edgekit export: {export_s:.1f} s (floor {EXPORT_FLOOR_S:.0f} s)")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

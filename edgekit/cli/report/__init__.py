"""Formatting of results: tables, verdicts in plain words, JSON, CSV, Markdown, plots.

Measures nothing and never imports TensorFlow. matplotlib (the `plot` extra) is imported only
when a plot is written.
"""

from edgekit.cli.report.bench import (
    BENCH_OUTPUT_NAMES,
    bench_csv,
    bench_json,
    bench_markdown,
    print_bench,
    write_bench_outputs,
)
from edgekit.cli.report.bench_plot import bench_plot_png
from edgekit.cli.report.export import print_export_summary
from edgekit.cli.report.formats import dumps_json
from edgekit.cli.report.inspect import inspect_dict, print_inspect
from edgekit.cli.report.plot import require_matplotlib
from edgekit.cli.report.verify import print_verify

__all__ = [
    "BENCH_OUTPUT_NAMES",
    "bench_csv",
    "bench_json",
    "bench_markdown",
    "bench_plot_png",
    "dumps_json",
    "inspect_dict",
    "print_bench",
    "print_export_summary",
    "print_inspect",
    "print_verify",
    "require_matplotlib",
    "write_bench_outputs",
]

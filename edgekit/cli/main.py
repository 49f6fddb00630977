"""The `edgekit` command: parse options, call the library, print. No logic of its own.

TensorFlow is imported only inside the commands that train or convert (`export`, `train`), so
`edgekit --help`, `bench`, `inspect` and `verify` start without it.
"""

from __future__ import annotations

import errno
import signal
import sys
import threading
import traceback
from typing import Any

import click

from edgekit import __version__
from edgekit.cli.build import data_config_from_options, pipeline_config_from_options
from edgekit.cli.options import (
    IMAGE_OPTIONS,
    RUNTIME_OPTION,
    console,
    data_options,
    export_options,
    thread_counts,
    train_options,
)
from edgekit.core.config import DEFAULT_PRECISIONS
from edgekit.core.data.sizes import MAX_CALIBRATION_SAMPLES
from edgekit.core.errors import EdgekitError
from edgekit.core.io.console import stderr_progress


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the same clean-up runs (temporary files, child processes)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated()


class _Group(click.Group):
    """Turns library errors into one-line messages (exit 1); --debug shows the traceback.

    Ctrl-C exits 130 and SIGTERM 143 (128 + signal number), both after the clean-up of
    temporary files has run: an interrupted export leaves the previous output, never a part.
    """

    def invoke(self, ctx: click.Context) -> Any:
        previous_sigterm = _catch_sigterm()
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (ValueError, OSError) as e:  # EdgekitError; a NUL in a path; a path too long
            error = user_error(e)
            if error is None:
                raise
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            raise error from None
        except KeyboardInterrupt as e:
            what = "terminated" if isinstance(e, _Terminated) else "interrupted"
            click.echo(f"{what}: no partial output was left behind", err=True)
            sys.exit(143 if isinstance(e, _Terminated) else 130)
        finally:
            if previous_sigterm is not None:
                signal.signal(signal.SIGTERM, previous_sigterm)


def user_error(e: BaseException) -> click.ClickException | None:
    """The one-line click error edgekit shows for `e`, or None for an exception it does not
    expect (a bug: its traceback is shown)."""
    if isinstance(e, EdgekitError):
        return click.ClickException(one_line(str(e)))
    if isinstance(e, OSError) and e.errno == errno.ENAMETOOLONG:
        name = str(e.filename or "")
        shown = name if len(name) <= 60 else f"{name[:40]}...({len(name)} characters)"
        return click.UsageError(f"a path given is too long ({shown!r}): pass a shorter path")
    if isinstance(e, ValueError) and "embedded null byte" in str(e):
        # click's Path type stats a path and lets this ValueError through
        return click.UsageError("a path given holds a NUL character (\\x00): pass paths without it")
    return None


def one_line(message: str) -> str:
    """The message on one line: a newline or other control character in it (from a file or
    folder name the user gave) is shown escaped, as in Python ('\\n')."""
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def _catch_sigterm() -> Any:
    """Make SIGTERM raise _Terminated; returns the previous handler (None if not installed)."""
    if threading.current_thread() is not threading.main_thread():
        return None  # signals go to the main thread only (e.g. click's test runner elsewhere)
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None or previous == signal.SIG_IGN:
        return None  # started with SIGTERM ignored (nohup-like): keep it that way
    signal.signal(signal.SIGTERM, _raise_terminated)
    return previous


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekit")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """edgekit: Keras classifier -> small, fast, verified TensorFlow Lite files for edge CPUs.

    \b
    edgekit export            train (L1) -> prune -> fold BN -> float32/float16/int8 .tflite
    edgekit quantize-report   which layers of a model lose accuracy in int8
    edgekit bench             latency, accuracy and size of .tflite files on this CPU
    edgekit inspect FILE      operators, tensors, sparsity and metadata of one file
    edgekit verify DIR        check files against their manifest.json (run it on the device)
    edgekit sweep             a grid of exports (local processes or Ray) and its frontier
    edgekit push DIR BOARD    copy a build to boards over SSH, whole or not at all, verify it
    edgekit devices           check the boards of devices.toml, set one up (bench --on BOARD)
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# ---- training side: export, train (imports TensorFlow lazily) ------------------------------
@main.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@data_options
@train_options
@export_options
@click.option(
    "--on",
    multiple=True,
    metavar="BOARD",
    help="Then bench the written files on these boards over SSH: the summary and manifest.json "
    "get each board's p50 and recommended file (docs/fleet.md).",
)
@click.option(
    "--max-latency-ms",
    multiple=True,
    metavar="BOARD=MS",
    help="With --on: the file recommended on BOARD is the smallest within MS ms p50 there.",
)
@click.option("--devices", "devices_file", type=click.Path(dir_okay=False), help="For --on.")
def export(model: str | None, **kw: Any) -> None:
    """Train (or load MODEL), prune, fold batch norm, export verified .tflite files.

    \b
    With no MODEL: the whole pipeline on Fashion-MNIST into artifacts/.
    With MODEL (a tf_keras .keras/.h5 classifier): fold + export, pruning with --prune.
    Every file is loaded in LiteRT and checked on real test samples before it is written;
    a run replaces the previous run's files and manifest.json as a whole.
    """
    from edgekit.cli.fleet import export_boards_precheck, export_on_boards
    from edgekit.workstation.pipeline import run_pipeline

    boards = export_boards_precheck(kw)  # a wrong board fails before training
    named = kw["precisions"] is not None
    config = pipeline_config_from_options(kw, model)
    result = run_pipeline(
        config,
        model_path=model,
        unsafe=kw["unsafe"],
        progress=stderr_progress(kw["quiet"]),
        wait_for_lock=kw["wait"],
    )
    if result.export is None:  # --distributed, not the chief: it writes nothing
        assert result.worker is not None  # run_pipeline returns no export only on a worker
        click.echo(result.worker.done_message, err=True)
        return
    from edgekit.cli.report.export import print_export_summary

    print_export_summary(result, console())
    if boards:
        export_on_boards(result.export.output_dir, boards, kw)
    defaults = {p.value for p in DEFAULT_PRECISIONS}  # not asked for by name unless --precision
    left_out = [r for r in result.export.requested_left_out if named or r.tag not in defaults]
    if left_out:
        raise click.ClickException(
            f"{len(left_out)} file(s) asked for were not written: "
            + "; ".join(f"{r.file}: {r.reason}" for r in left_out)
        )


@main.command()
@data_options
@train_options
@click.option(
    "-o",
    "--output",
    default="artifacts/model.keras",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Where to save the trained tf_keras model.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def train(**kw: Any) -> None:
    """Train the regularized network alone and save it as a .keras file."""
    from pathlib import Path

    from edgekit.core.data import load_dataset
    from edgekit.core.io.files import ensure_writable_dir

    built = pipeline_config_from_options(kw)
    data_cfg, train_cfg = built.data, built.train
    out = Path(kw["output"])
    if out.suffix != ".keras":
        raise EdgekitError(f"--output must end in .keras, got {out.name!r}")
    role = None
    if train_cfg.distributed:
        from edgekit.workstation.tf_config import read_tf_config

        role = read_tf_config()  # a one-line error before TensorFlow is imported
    if role is None or role.is_chief:  # only the chief writes
        ensure_writable_dir(out.parent)
    data = load_dataset(data_cfg)
    from edgekit.workstation.export.model_io import save_keras_atomic
    from edgekit.workstation.train import build_model, keras_accuracy, train_model

    say = stderr_progress(kw["quiet"])
    if role is not None:
        from edgekit.workstation.train.distributed import start_workers

        workers = start_workers(role, progress=say)
        result = workers.train(train_cfg, data, progress=say)
        workers.report(result.model, say)
        if not role.is_chief:
            click.echo(role.done_message, err=True)
            return
    else:
        model = build_model(train_cfg, data.input_shape, data.num_classes)
        result = train_model(model, data, train_cfg, progress=say)
    save_keras_atomic(result.model, out)
    acc = keras_accuracy(result.model, data.x_test, data.y_test)
    click.echo(
        f"saved {out}: {result.epochs_run} epochs, validation accuracy "
        f"{result.best_val_accuracy:.2%}, test accuracy {acc:.2%}"
    )


@main.command("quantize-report")
@click.argument("model", type=click.Path())
@data_options
@click.option(
    "--samples",
    type=int,
    default=100,
    show_default=True,
    help="Training samples the debugger runs on.",
)
@click.option(
    "--calibration-samples",
    type=int,
    default=MAX_CALIBRATION_SAMPLES,
    show_default=True,
    help="Training samples int8 is calibrated on (as export).",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write JSON here.")
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(dir_okay=False),
    help="Write a Markdown table here.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    help="Write a PNG bar chart of rmse/scale per layer here.",
)
@click.option("--unsafe", is_flag=True, help="Load MODEL with Keras safe mode off.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def quantize_report_command(model: str, **kw: Any) -> None:
    """Which layers of MODEL lose accuracy in int8: per-layer error, worst first.

    \b
    MODEL is a .keras/.h5 file or an export folder (its folded .keras model). Runs the
    TFLite QuantizationDebugger: per layer (op), rmse/scale (0.29 = int8 rounding alone),
    mean abs and squared error, scale, op and weights. Remedy: `edgekit export MODEL
    --float-layers auto:K` keeps the K worst layers float, `--max-accuracy-drop PP` searches.
    """
    from edgekit.cli.report.quantize import print_quantize_report, write_quantize_outputs
    from edgekit.workstation.diagnose import quantize_report

    if kw["samples"] < 1 or kw["calibration_samples"] < 1:
        raise EdgekitError("--samples and --calibration-samples must be >= 1, e.g. 100")
    if kw["plot_path"]:
        from edgekit.cli.report import require_matplotlib

        require_matplotlib()
    data = data_config_from_options(kw)
    errors, meta = quantize_report(
        model,
        data,
        kw["samples"],
        kw["calibration_samples"],
        kw["unsafe"],
        stderr_progress(kw["quiet"], indent="  "),
    )
    print_quantize_report(errors, console(), title=f"int8 error per layer: {meta['model']}")
    written = write_quantize_outputs(
        errors, kw["json_path"], kw["markdown_path"], kw["plot_path"], meta
    )
    if written and not kw["quiet"]:
        click.echo("  wrote " + ", ".join(str(p) for p in written), err=True)


# ---- runtime side: bench, inspect, verify (never import TensorFlow) -------------------------
# (commands are added below this line)


# Long for its docstring (the --help text of what is timed and how); the body is ~40 lines.
@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--threads", default="1", show_default=True, help="Thread counts, e.g. 1,2.")
@click.option("--xnnpack/--no-xnnpack", default=True, show_default=True, help="XNNPACK delegate.")
@RUNTIME_OPTION
@click.option(
    "--min-runs",
    type=int,
    default=50,
    show_default=True,
    help="Timed runs per file and thread count (at least).",
)
@click.option(
    "--min-time",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds of timed runs per file and thread count (at least).",
)
@click.option(
    "--warmup-runs", type=int, default=5, show_default=True, help="Untimed runs before every round."
)
@click.option(
    "--warmup-time",
    type=float,
    default=0.05,
    show_default=True,
    help="Seconds of untimed runs before every round (at least).",
)
@click.option(
    "--rounds",
    type=int,
    default=5,
    show_default=True,
    help="Interleaved rounds the timed runs are split over.",
)
@click.option(
    "--data",
    "data_source",
    default="fashion_mnist",
    show_default=True,
    help="Labeled test set: 'fashion_mnist', a .npz with x_test, y_test, or an image "
    "folder (its test split, sized as the first model's input).",
)
@click.option(
    "--data-dir", type=click.Path(file_okay=False), help="Folder with the Fashion-MNIST .gz files."
)
@click.option("--samples", type=int, help="Use only the first N test samples.")
@click.option("--no-accuracy", is_flag=True, help="Measure latency and size only (no data).")
@click.option(
    "--timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds a model's process may take per step before it is killed.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    help="Write the full results (raw samples included) as JSON.",
)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write a CSV summary.")
@click.option(
    "--markdown", "markdown_path", type=click.Path(dir_okay=False), help="Write a Markdown report."
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    help="Write a PNG: accuracy against p50 latency, area = file size.",
)
@click.option(
    "--save/--no-save",
    default=None,
    help="Write bench.json/.csv/.md/.png into the benchmarked folder "
    "[default: on when exactly one PATH is a folder].",
)
@click.option(
    "--test-split",
    type=float,
    help="Image folders: fraction of each class tested [default: export's, from the "
    "manifest, else 0.2].",
)
@click.option(
    "--split-seed", type=int, help="Image folders: seed of that split [default: export's, else 42]."
)
@IMAGE_OPTIONS[1]
@click.option(
    "--unsafe", is_flag=True, help="Load .keras baselines with safe mode off (trusted files only)."
)
@click.option(
    "--on",
    multiple=True,
    metavar="BOARD",
    help="Bench on these boards over SSH (devices.toml names or user@host:path): one table, "
    "bench.<board>.json and fleet.json/.md/.png (docs/fleet.md).",
)
@click.option(
    "--devices", "devices_file", type=click.Path(dir_okay=False), help="Devices file for --on."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def bench(paths: tuple[str, ...], **kw: Any) -> None:
    """Latency, accuracy, size and memory of .tflite files on this CPU.

    \b
    PATHS are .tflite files or folders of them (default: artifacts/); a .keras file given
    explicitly adds a Keras baseline row (needs TensorFlow, used in a child process only).
    Each file and thread count runs in its own process: a file that crashes or hangs the
    runtime gives an error row, the others are still measured.

    \b
    Timed: interpreter.invoke() alone at batch 1, the input set once per round, with
    time.perf_counter_ns; runs go on until both --min-runs and --min-time are reached,
    split over --rounds rounds that interleave the files (A B C, B C A, ...), each after
    warm-up runs. Accuracy uses the same evaluation as `edgekit export` (int8 inputs
    quantized, outputs dequantized with each file's own parameters) and is compared with
    the float32 file of the same model (same name stem). Memory: the peak RSS the
    model's process gained by loading and running the model.

    \b
    When exactly one PATH is a folder (as by default), bench.json, bench.csv, bench.md
    and bench.png (if matplotlib is installed) are also written into it; --no-save turns
    that off. --json/--csv/--markdown/--plot write where you say. All files are written
    even when some model failed; the exit status is then 1.
    """
    from edgekit.cli.report import print_bench, write_bench_outputs
    from edgekit.device.bench import DEFAULT_BENCH_DIR, BenchConfig, run_bench

    targets = paths or (DEFAULT_BENCH_DIR,)
    outputs = _bench_outputs(targets, kw)
    config = BenchConfig(
        threads=thread_counts(kw["threads"]),
        xnnpack=kw["xnnpack"],
        runtime=kw["runtime"],
        min_runs=kw["min_runs"],
        min_time_s=kw["min_time"],
        warmup_runs=kw["warmup_runs"],
        warmup_time_s=kw["warmup_time"],
        rounds=kw["rounds"],
        data=None if kw["no_accuracy"] else kw["data_source"],
        data_dir=kw["data_dir"],
        samples=kw["samples"],
        timeout_s=kw["timeout"],
        unsafe=kw["unsafe"],
        test_split=kw["test_split"],
        split_seed=kw["split_seed"],
        skip_bad_images=kw["skip_bad_images"],
    )
    if kw["on"]:  # boards over SSH: edgekit/cli/fleet.py
        from edgekit.cli.fleet import bench_on_boards

        source = click.get_current_context().get_parameter_source("threads")
        kw["threads_given"] = source is not None and source.name != "DEFAULT"
        return bench_on_boards(paths, kw["on"], kw, config)
    result = run_bench(targets, config, progress=stderr_progress(kw["quiet"], indent="  "))
    print_bench(result, console())
    written = [p for out in outputs for p in write_bench_outputs(result, **out)]
    if written and not kw["quiet"]:
        click.echo("  wrote " + ", ".join(str(p) for p in written), err=True)
    if not result.ok:
        failed = sorted({r.file for r in result.failed})
        raise click.ClickException(
            f"{len(failed)} file(s) failed: {', '.join(failed)} (see the error rows)"
        )


def _bench_outputs(targets: tuple[str, ...], kw: dict[str, Any]) -> list[dict[str, str | None]]:
    """The report files bench writes: where --json/--csv/--markdown/--plot say, and bench.*
    into the one folder among `targets` unless --no-save (no bench.png without matplotlib)."""
    from pathlib import Path

    from edgekit.cli.report import BENCH_OUTPUT_NAMES, require_matplotlib

    save = kw["save"]
    folders = [Path(t) for t in targets if Path(t).is_dir()]
    folder = folders[0] if len(folders) == 1 else None
    if save and folder is None:
        raise click.UsageError("--save needs exactly one folder among PATHS; use --json etc.")
    if kw["plot_path"]:
        require_matplotlib()  # fail before measuring, not after
    outputs: list[dict[str, str | None]] = [
        {
            "json_path": kw["json_path"],
            "csv_path": kw["csv_path"],
            "markdown_path": kw["markdown_path"],
            "plot_path": kw["plot_path"],
        }
    ]
    if folder is not None and save is not False:
        saved: dict[str, str | None] = {
            f"{key}_path": str(folder / name) for key, name in BENCH_OUTPUT_NAMES.items()
        }
        try:
            require_matplotlib()
        except EdgekitError:
            saved["plot_path"] = None
            if not kw["quiet"]:
                click.echo("  (no bench.png: matplotlib is not installed)", err=True)
        outputs.append(saved)
    return outputs


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def inspect(file: str, as_json: bool) -> None:
    """Operators, inputs/outputs (dtype, shape, quantization), weight sparsity, size of FILE,
    and its TFLite Model Metadata (name, labels, input normalization, output names).

    Reads the flatbuffer in Python without running it: a damaged file gives an error,
    never a crash.
    """
    from edgekit.cli.report import dumps_json, inspect_dict, print_inspect
    from edgekit.device.modelfile import read_model_file

    model = read_model_file(file)  # its TFLite metadata too (model.metadata)
    if as_json:
        click.echo(dumps_json(inspect_dict(model)), nl=False)
    else:
        print_inspect(model, console())


@main.command()
@click.argument("folder", required=False, default="artifacts", type=click.Path(file_okay=False))
@RUNTIME_OPTION
@click.option("--no-run", is_flag=True, help="Check hashes and sizes only; load nothing.")
@click.option(
    "--timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds one file may take to load and run once.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def verify(
    folder: str, runtime: str, no_run: bool, timeout: float, as_json: bool, quiet: bool
) -> None:
    """Check the files of FOLDER (default: artifacts/) against its manifest.json.

    \b
    Per file: size and sha256, inputs/outputs against the manifest, then one load and
    inference in a child process (a crashing file is reported, not fatal). .tflite files
    the manifest does not list are flagged. Exit status 1 on any problem: run it on the
    device after copying the files.
    """
    from edgekit.cli.report import dumps_json, print_verify
    from edgekit.device.verify import verify_dir

    say = stderr_progress(quiet, indent="  ")
    result = verify_dir(folder, runtime=runtime, run=not no_run, timeout_s=timeout, progress=say)
    if as_json:
        click.echo(dumps_json(result.to_dict()), nl=False)
    else:
        print_verify(result, console())
    if not result.ok:
        bad = [f.file for f in result.files if not f.ok]
        raise click.ClickException(f"{len(bad)} file(s) failed verification: {', '.join(bad)}")


# ---- sweeps: a grid of exports (edgekit/cli_sweep.py, kept apart so this file stays short) ---
from edgekit.cli.sweep import sweep  # noqa: E402

main.add_command(sweep)

# ---- boards over SSH: push, devices check|setup (edgekit/cli/fleet.py) ----------------------
from edgekit.cli.fleet import devices, push  # noqa: E402

main.add_command(push)
main.add_command(devices)


if __name__ == "__main__":  # pragma: no cover
    main()

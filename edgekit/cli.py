"""The `edgekit` command: parse options, call the library, print. No logic of its own.

TensorFlow is imported only inside the commands that train or convert (`export`, `train`), so
`edgekit --help`, `bench`, `inspect` and `verify` start without it.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from edgekit import __version__
from edgekit.errors import EdgekitError


class _Group(click.Group):
    """Turns library errors into one-line messages (exit 1); --debug shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except EdgekitError as e:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            click.echo("interrupted: no partial output was left behind", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekit")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """edgekit: Keras classifier -> small, fast, verified TensorFlow Lite files for edge CPUs.

    \b
    edgekit export            train (L1) -> prune -> fold BN -> float32/float16/int8 .tflite
    edgekit bench             latency, accuracy and size of .tflite files on this CPU
    edgekit inspect FILE      operators, tensors, quantization and sparsity of one file
    edgekit verify DIR        check files against their manifest.json (run it on the device)
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# ---- training side: export, train (imports TensorFlow lazily) ------------------------------
# (commands are added below this line)


# ---- runtime side: bench, inspect, verify (never import TensorFlow) -------------------------
# (commands are added below this line)


if __name__ == "__main__":  # pragma: no cover
    main()

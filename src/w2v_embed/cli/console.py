"""The typer app, the two consoles, and the one way a command ends: one red line and an exit code."""

from __future__ import annotations

import os
import signal
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .. import __version__
from ..errors import UsageError, W2VEmbedError

app = typer.Typer(
    help="Extract wav2vec 2.0 embeddings from folders of audio into one HDF5 file.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        out.print(f"w2v-embed {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Extract wav2vec 2.0 embeddings from folders of audio into one HDF5 file."""


def shown(text: object) -> str:
    """Printable as it is: a name that is not UTF-8 with its odd bytes as \\xNN (caf\\xe9.wav), and brackets
    that rich would take for markup ("a[/]b.wav" crashed it) escaped."""
    return escape(os.fsencode(str(text)).decode("utf-8", "backslashreplace"))


def fail(exc: W2VEmbedError) -> None:
    err.print(f"[bold red]error:[/] {shown(exc)}", highlight=False)
    raise typer.Exit(2 if isinstance(exc, UsageError) else 1)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (what Slurm, docker stop and systemd send), raised in the main thread to end a run like Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


def run(func, *args):
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return func(*args)
    except W2VEmbedError as exc:
        fail(exc)
    except KeyboardInterrupt as exc:
        what, code = ("terminated", 143) if isinstance(exc, _Terminated) else ("interrupted", 130)
        err.print(f"[bold red]{what}:[/] finished files are saved; rerun with --resume to continue")
        raise typer.Exit(code)
    finally:
        signal.signal(signal.SIGTERM, previous)



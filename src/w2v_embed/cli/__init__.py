"""`w2v-embed` command line: a thin typer layer over the Python API.

Each command parses its options into the API's dataclasses and calls one private function; a
W2VEmbedError becomes one red line on stderr (exit 1, or 2 for usage errors). One module per
command group; `console` holds what they share (the app, the consoles, error and signal handling).
"""

from __future__ import annotations

from . import convert, export, extract, outputs, units  # noqa: F401  (each registers its commands on `app`)
from .console import app

__all__ = ["app", "main"]


def main() -> None:
    app()

"""`w2v-embed merge` and `w2v-embed info`: joining shard outputs, and describing an output or a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import UsageError
from .console import app, err, out, run, shown


@app.command()
def merge(
    output: Annotated[Path, typer.Argument(help="The merged HDF5 file to write (for units also fairseq's .km text).")],
    inputs: Annotated[list[str], typer.Argument(help="Shard outputs (globs are expanded).", show_default=False)],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Join the outputs of `extract --shard I/N` jobs into one file (streaming, atomic, safe to rerun).

    Examples:

      w2v-embed merge feats.h5 feats.*.h5

      w2v-embed merge feats.h5 'shards/feats.*.h5' --overwrite

      w2v-embed merge train.km units.*.h5
    """
    run(_merge, output, inputs, overwrite)


def _merge(output: Path, inputs: list[str], overwrite: bool) -> None:
    import glob

    from ..store import merge as merge_outputs

    paths = [p for pattern in inputs for p in (sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern])]
    if not paths:
        raise UsageError(f"no shard outputs match {' '.join(inputs)}")
    summary = merge_outputs(output, paths, overwrite)
    err.print(f"merged {summary.inputs} outputs: {summary.files} files, {summary.failed} failed → {summary.output}")


# Attributes that describe one kind of run, shown only for runs of that kind: a shard, windows, segments.
APPLIES_WHEN = {
    "shard": "shard", "shard_files": "shard", "total_files": "shard", "shard_deal": "shard",
    "window_seconds": "window_seconds", "hop_seconds": "window_seconds",
    "segments": "segments",
}
NOT_SHOWN = {"run_id"}  # the file's identity, which readers compare: not a setting


@app.command()
def info(path: Annotated[Path, typer.Argument(help="An output .h5 file or an exported .onnx model.")]) -> None:
    """Describe an output file (model, layers, pooling, files, audio, failures) or a model's metadata.

    Examples:

      w2v-embed info feats.h5

      w2v-embed info models/wav2vec2-german.onnx
    """
    run(_info, path)


def _info(path: Path) -> None:
    table = Table(show_header=False, title=shown(path))
    from ..units.info import units_summary

    units = units_summary(path)  # a KM file or a units output (w2v_embed.units), else None
    if units is not None:
        for key, value in units.items():
            table.add_row(key, shown(value))
        out.print(table)
        return
    if path.suffix == ".onnx":
        from ..embedder import EmbedOptions, Embedder

        if not path.exists():
            raise UsageError(f"{path}: no such file")
        embedder = Embedder(path, device="cpu", options=EmbedOptions("all"))
        embedder.self_check()
        model_info = embedder.info
        for key, value in vars(model_info).items():
            table.add_row(key, shown(value))
        table.add_row("file_sha256", embedder.model.sha256)
        table.add_row("self_check", "finite features on 1 s of noise")
        table.add_row("frame_rate", f"{model_info.frame_rate:g} Hz")
        table.add_row("receptive_field", f"{model_info.grid.receptive_field} samples")
        out.print(table)
        return
    from ..store import read_summary

    summary = read_summary(path)
    failed = summary.pop("failed", [])
    for key, value in summary.items():
        if key in NOT_SHOWN or (key in APPLIES_WHEN and not summary.get(APPLIES_WHEN[key])):
            continue  # e.g. an empty shard and 0 of 0 files on a plain run: noise
        table.add_row(key, shown(value))
    table.add_row("failed files", str(len(failed)))
    out.print(table)
    for name, reason in failed:
        out.print(f"[yellow]failed:[/] {shown(name)}: {shown(reason)}", highlight=False)

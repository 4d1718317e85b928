"""`w2v-embed convert`: a finished output into Kaldi, fairseq or Parquet files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .console import app, err, run, shown


@app.command()
def convert(
    path: Annotated[Path, typer.Argument(help="A finished output .h5 file.")],
    to: Annotated[str, typer.Option("--to", help="kaldi (feats.ark/scp) | fairseq (HuBERT k-means .npy/.len/.tsv) | parquet.")] = ...,
    dest: Annotated[Path, typer.Option("-o", "--output", help="Folder to write (kaldi, fairseq), or the .parquet file.")] = ...,
    layer: Annotated[str | None, typer.Option(help="Layer to write (e.g. 6 or last) \\[default: last when stored, else the deepest; parquet: all stored].")] = None,
    split: Annotated[str, typer.Option(help="fairseq: the split name of {split}_{rank}_{nshard}.npy and {split}.tsv.")] = "train",
    rank: Annotated[int, typer.Option(help="fairseq: this file's shard number, in the file names.")] = 0,
    nshard: Annotated[int, typer.Option(help="fairseq: shards of the split, in the file names.")] = 1,
    root: Annotated[str | None, typer.Option(help="fairseq: the manifest's root folder \\[default: the folder holding every name].")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace files of the same names in the destination.")] = False,
) -> None:
    """Convert an output for another toolkit, streamed row by row in stored order.

    Examples:

      w2v-embed convert frames.h5 --to kaldi -o dump/w2v      # feats.ark, feats.scp, utt2num_frames, frame_shift

      w2v-embed convert frames.h5 --to fairseq --layer 6 -o feat_dir   # train_0_1.npy/.len + train.tsv

      w2v-embed convert pooled.h5 --to parquet -o pooled.parquet
    """
    run(_convert, path, to, dest, layer, split, rank, nshard, root, overwrite)


def _convert(path: Path, to: str, dest: Path, layer: str | None, split: str, rank: int, nshard: int, root: str | None,
             overwrite: bool) -> None:
    from ..errors import UsageError
    from ..layers import from_text
    from ..sinks.convert import ConvertOptions
    from ..sinks.convert import convert as convert_output

    try:
        chosen = None if layer is None else from_text(layer.strip().lower())
    except ValueError:
        raise UsageError(f"--layer {layer!r}: expected a layer number or 'last'") from None
    options = ConvertOptions(to, chosen, split, rank, nshard, root, overwrite)
    summary = convert_output(path, dest, options)
    err.print(f"converted {summary.rows} rows ({len(summary.failed)} failed in the output) → {', '.join(shown(p) for p in summary.files)}")

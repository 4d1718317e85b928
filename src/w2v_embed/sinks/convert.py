"""`w2v-embed convert`: a finished HDF5 output into another toolkit's format, streamed row by row
through that format's sink (memory holds one row, plus one Parquet row group), in stored order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import UsageError
from ..layers import Layer
from ..store import Output
from ..store import open as open_output
from ..store.sink import Row
from . import FORMATS
from .base import SinkSummary, StagedSink


@dataclass(frozen=True)
class ConvertOptions:
    to: str  # kaldi | fairseq | parquet
    layer: Layer | None = None  # None: "last" when stored, else the deepest (like load()); Parquet: all layers
    split: str = "train"  # fairseq: {split}_{rank}_{nshard}.npy / .len and {split}.tsv
    rank: int = 0
    nshard: int = 1
    root: str | None = None  # fairseq: the manifest's root folder (default: the one holding every name)
    overwrite: bool = False  # replace files of the same names in the destination


def convert(path: str | Path, dest: str | Path, options: ConvertOptions) -> SinkSummary:
    """Write `path`'s rows to `dest` (a folder for kaldi and fairseq, a .parquet file for parquet)."""
    if options.to not in FORMATS:
        raise UsageError(f"--to {options.to!r}: expected one of {', '.join(FORMATS)}")
    out = open_output(path, None if options.layer is None else [options.layer])
    with out:
        sink = _sink(out, Path(dest), options)
        try:
            for row in rows(out):
                sink.add(row)
            for name, error in failures(out.path):
                sink.add_failure(-1, name, error)
        except BaseException:
            sink.abort()
            raise
        return sink.close()


def _sink(out: Output, dest: Path, options: ConvertOptions) -> StagedSink:
    layer = out.layers[-1]
    if options.to == "kaldi":
        from .kaldi import KaldiSink

        shift = _row_shift(out)
        return KaldiSink(dest, layer, shift, options.overwrite)
    if options.to == "fairseq":
        from .fairseq import FairseqSink

        if _row_shift(out) is None:
            raise UsageError(f"{out.path} is pooled (one vector per file): fairseq's k-means layout holds frames; extract with --pool none")
        return FairseqSink(dest, layer, options.split, options.rank, options.nshard, options.root, options.overwrite)
    from .parquet import ParquetSink

    if out.frame_level:
        raise UsageError(f"{out.path} holds frames: Parquet takes pooled or windowed rows; use --to kaldi or --to fairseq")
    window = (out.attrs["window_seconds"], out.attrs["hop_seconds"]) if out.windowed else None
    return ParquetSink(dest, list(out.layers), int(out.attrs["sample_rate"]), window, options.overwrite)


def _row_shift(out: Output) -> float | None:
    """Seconds between a row's successive matrix rows: a frame, or a window hop; None when pooled."""
    if out.frame_level:
        return 1.0 / float(out.attrs["frame_rate"])
    if out.windowed:
        return float(out.attrs["hop_seconds"])
    return None


def rows(out: Output) -> Iterator[Row]:
    """The output's rows as an engine would hand them to a sink (index = stored position)."""
    num_samples, source_rates, segments = _row_columns(out.path)
    for index, (name, features) in enumerate(out):
        segment = None if segments is None else (segments[0][index], float(segments[1][index]), float(segments[2][index]))
        yield Row(index, name, int(num_samples[index]), int(source_rates[index]), features, segment)


def _row_columns(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[list[str], np.ndarray, np.ndarray] | None]:
    """Per-row lengths and segment times from the documented layout (one small array each)."""
    with h5py.File(path, "r") as f:
        segments = None
        if "source_path" in f:
            sources = [str(s) for s in f["source_path"].asstr(errors="surrogateescape")[()]]
            segments = (sources, f["segment_start"][()], f["segment_end"][()])
        return f["num_samples"][()], f["source_sample_rate"][()], segments


def failures(path: Path) -> list[tuple[str, str]]:
    with h5py.File(path, "r") as f:
        return list(zip(f["failed/paths"].asstr(errors="surrogateescape")[()], f["failed/errors"].asstr()[()]))

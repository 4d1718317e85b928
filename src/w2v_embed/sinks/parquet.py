"""Parquet for pooled and windowed rows (pyarrow): one table row per file, segment or window, with
its name, times and one fixed-size float32 list column per layer (`layer_6`, `last`), written in
row groups so memory holds one group, not the output. pandas, polars, duckdb and HF datasets read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..layers import LAST, Layer
from ..pooling import window_times
from ..store.sink import Row
from . import optional
from .base import StagedSink

GROUP_BYTES = 16 << 20  # features buffered before a row group is written (peak memory is a few times this)


def column_name(layer: Layer) -> str:
    return LAST if layer == LAST else f"layer_{layer}"


class ParquetSink(StagedSink):
    """One .parquet file. Columns: `path`; with segments `source_path`, `segment_start`,
    `segment_end` (seconds in the source); `num_samples` (16 kHz) and `seconds`; with windows
    `window` (its number in the row), `start`, `end` (seconds from the row's start) and `partial`
    (runs past the audio's end); then one column per layer.

    `window` is (window_seconds, hop_seconds) for windowed rows, None for pooled ones.
    """

    FORMAT = "Parquet"

    def __init__(self, path: Path, layers: list[Layer], sample_rate: int = 16000, window: tuple[float, float] | None = None,
                 replace: bool = False) -> None:
        path = Path(path)
        super().__init__(path.parent, [path.name], replace)
        self.pa, self.pq = optional("pyarrow"), optional("pyarrow.parquet")
        self.layers, self.sample_rate, self.window = layers, sample_rate, window
        self._temp = self.staged(path.name)
        self._writer: Any = None
        self._columns: dict[str, list[Any]] = {}
        self._feats: dict[Layer, list[np.ndarray]] = {k: [] for k in layers}
        self._buffered = 0

    def _write(self, row: Row) -> None:
        seconds = row.num_samples / self.sample_rate
        feats = {k: np.asarray(row.features[k], dtype=np.float32) for k in self.layers}
        if self.window is None:
            if any(f.ndim != 1 for f in feats.values()):
                raise UsageError("Parquet holds pooled or windowed rows; for frames use --to kaldi or --to fairseq")
            count, times = 1, {}
        else:
            count = len(next(iter(feats.values())))
            start, end, partial = window_times(count, self.window[0], self.window[1], seconds)
            times = {"window": np.arange(count, dtype=np.int32), "start": start, "end": end, "partial": partial}
        values: dict[str, Any] = {"path": [row.name] * count}
        if row.segment is not None:
            source, begin, stop = row.segment
            values.update(source_path=[source] * count, segment_start=[begin] * count, segment_end=[stop] * count)
        values.update(num_samples=[row.num_samples] * count, seconds=[seconds] * count, **times)
        for name, value in values.items():
            self._columns.setdefault(name, []).extend(np.asarray(value).tolist() if isinstance(value, np.ndarray) else value)
        for k, f in feats.items():
            self._feats[k].append(f.reshape(count, -1))
            self._buffered += f.nbytes
        if self._buffered >= GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._columns:
            return
        pa = self.pa
        arrays = {name: pa.array(values) for name, values in self._columns.items()}
        for k, parts in self._feats.items():
            block = np.concatenate(parts)
            arrays[column_name(k)] = pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), block.shape[1])
        table = pa.table(arrays)
        if self._writer is None:
            self._writer = self.pq.ParquetWriter(self._temp, table.schema, use_dictionary=False)  # unique names, float lists: dictionaries gain nothing
        self._writer.write_table(table)
        self._columns, self._feats, self._buffered = {}, {k: [] for k in self.layers}, 0

    def _finish(self) -> None:
        self._flush()
        if self._writer is None:  # no rows: an empty table with the name columns
            self.pq.write_table(self.pa.table({"path": self.pa.array([], self.pa.string())}), self._temp)
        else:
            self._writer.close()

    def _discard(self) -> None:
        if self._writer is not None:
            self._writer.close()

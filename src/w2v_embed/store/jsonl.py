"""A second back end for the writer interface: pooled rows as JSON Lines into a stream (`-o -`).

`w2v-embed extract ... -o - | python train.py` (or `| jq`): one object per row — per file, or per
window with its times — written and flushed as each file finishes. Frame-level output is refused:
at 50 rows a second per file it belongs in HDF5, not in text. Nothing is resumable (a pipe has no
past), failures are the caller's to report (on stderr), so stdout carries rows only.

Units (`extract --units -o -`) are one object per input too: {"path", "seconds", "units"[, "durations"]}.

Rows come out in input order: a row that finishes before an earlier one waits (pooled rows are a few
kB) until every earlier input has been written or has failed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, TextIO

import numpy as np

from ..errors import UsageError, W2VEmbedError
from ..pooling import window_times
from .layout import RunInfo, Segment
from .sink import InOrder, Row


class JsonLinesWriter:
    """The Sink interface over a text stream: rows as JSON Lines, in the order of `indices`."""

    frame_sink = None  # no frames: a pipe has pooled rows or units only
    stored_segments: Mapping[str, Segment] = MappingProxyType({})  # a pipe has no past to resume

    def __init__(self, stream: TextIO, info: RunInfo, indices: Iterable[int] = ()) -> None:
        info.validate()
        if info.frame_level and not info.units:
            raise UsageError(
                "-o -: frame-level output (--pool none) is 50 rows per second of audio per layer, too much "
                "for a pipe; write it to an .h5 file, or pool it (--pool mean, --window)"
            )
        self.stream, self.info = stream, info
        self.done: set[str] = set()
        self._order = InOrder(sorted(indices))  # rows finished out of order wait here for the ones before

    def add(self, row: Row) -> None:
        self.done.add(row.name)
        self._arrived(row.index, self._lines(row))

    def _lines(self, row: Row) -> list[dict[str, Any]]:
        """One row's JSON lines: one per file or segment, or one per window."""
        info = self.info
        segment = row.segment
        where = {"source_path": segment[0], "segment_start": segment[1], "segment_end": segment[2]} if segment else {}
        seconds = row.num_samples / info.sample_rate
        if info.units:
            columns = {str(c.key): np.asarray(row.features[c.key]).tolist() for c in info.columns()}
            return [{"path": row.name, **where, "seconds": seconds, **columns}]
        arrays = {str(k): np.asarray(row.features[k], np.float32) for k in info.layers}
        if not info.windowed:
            return [{"path": row.name, **where, "seconds": seconds, "layers": {k: v.tolist() for k, v in arrays.items()}}]
        count = len(next(iter(arrays.values())))
        starts, ends, partial = window_times(count, info.window_seconds, info.hop_seconds, seconds)
        return [{"path": row.name, **where, "start": float(starts[w]), "end": float(ends[w]),
                 "partial": bool(partial[w]), "layers": {k: v[w].tolist() for k, v in arrays.items()}}
                for w in range(count)]

    def add_failure(self, index: int, name: str, error: str) -> None:
        """Failures are reported by the caller (stderr); stdout carries rows only."""
        self._arrived(index, [])

    def _arrived(self, index: int, lines: list[dict[str, Any]]) -> None:
        for ready in self._order.put(index, lines):
            self._write(ready)

    def _write(self, lines: list[dict[str, Any]]) -> None:
        if lines:  # ASCII: names that are not UTF-8 survive as \\udcXX
            self._flushed("".join(json.dumps(line) + "\n" for line in lines))

    def _flushed(self, text: str = "") -> None:
        """Write and flush (a consumer sees each file as it finishes). A stream that cannot take the
        rows (/dev/full, a closed file) ends the run with one line; a reader that left (`| head`)
        raises BrokenPipeError, which the CLI ends quietly, as Unix tools do."""
        try:
            if text:
                self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as exc:  # ValueError: "I/O operation on closed file"
            where = getattr(self.stream, "name", "the stream")
            raise W2VEmbedError(f"-o -: cannot write the rows to {where}: {getattr(exc, 'strerror', None) or exc}") from exc

    def close(self) -> None:
        """Write what still waits (inputs not numbered in `indices`, or after a gap), in input order."""
        for lines in self._order.drain():
            self._write(lines)
        self._flushed()

    def abort(self) -> None:
        """Stop after an error: what was written stays (each row was flushed); rows waiting for an
        earlier one are not written after it, and the error in flight is the one to show."""

    def __enter__(self) -> JsonLinesWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

"""A second back end for the writer interface: pooled rows as JSON Lines into a stream (`-o -`).

`w2v-embed extract ... -o - | python train.py` (or `| jq`): one object per row — per file, or per
window with its times — written and flushed as each file finishes. Frame-level output is refused:
at 50 rows a second per file it belongs in HDF5, not in text. Nothing is resumable (a pipe has no
past), failures are the caller's to report (on stderr), so stdout carries rows only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TextIO

import numpy as np

from ..errors import UsageError, W2VEmbedError
from ..layers import Layer
from ..pooling import window_times
from .layout import RunInfo, Segment


class JsonLinesWriter:
    """FeatureWriter's interface (add, add_failure, done, context manager) over a text stream."""

    def __init__(self, stream: TextIO, info: RunInfo) -> None:
        info.validate()
        if info.frame_level:
            raise UsageError(
                "-o -: frame-level output (--pool none) is 50 rows per second of audio per layer, too much "
                "for a pipe; write it to an .h5 file, or pool it (--pool mean, --window)"
            )
        self.stream, self.info = stream, info
        self.done: set[str] = set()

    def add(
        self,
        name: str,
        num_samples: int,
        source_sample_rate: int,
        features: Mapping[Layer, np.ndarray],
        segment: Segment | None = None,
    ) -> None:
        info = self.info
        where = {"source_path": segment[0], "segment_start": segment[1], "segment_end": segment[2]} if segment else {}
        rows = {str(k): np.asarray(features[k], np.float32) for k in info.layers}
        if info.windowed:
            count = len(next(iter(rows.values())))
            starts, ends, partial = window_times(count, info.window_seconds, info.hop_seconds, num_samples / info.sample_rate)
            for w in range(count):
                self._write({"path": name, **where, "start": float(starts[w]), "end": float(ends[w]), "partial": bool(partial[w]),
                             "layers": {k: v[w].tolist() for k, v in rows.items()}})
        else:
            self._write({"path": name, **where, "seconds": num_samples / info.sample_rate,
                         "layers": {k: v.tolist() for k, v in rows.items()}})
        self.done.add(name)

    def add_failure(self, name: str, error: str) -> None:
        """Failures are reported by the caller (stderr); stdout carries rows only."""

    def _write(self, row: dict[str, Any]) -> None:
        self._flushed(json.dumps(row) + "\n")  # ASCII: names that are not UTF-8 survive as \\udcXX

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

    def __enter__(self) -> JsonLinesWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:  # else each row was flushed already, and the error in flight is the one to show
            self._flushed()

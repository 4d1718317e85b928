"""One file's frame-level features written to disk as its chunks come out, not after the file ends.

Frames of a two-hour file are 1.1 GB per layer of a base model; held until the file is done, 13
layers would not fit. A FrameStream is a segment of its own (the segment layout, one row), created
as `stream-N.h5.tmp` when the first chunk arrives, written chunk by chunk in any order, and renamed
to a numbered segment only when the file is complete — so a partly written file is never part of
the output: a crash leaves a `.tmp` that resume deletes, and the file is redone.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from ..layers import Layer, dataset_name
from .files import create_h5, fsync_file, writing
from .layout import SEGMENT_DATASETS, TRUNCATED, RunInfo, create_layout, encode_strings
from .sink import Row


class FrameStream:
    """The frames of file `name` ([num_frames, width] per layer) on their way into a segment."""

    def __init__(self, temp: Path, info: RunInfo, num_frames: int) -> None:
        self.temp, self.info, self.num_frames = temp, info, num_frames
        self._context: AbstractContextManager[Any] = create_h5(temp)
        with writing(temp.parent):
            self.file = self._context.__enter__()
            create_layout(self.file, info, 1, num_frames, [], resizable=False)

    def write(self, layer: Layer, start: int, frames: np.ndarray) -> None:
        with writing(self.temp.parent):
            self.file[dataset_name(layer)][start : start + len(frames)] = frames.astype(self.info.dtype, copy=False)

    def finish(self, final: Path, row: Row) -> None:
        """Complete the row (its features are these frames) and rename the segment into place
        (crash-safe like any commit)."""
        f = self.file
        with writing(self.temp.parent):
            f["paths"][:] = encode_strings([row.name])
            f["input_index"][:] = [row.index]
            f["num_samples"][:] = [int(row.num_samples)]
            f["source_sample_rate"][:] = [int(row.source_sample_rate)]
            f["offsets"][:] = [0, self.num_frames]
            if row.segment is not None:
                f[TRUNCATED][:] = [row.truncated]
                for key, value in zip(SEGMENT_DATASETS, row.segment):
                    f[key][:] = encode_strings([value]) if key == "source_path" else [value]
            self._context.__exit__(None, None, None)
            fsync_file(self.temp)
            os.replace(self.temp, final)

    def discard(self) -> None:
        try:
            self._context.__exit__(None, None, None)
        except OSError:
            pass  # a stream that failed to write is thrown away anyway
        self.temp.unlink(missing_ok=True)

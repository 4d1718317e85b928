"""Segments of the parts folder, as the FeatureWriter writes them: its buffered rows at a commit
(`write_segment`, by a Committer), or one long file's frames as they come (FrameStream).

One file's frame-level features are written to disk as its chunks come out, not after the file ends.

Frames of a two-hour file are 1.1 GB per layer of a base model; held until the file is done, 13
layers would not fit. A FrameStream is a segment of its own (the segment layout, one row), created
as `stream-N.h5.tmp` when the first chunk arrives, written chunk by chunk in any order, and renamed
to a numbered segment only when the file is complete — so a partly written file is never part of
the output: a crash leaves a `.tmp` that resume deletes, and the file is redone.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..layers import Layer, dataset_name
from ..pooling import window_times
from .files import create_h5, fsync_file, segment_numbers, write_atomically, writing
from .layout import SEGMENT_DATASETS, TRUNCATED, WINDOW_DATASETS, RunInfo, create_layout, encode_strings
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
        with writing(self.temp.parent):
            write_rows(self.file, self.info, [row], [self.num_frames])
            self._context.__exit__(None, None, None)
            fsync_file(self.temp)
            os.replace(self.temp, final)

    def discard(self) -> None:
        try:
            self._context.__exit__(None, None, None)
        except OSError:
            pass  # a stream that failed to write is thrown away anyway
        self.temp.unlink(missing_ok=True)


@dataclass
class Buffer:
    """Results not yet committed to a segment."""

    entries: list[Row] = field(default_factory=list)  # features checked and in the storage dtype
    failures: list[tuple[int, str, str]] = field(default_factory=list)  # (input index, name, reason)
    nbytes: int = 0

    def __len__(self) -> int:
        return len(self.entries) + len(self.failures)

    def __add__(self, later: Buffer) -> Buffer:
        return Buffer(self.entries + later.entries, self.failures + later.failures, self.nbytes + later.nbytes)


def write_segment(path: Path, info: RunInfo, buffer: Buffer) -> None:
    """The buffered rows (in input order) and failures as one segment file."""
    entries = sorted(buffer.entries, key=lambda e: e.index)  # in input order: the final merge copies runs of rows
    columns = info.columns()
    lengths = [len(e.features[columns[0].key]) for e in entries] if info.has_offsets else []
    with create_h5(path) as f:
        failures = [(name, error) for _, name, error in sorted(buffer.failures, key=lambda x: x[0])]
        create_layout(f, info, len(entries), sum(lengths), failures, resizable=False)
        write_rows(f, info, entries, lengths)
        offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        for column in columns:
            if entries and info.has_offsets:  # file by file: no concatenated copy of long files' frames
                for entry, start, stop in zip(entries, offsets[:-1], offsets[1:]):
                    f[column.name][start:stop] = entry.features[column.key]
            elif entries:
                f[column.name][:] = np.stack([e.features[column.key] for e in entries])


def write_rows(f: Any, info: RunInfo, rows: list[Row], lengths: list[int]) -> None:
    """Everything of `rows` but their features (names, sizes, offsets from `lengths`, segments, window
    times) into a segment laid out for them; one place for added and streamed rows alike."""
    if info.has_offsets:
        f["offsets"][:] = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    if not rows:
        return
    f["paths"][:] = encode_strings([e.name for e in rows])
    f["input_index"][:] = [e.index for e in rows]
    f["num_samples"][:] = [int(e.num_samples) for e in rows]
    f["source_sample_rate"][:] = [int(e.source_sample_rate) for e in rows]
    if info.segments:
        for key, column in zip(SEGMENT_DATASETS, zip(*(e.segment for e in rows))):
            f[key][:] = encode_strings(column) if key == "source_path" else column
        f[TRUNCATED][:] = [e.truncated for e in rows]
    if info.windowed:
        times = [window_times(n, info.window_seconds, info.hop_seconds, e.num_samples / info.sample_rate)
                 for n, e in zip(lengths, rows)]
        for name, column in zip(WINDOW_DATASETS, zip(*times)):
            f[name][:] = np.concatenate(column)


class Committer:
    """Buffers → numbered segments of the parts folder, each whole or absent (written under a temporary
    name, fsynced, renamed). With `background` (frame-level buffers are big), a thread of its own writes
    them one at a time while the caller goes on. Rows of a write that failed are kept in `unwritten`
    (the next commit, abort's, writes them again); the failure itself is raised at once, or for a
    background write by the next `wait`."""

    def __init__(self, parts: Path, info: RunInfo, background: bool) -> None:
        self.parts, self.info = parts, info
        self.unwritten = Buffer()
        self._next = max(segment_numbers(parts), default=0) + 1
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="w2v-embed-commit") if background else None
        self._pending: tuple[Future[None], Buffer] | None = None

    @property
    def background(self) -> bool:
        return self._thread is not None

    def next_segment(self) -> Path:
        """The next segment's name (also for a finished FrameStream)."""
        path = self.parts / f"seg-{self._next:06d}.h5"
        self._next += 1
        return path

    def take_unwritten(self) -> Buffer:
        taken, self.unwritten = self.unwritten, Buffer()
        return taken

    def write(self, buffer: Buffer, wait: bool = True) -> None:
        """`buffer` as the next segment: now, or (`wait` False, background only) on the thread."""
        final = self.next_segment()

        def write() -> None:
            with writing(self.parts):
                write_atomically(final, final.with_name(final.name + ".tmp"), lambda t: write_segment(t, self.info, buffer))

        if self._thread is not None and not wait:
            self._pending = (self._thread.submit(write), buffer)
            return
        try:
            write()
        except BaseException:
            self.unwritten = buffer + self.unwritten
            raise

    def wait(self) -> None:
        """Until the segment being written is on disk."""
        if self._pending is None:
            return
        done, buffer = self._pending
        self._pending = None
        try:
            done.result()
        except BaseException:
            self.unwritten = buffer + self.unwritten
            raise

    def shutdown(self) -> None:
        if self._thread is not None:
            self._thread.shutdown()

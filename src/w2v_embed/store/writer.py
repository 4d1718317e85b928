"""FeatureWriter: results into OUT.h5 crash-safely, resumably.

HDF5 files are not crash-safe: a process killed mid-write can leave the whole file unreadable. So a
run never writes OUT.h5 while it works. Finished files are buffered in memory and committed as
small segment files in `OUT.h5.parts/`, each written under a temporary name and renamed into place,
so a segment is either whole or absent. Only `close()` builds OUT.h5: it streams the old OUT.h5 (when
resuming a finished file) and the segments into `OUT.h5.tmp-<pid>` and renames that over OUT.h5. A
kill at any moment therefore loses at most the buffered, uncommitted files, which `--resume` redoes.
`--overwrite` leaves the old OUT.h5 alone until that rename; a marker file in the parts folder says
the segments replace it rather than extend it, so a resumed overwrite never merges the old rows in.

Segments use the very layout of the final file, so one merge routine reads both; their layer
datasets are contiguous, so the merge copies those bytes file to file in the kernel (store.merge).
Frame-level segments are big: a committer thread writes them (one at a time) while the model runs on.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import W2VEmbedError
from ..layers import Layer
from ..paths import check_output
from .files import (
    atomic_write_text,
    fsync_dir,
    parts_dir,
    remove_merge_temps,
    segment_files,
    write_atomically,
    writing,
)
from .layout import (
    BUFFER_BYTES,
    MODES,
    REPLACES_MARKER,
    RunInfo,
    Segment,
    check_resumable,
    open_output,
    read_strings,
    stored_info,
)
from .lock import Lock
from .merge import merge_files
from .sink import Row
from .stream import Buffer, Committer, FrameStream


class FeatureWriter:
    """Collects per-file results into OUT.h5, crash-safely (see the module docstring).

    `done` holds the names already stored (from an earlier run when resuming, plus those added
    since), so the caller can skip them; names that failed before are not in it and get retried;
    `stored_segments` has the (source, start, end) of stored segment rows, for a resume to compare.
    Use it as a context manager: a normal exit merges (close), an exception keeps the parts (abort).

    Rows come in completion order; OUT.h5 has them in input order: by `order` (name -> position in
    this run's listing) where given, else by each row's `Row.index`. Rows of an earlier run that the
    listing no longer has follow the others.

    `finish` (merged HDF5, OUT) makes OUT from the assembled rows when OUT is not this HDF5 layout
    (units as fairseq's .km text): resume then continues the parts, but never a finished OUT.
    """

    def __init__(
        self,
        path: Path,
        info: RunInfo,
        mode: str = "new",
        commit_every_files: int = 64,
        commit_every_seconds: float = 20.0,
        order: Mapping[str, int] | None = None,
        finish: Callable[[Path, Path], None] | None = None,
    ) -> None:
        info.validate()
        if mode not in MODES:
            raise W2VEmbedError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        if commit_every_files < 1 or commit_every_seconds < 0:
            raise W2VEmbedError("commit_every_files must be >= 1 and commit_every_seconds >= 0")
        self.path = Path(path)
        check_output(self.path, replace=True, example="features.h5")  # a folder or device: refused in any mode
        self.info = info
        self.parts = parts_dir(self.path)
        self.commit_every_files = commit_every_files
        self.commit_every_seconds = commit_every_seconds
        self.done: set[str] = set()
        self.stored_segments: dict[str, Segment] = {}
        self.order = order
        self.finish = finish
        self._buffer = Buffer()
        self._streams: dict[str, FrameStream] = {}  # frame-level files being written as their chunks come
        self._closed = False
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = Lock(self.path)
            try:
                self._prepare(mode)
            except BaseException:
                self._lock.release()
                raise
        # Frame-level segments are big: written by a thread of their own while the model runs on.
        self._committer = Committer(self.parts, info, background=info.frame_level)
        self._last_commit = time.monotonic()

    # -- setup -----------------------------------------------------------------------------------

    def _prepare(self, mode: str) -> None:
        """Apply the mode; runs with the lock held, so every leftover temp file is stale."""
        remove_merge_temps(self.path)
        if mode == "new" and (self.path.exists() or self.parts.exists()):
            existing = self.path if self.path.exists() else self.parts
            raise W2VEmbedError(f"{existing} exists; pass --resume to continue it or --overwrite to replace it")
        if mode == "overwrite":  # OUT.h5 itself stays readable until close() renames the new one over it
            shutil.rmtree(self.parts, ignore_errors=True)
            self.parts.mkdir()
            atomic_write_text(self.parts / REPLACES_MARKER, "")
        if mode == "resume" and self.finish is not None and self._finished():
            raise W2VEmbedError(f"{self.path} is finished, and it keeps no names to continue from; pass --overwrite to "
                                "redo it (an .h5 output can be extended with --resume)")
        if mode == "resume":
            self.done = self._scan_existing()
        self.parts.mkdir(exist_ok=True)
        run_json = self.parts / "run.json"
        if not run_json.exists():
            atomic_write_text(run_json, self.info.to_json())

    def _scan_existing(self) -> set[str]:
        """Names already stored in OUT.h5 and the segments, after checking they match this run."""
        done: set[str] = set()
        if self._merges_output():
            with open_output(self.path, units=None) as f:
                check_resumable(self.path, stored_info(f), self.info)
                done.update(self._stored_names(f))
        if not self.parts.exists():
            return done
        for stale in self.parts.glob("*.tmp"):
            stale.unlink(missing_ok=True)  # a commit killed half-way
        run_json = self.parts / "run.json"
        if run_json.exists():
            try:
                stored = RunInfo.from_dict(json.loads(run_json.read_text()))
            except (ValueError, TypeError) as exc:
                raise W2VEmbedError(f"{run_json}: unreadable ({exc}); pass --overwrite to start over") from exc
            check_resumable(self.parts, stored, self.info)
        for segment in segment_files(self.parts):
            with open_output(segment, units=None) as f:
                check_resumable(segment, stored_info(f), self.info)
                done.update(self._stored_names(f))
        return done

    def _stored_names(self, f: Any) -> list[str]:
        names = read_strings(f["paths"])
        if self.info.segments:
            sources = read_strings(f["source_path"])
            self.stored_segments.update(zip(names, zip(sources, f["segment_start"][()].tolist(), f["segment_end"][()].tolist())))
        return names

    @property
    def frame_sink(self) -> FeatureWriter | None:
        """Where the Embedder may stream a long file's frames (frame-level features only)."""
        return self if self.info.frame_level and not self.info.units else None

    # -- adding results --------------------------------------------------------------------------

    def add(self, row: Row) -> None:
        """Store one row's features: pooled (D,) / (2D,) per layer, or frames (T, D) with one T for all
        layers; `row.segment` (source path, start, end) when the row is a part of a recording."""
        self._check_open()
        if row.name in self.done:
            raise W2VEmbedError(f"{row.name}: already stored in {self.path}; skip the names in writer.done")
        if (row.segment is None) == self.info.segments:
            raise W2VEmbedError(f"{row.name}: {'a segment needs' if self.info.segments else 'no segment expected in'} a run "
                                f"with segments={self.info.segments}")
        if row.name in self._streams:  # its frames are on disk already: complete that segment
            self._finish_stream(row)
            return
        arrays = self.info.checked_features(row.name, row.features)
        self._buffer.entries.append(replace(row, features=arrays, num_samples=int(row.num_samples),
                                            source_sample_rate=int(row.source_sample_rate)))
        self._buffer.nbytes += sum(a.nbytes for a in arrays.values())
        self.done.add(row.name)
        self._maybe_commit()

    def write_frames(self, name: str, layer: Layer, start: int, frames: np.ndarray, num_frames: int) -> None:
        """Frames [start, start + len(frames)) of one layer of a frame-level file, written to disk now;
        `add` completes the file, `discard_frames` drops it. Bounds memory by a chunk, not a file."""
        self._check_open()
        if not self.info.frame_level:
            raise W2VEmbedError(f"{name}: frames are streamed only for frame-level output (pooling none)")
        stream = self._streams.get(name)
        if stream is None:
            temp = self.parts / f"stream-{len(self._streams)}-{time.monotonic_ns()}.h5.tmp"
            stream = self._streams[name] = FrameStream(temp, self.info, num_frames)
        stream.write(layer, start, frames)

    def discard_frames(self, name: str) -> None:
        """Drop a file's streamed frames (it failed after all)."""
        stream = self._streams.pop(name, None)
        if stream is not None:
            stream.discard()

    def _finish_stream(self, row: Row) -> None:
        self._lock.verify()
        final = self._committer.next_segment()
        stream = self._streams.pop(row.name)
        try:
            stream.finish(final, row)
        except BaseException:
            stream.discard()
            raise
        fsync_dir(self.parts)
        self.done.add(row.name)

    def add_failure(self, index: int, name: str, error: str) -> None:
        """Record why a file could not be embedded; a later successful retry removes the record."""
        self._check_open()
        self.discard_frames(name)
        self._buffer.failures.append((index, name, " ".join(str(error).split()) or "unknown error"))
        self._maybe_commit()

    def _maybe_commit(self) -> None:
        due = time.monotonic() - self._last_commit >= self.commit_every_seconds
        limit = BUFFER_BYTES // 2 if self._committer.background else BUFFER_BYTES  # one filling, one being written
        if len(self._buffer) >= self.commit_every_files or self._buffer.nbytes >= limit or due:
            self._commit(wait=False)

    def commit(self) -> None:
        """Make the buffered results crash-safe now, as one new segment (nothing to do when empty)."""
        self._check_open()
        self._commit()

    def _commit(self, wait: bool = True) -> None:
        """Write the buffer as the next segment; without `wait`, a frame-level one on the committer thread
        (a kill meanwhile loses it like any buffered rows; a failure is raised by the next commit, and the
        rows of a failed write are in the buffer again for abort())."""
        self._last_commit = time.monotonic()
        self._lock.verify()
        self._buffer = self._committer.take_unwritten() + self._buffer
        self._committer.wait()
        if len(self._buffer):
            buffer, self._buffer = self._buffer, Buffer()
            self._committer.write(buffer, wait)

    # -- finishing -------------------------------------------------------------------------------

    def close(self) -> Path:
        """Commit, merge OUT.h5 + segments into a new OUT.h5 (atomically), remove the parts; returns OUT."""
        if self._closed:
            return self.path
        try:
            self._commit()
            temp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
            sources = ([self.path] if self._merges_output() else []) + segment_files(self.parts)
            order = self.order if self.order is not None else "stored"
            if self.finish is None:
                with writing(self.path):  # the lock is checked again before the rename: a merge can take minutes
                    write_atomically(self.path, temp, lambda t: merge_files(sources, t, self.info, order), self._lock.verify)
            else:
                merged = self.parts / "assembled.h5"
                with writing(self.parts):
                    merge_files(sources, merged, self.info, order)
                self._lock.verify()
                self.finish(merged, self.path)
            shutil.rmtree(self.parts, ignore_errors=True)  # a leftover is harmless: merge drops duplicates
        finally:
            self._finish()
        return self.path

    def abort(self) -> None:
        """Commit what is buffered and stop without merging (Ctrl-C); `--resume` continues from the parts."""
        if self._closed:
            return
        try:
            self._commit()
            if not segment_files(self.parts):  # nothing was computed: leave no folder that blocks a new run
                shutil.rmtree(self.parts, ignore_errors=True)
        finally:
            self._finish()

    def _finished(self) -> bool:
        """Whether OUT is a finished earlier result (not when an --overwrite run is replacing it)."""
        return self.path.exists() and not (self.parts / REPLACES_MARKER).exists()

    def _merges_output(self) -> bool:
        """Whether the existing OUT.h5 is part of this run's result."""
        return self.finish is None and self._finished()

    def _finish(self) -> None:
        for name in list(self._streams):  # files cut off mid-way: redone on resume, never half-present
            self.discard_frames(name)
        self._committer.shutdown()
        self._closed = True
        self._lock.release()

    def _check_open(self) -> None:
        if self._closed:
            raise W2VEmbedError(f"the writer for {self.path} is closed; open a new one with mode 'resume'")

    def __enter__(self) -> FeatureWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

"""Pool frame-level features into one vector per file, over all of the file's frames.

Pooling is incremental (chunks arrive one at a time, in any order) so that a two-hour file never
needs its frames in memory; the result equals pooling the concatenated frames at once (a mean of
chunk means would not: chunks differ in length). Frame-level output ("none") is written into one
array of the file's frame count as chunks arrive, so a long file's frames are held once, not once
per chunk plus once concatenated.
"""

from __future__ import annotations

import numpy as np

POOLING_MODES = ("mean", "max", "meanstd", "none")


def pool(frames: np.ndarray, mode: str) -> np.ndarray:
    """Reference pooling of [frames, dim] in one go (what the accumulators must equal)."""
    pooler = Pooler(mode, len(frames))
    pooler.add(0, frames)
    return pooler.result()


class Pooler:
    """Accumulates the frames of one file of `num_frames` frames, chunk by chunk, in any order."""

    def __init__(self, mode: str, num_frames: int) -> None:
        if mode not in POOLING_MODES:
            raise ValueError(f"pooling {mode!r}: expected one of {', '.join(POOLING_MODES)}")
        self.mode = mode
        self.num_frames = num_frames
        self.count = 0
        self.frames: np.ndarray | None = None  # "none": the file's frames, filled as chunks arrive
        self.mean: np.ndarray | None = None  # running mean, float64
        self.m2: np.ndarray | None = None  # running sum of squared deviations (Chan et al.)
        self.max: np.ndarray | None = None

    def add(self, start: int, frames: np.ndarray) -> None:
        """One chunk's frames, which are the file's frames [start, start + len(frames))."""
        if self.mode == "none":
            if start < 0 or start + len(frames) > self.num_frames:
                raise ValueError(f"frames [{start}, {start + len(frames)}) outside the file's {self.num_frames}")
            if self.frames is None:
                self.frames = np.empty((self.num_frames, *frames.shape[1:]), np.float32)
            self.frames[start : start + len(frames)] = frames
            self.count += len(frames)
            return
        if len(frames) == 0:
            return
        if self.mode == "max":
            chunk_max = frames.max(axis=0)
            self.max = chunk_max if self.max is None else np.maximum(self.max, chunk_max)
            self.count += len(frames)
            return
        x = frames.astype(np.float64)
        n, chunk_mean = len(x), x.mean(axis=0)
        chunk_m2 = ((x - chunk_mean) ** 2).sum(axis=0)
        if self.mean is None:
            self.mean, self.m2 = chunk_mean, chunk_m2
        else:
            total = self.count + n
            delta = chunk_mean - self.mean
            self.mean = self.mean + delta * (n / total)
            self.m2 = self.m2 + chunk_m2 + delta**2 * (self.count * n / total)
        self.count += n

    def result(self) -> np.ndarray:
        """mean → (D,); max → (D,); meanstd → (2D,) mean then population std; none → (frames, D)."""
        if self.count == 0:
            raise ValueError("no frames to pool")
        if self.mode == "none":
            if self.count != self.num_frames:
                raise ValueError(f"{self.count} of {self.num_frames} frames arrived")
            return self.frames
        if self.mode == "max":
            return self.max.astype(np.float32)
        if self.mode == "mean":
            return self.mean.astype(np.float32)
        std = np.sqrt(self.m2 / self.count)
        return np.concatenate([self.mean, std]).astype(np.float32)


def window_ranges(num_frames: int, frame_rate: float, frame_offset: float, window: float, hop: float) -> np.ndarray:
    """[start, stop) frames of each window [w·hop, w·hop + window) seconds, a frame belonging to the
    windows that hold its centre time (frame_offset + i / frame_rate). Windows start every `hop` up to
    the last frame's centre, so none is empty when window >= 1 / frame_rate. -> (windows, 2) int64."""
    if num_frames <= 0:
        return np.zeros((0, 2), np.int64)
    last_centre = frame_offset + (num_frames - 1) / frame_rate
    starts = np.arange(int(np.floor(last_centre / hop + 1e-9)) + 1) * hop

    def first_frame_at_or_after(t: np.ndarray) -> np.ndarray:
        return np.clip(np.ceil((t - frame_offset) * frame_rate - 1e-9), 0, num_frames).astype(np.int64)

    return np.stack([first_frame_at_or_after(starts), first_frame_at_or_after(starts + window)], axis=1)


def window_times(num_windows: int, window: float, hop: float, duration: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and end (seconds) of each window, and whether it runs past the audio's end (the last,
    partial windows are kept and flagged, like HEAR's timestamp embeddings keep them)."""
    starts = np.arange(num_windows) * hop
    ends = starts + window
    return starts, ends, ends > duration + 1e-9


class WindowPooler:
    """Pools each window of a file's frames as chunks arrive; a window is finished (and its
    accumulator dropped) as soon as its last frame arrives, so a long file holds only the result rows."""

    def __init__(self, mode: str, ranges: np.ndarray) -> None:
        if mode == "none":
            raise ValueError("windows are pooled: mean, max or meanstd")
        self.mode, self.ranges = mode, ranges
        self.open: dict[int, Pooler] = {}
        self.rows: np.ndarray | None = None
        self.done = 0

    def add(self, start: int, frames: np.ndarray) -> None:
        stop = start + len(frames)
        first = int(np.searchsorted(self.ranges[:, 1], start, side="right"))  # windows ending after start
        last = int(np.searchsorted(self.ranges[:, 0], stop, side="left"))  # windows starting before stop
        for w in range(first, last):
            a, b = (int(v) for v in self.ranges[w])
            lo, hi = max(a, start), min(b, stop)
            if lo >= hi:
                continue
            pooler = self.open.setdefault(w, Pooler(self.mode, b - a))
            pooler.add(lo - a, frames[lo - start : hi - start])
            if pooler.count == b - a:
                row = pooler.result()
                if self.rows is None:
                    self.rows = np.empty((len(self.ranges), *row.shape), np.float32)
                self.rows[w] = row
                del self.open[w]
                self.done += 1

    def result(self) -> np.ndarray:
        """(windows, D), or (windows, 2D) for meanstd."""
        if self.done != len(self.ranges) or self.rows is None:
            raise ValueError(f"{self.done} of {len(self.ranges)} windows complete")
        return self.rows

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

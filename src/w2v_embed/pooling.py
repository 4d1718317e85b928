"""Pool frame-level features into one vector per file, over all of the file's frames.

Pooling is incremental (chunks arrive one at a time, in any order) so that a two-hour file never
needs its frames in memory; the result equals pooling the concatenated frames at once (a mean of
chunk means would not: chunks differ in length).
"""

from __future__ import annotations

import numpy as np

from .chunking import stitch

POOLING_MODES = ("mean", "max", "meanstd", "none")


def pool(frames: np.ndarray, mode: str) -> np.ndarray:
    """Reference pooling of [frames, dim] in one go (what the accumulators must equal)."""
    pooler = Pooler(mode)
    pooler.add(0, frames)
    return pooler.result()


class Pooler:
    """Accumulates chunk frames of one file; `add(index, frames)` with the chunk's position in the file."""

    def __init__(self, mode: str) -> None:
        if mode not in POOLING_MODES:
            raise ValueError(f"pooling {mode!r}: expected one of {', '.join(POOLING_MODES)}")
        self.mode = mode
        self.count = 0
        self.pieces: dict[int, np.ndarray] = {}
        self.mean: np.ndarray | None = None  # running mean, float64
        self.m2: np.ndarray | None = None  # running sum of squared deviations (Chan et al.)
        self.max: np.ndarray | None = None

    def add(self, index: int, frames: np.ndarray) -> None:
        if self.mode == "none":
            self.pieces[index] = frames.copy()  # do not keep the whole batch output alive
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
        if self.mode == "none":
            return stitch([self.pieces[i] for i in sorted(self.pieces)])
        if self.count == 0:
            raise ValueError("no frames to pool")
        if self.mode == "max":
            return self.max.astype(np.float32)
        if self.mode == "mean":
            return self.mean.astype(np.float32)
        std = np.sqrt(self.m2 / self.count)
        return np.concatenate([self.mean, std]).astype(np.float32)

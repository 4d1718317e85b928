"""Split long signals into overlapping chunks on the frame grid.

Chunk starts are multiples of the frame hop, so chunk frame j is whole-file frame start/hop + j and
its CNN features are exactly the unchunked ones. Each chunk carries `context` frames of extra audio
on both sides for the transformer; only its central `core` frames are kept, so the stitched output
has exactly the whole file's frame count and every frame sits at its true timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrameGrid:
    """The conv stack's geometry, from the model metadata."""

    conv_kernel: tuple[int, ...]
    conv_stride: tuple[int, ...]

    @property
    def hop(self) -> int:
        return int(np.prod(self.conv_stride))

    @property
    def receptive_field(self) -> int:
        field, jump = 1, 1
        for kernel, stride in zip(self.conv_kernel, self.conv_stride):
            field += (kernel - 1) * jump
            jump *= stride
        return field

    def num_frames(self, num_samples: int) -> int:
        """Frames of a signal of `num_samples` (0 when shorter than the receptive field)."""
        for kernel, stride in zip(self.conv_kernel, self.conv_stride):
            num_samples = max((num_samples - kernel) // stride + 1, 0)
        return num_samples

    def samples_for(self, num_frames: int) -> int:
        """Fewest samples that yield `num_frames` frames."""
        return 0 if num_frames <= 0 else (num_frames - 1) * self.hop + self.receptive_field


@dataclass(frozen=True)
class Chunk:
    """Feed samples [start, stop) to the model; keep its frames [keep_start, keep_stop) as file frames [frame_start, …)."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int
    frame_start: int

    @property
    def num_kept(self) -> int:
        return self.keep_stop - self.keep_start


def plan_chunks(num_samples: int, grid: FrameGrid, chunk_frames: int, context_frames: int) -> list[Chunk]:
    """Chunks covering all frames of a signal; one chunk when it fits (or chunk_frames <= 0)."""
    total = grid.num_frames(num_samples)
    if total == 0:
        return []
    if chunk_frames <= 0 or total <= chunk_frames + context_frames:
        return [Chunk(0, num_samples, 0, total, 0)]
    chunks = []
    for core_start in range(0, total, chunk_frames):
        core_stop = min(core_start + chunk_frames, total)
        first = max(core_start - context_frames, 0)
        last = min(core_stop + context_frames, total)  # exclusive, in file frames
        start = first * grid.hop
        stop = start + grid.samples_for(last - first)
        chunks.append(Chunk(start, stop, core_start - first, core_stop - first, core_start))
    return chunks


def seconds_to_frames(seconds: float, grid: FrameGrid, sample_rate: int) -> int:
    return int(round(seconds * sample_rate / grid.hop))

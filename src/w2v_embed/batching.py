"""Group chunks of similar length into padded batches.

Padding costs compute, so chunks are sorted by length before they are cut into batches; the
exported graph makes every row exact whatever else shares its batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def make_batches(lengths: Sequence[int], max_rows: int, max_samples: int) -> list[list[int]]:
    """Indices into `lengths`, longest first, cut so that rows x longest <= max_samples (a too-long one alone)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and (len(current) >= max_rows or (len(current) + 1) * longest > max_samples):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pad_batch(signals: Sequence[np.ndarray], multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded [rows, longest rounded up to `multiple`, ...] float32 batch and the int64 valid lengths
    (signals are padded along their first axis: samples, or the frames of fbank features).

    Rounding the width up (on GPUs) lets the runtime reuse kernels tuned for a few shapes; the graph
    masks padding, so the features do not change.
    """
    lengths = np.array([len(s) for s in signals], dtype=np.int64)
    width = -(-int(lengths.max()) // multiple) * multiple
    batch = np.zeros((len(signals), width, *signals[0].shape[1:]), dtype=np.float32)
    for row, signal in enumerate(signals):
        batch[row, : len(signal)] = signal
    return batch, lengths

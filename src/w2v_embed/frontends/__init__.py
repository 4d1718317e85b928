"""What the model eats, made from a 16 kHz mono signal: one module per kind of input.

`waveform` (wav2vec2 and its kin: normalised samples) and `fbank` (w2v-BERT 2.0: Kaldi-style log-mel
filter banks, stacked in pairs). The exported model's metadata names its front end (`frontend`),
so the Embedder needs no checkpoint to pick it. A front end prepares a whole file once (statistics
such as the normalisation's are the file's) and then cuts each chunk's model input out of it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..chunking import Chunk, FrameGrid
from ..errors import W2VEmbedError
from .fbank import Fbank
from .waveform import Waveform

FRONTENDS = ("waveform", "fbank")


class Frontend(Protocol):
    """A whole signal -> the model's input for it ([samples] or [frames, dims]) -> each chunk's slice."""

    name: str
    rate: float  # rows of model input per second of audio (the unit of the ONNX `lengths` input)

    def prepare(self, signal: np.ndarray, inplace: bool = False) -> np.ndarray: ...

    def cut(self, prepared: np.ndarray, chunk: Chunk) -> np.ndarray: ...


def frontend_for(name: str, sample_rate: int, grid: FrameGrid, do_normalize: bool) -> Frontend:
    """The front end an exported model records in its metadata (`w2v_embed.frontend`)."""
    if name == "waveform":
        return Waveform(sample_rate, do_normalize)
    if name == "fbank":
        return Fbank(sample_rate, grid)
    raise W2VEmbedError(f"the model needs front end {name!r}, which this w2v-embed does not have; upgrade w2v-embed")

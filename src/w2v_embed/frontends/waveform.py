"""The waveform front end (wav2vec2, HuBERT, WavLM, data2vec-audio): the model eats 16 kHz samples.

The only step before the model is transformers' Wav2Vec2FeatureExtractor normalisation (when the
checkpoint's preprocessor asks for it), over the whole signal, before it is chunked: a chunk of a long
file sees the same samples as the file run whole.
"""

from __future__ import annotations

import math

import numpy as np

from ..chunking import Chunk

NORM_EPS = 1e-7  # transformers' Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
_NORM_BLOCK = 1 << 20  # samples per float64 temporary in normalize()


def normalize(samples: np.ndarray, inplace: bool = False) -> np.ndarray:
    """(x - mean) / sqrt(var + 1e-7), as transformers' feature extractor does before the model.

    Sums are float64 so hours of audio do not lose precision; temporaries are blockwise so the
    only full-size allocation is the float32 result, and not even that with `inplace` (a float32
    array is then overwritten: two hours of audio are 460 MB).
    """
    x = np.asarray(samples, dtype=np.float32)
    flat = x.reshape(-1)
    out = flat if inplace and x is samples else np.empty_like(flat)
    if flat.size == 0:
        return out.reshape(x.shape)
    mean = float(flat.sum(dtype=np.float64)) / flat.size
    squares = 0.0
    for start in range(0, flat.size, _NORM_BLOCK):
        d = flat[start : start + _NORM_BLOCK].astype(np.float64) - mean
        squares += float(np.dot(d, d))
    std = math.sqrt(squares / flat.size + NORM_EPS)
    for start in range(0, flat.size, _NORM_BLOCK):
        piece = flat[start : start + _NORM_BLOCK].astype(np.float64)
        out[start : start + _NORM_BLOCK] = (piece - mean) / std
    return out.reshape(x.shape)


class Waveform:
    """Samples in, samples out: a chunk is its slice of the (normalised) signal."""

    name = "waveform"

    def __init__(self, sample_rate: int, do_normalize: bool) -> None:
        self.rate = float(sample_rate)  # model input rows per second of audio
        self.do_normalize = do_normalize

    def prepare(self, signal: np.ndarray, inplace: bool = False) -> np.ndarray:
        return normalize(signal, inplace) if self.do_normalize else signal

    def cut(self, prepared: np.ndarray, chunk: Chunk) -> np.ndarray:
        return prepared[chunk.start : chunk.stop]

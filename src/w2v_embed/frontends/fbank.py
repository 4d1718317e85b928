"""The fbank front end (w2v-BERT 2.0): SeamlessM4TFeatureExtractor's features, in numpy.

Kaldi-style 80-bin log-mel filter banks (25 ms Povey window, 10 ms hop, DC offset removed,
pre-emphasis 0.97, samples scaled to 16-bit range), each mel bin normalised to zero mean and unit
variance (ddof 1) over the whole file, then pairs of frames stacked into 160-dim rows at 50 Hz. A
trailing unpaired frame is dropped, as transformers masks it. The front end's geometry is a frame
grid like a conv stack's: kernel (400, 2), stride (160, 2), i.e. hop 320 samples and receptive field
560, so chunks start on pair boundaries and cut the whole file's rows exactly.
"""

from __future__ import annotations

import numpy as np

from ..chunking import Chunk, FrameGrid
from ..errors import W2VEmbedError

FRAME, HOP, FFT, MELS, STRIDE = 400, 160, 512, 80, 2
GRID = FrameGrid((FRAME, STRIDE), (HOP, STRIDE))  # what the export records as conv_kernel / conv_stride
SAMPLE_RATE = 16_000
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07  # float32 epsilon, as Kaldi
NORM_EPS = 1e-7
_BLOCK = 4096  # fbank frames per float64 temporary (2 MB of samples)


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_filters(sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """[FFT/2 + 1, MELS] triangles in mel space from 20 Hz to Nyquist (Kaldi's, as transformers builds them)."""
    centres = np.linspace(_mel(20.0), _mel(sample_rate // 2), MELS + 2)
    bins = _mel(sample_rate / FFT * np.arange(FFT // 2 + 1))
    slopes = centres[None, :] - bins[:, None]
    width = np.diff(centres)
    return np.maximum(0.0, np.minimum(-slopes[:, :-2] / width[:-1], slopes[:, 2:] / width[1:]))


FILTERS = mel_filters()
WINDOW = np.hanning(FRAME) ** 0.85  # Povey


def num_fbank_frames(num_samples: int) -> int:
    return max((num_samples - FRAME) // HOP + 1, 0)


def log_mel(signal: np.ndarray) -> np.ndarray:
    """[frames, 80] float32 log-mel energies of a 16 kHz float signal in [-1, 1], computed blockwise."""
    frames = num_fbank_frames(len(signal))
    out = np.empty((frames, MELS), np.float32)
    for a in range(0, frames, _BLOCK):
        b = min(a + _BLOCK, frames)
        x = signal[a * HOP : (b - 1) * HOP + FRAME].astype(np.float64) * 32768.0
        f = np.lib.stride_tricks.sliding_window_view(x, FRAME)[::HOP]
        f = f - f.mean(axis=1, keepdims=True)
        f[:, 1:] -= PREEMPHASIS * f[:, :-1]  # the right side is a temporary: the previous sample's old value
        f[:, 0] *= 1.0 - PREEMPHASIS
        spectrum = np.fft.rfft(f * WINDOW, n=FFT).astype(np.complex64)  # as transformers keeps it
        power = np.abs(spectrum, dtype=np.float64) ** 2
        out[a:b] = np.log(np.maximum(MEL_FLOOR, power @ FILTERS))
    return out


def normalize_bins(features: np.ndarray) -> np.ndarray:
    """Each column to zero mean, unit variance (ddof 1, + 1e-7) over all rows, in place; float64 statistics."""
    rows = len(features)
    mean = sum(features[a : a + _BLOCK].sum(axis=0, dtype=np.float64) for a in range(0, rows, _BLOCK)) / rows
    squares = sum(((features[a : a + _BLOCK] - mean) ** 2).sum(axis=0) for a in range(0, rows, _BLOCK))
    std = np.sqrt(squares / (rows - 1) + NORM_EPS)
    for a in range(0, rows, _BLOCK):
        features[a : a + _BLOCK] = (features[a : a + _BLOCK] - mean) / std
    return features


def fbank_features(signal: np.ndarray) -> np.ndarray:
    """[frames // 2, 160] float32: what SeamlessM4TFeatureExtractor gives for the frames it does not mask."""
    features = log_mel(np.asarray(signal, dtype=np.float32))
    pairs = len(features) // STRIDE
    if pairs == 0:
        return np.zeros((0, MELS * STRIDE), np.float32)
    return normalize_bins(features)[: pairs * STRIDE].reshape(pairs, MELS * STRIDE)


class Fbank:
    """A whole file's stacked features once (statistics are the file's); a chunk is its rows of them."""

    name = "fbank"
    rate = SAMPLE_RATE / GRID.hop  # 50 rows per second

    def __init__(self, sample_rate: int, grid: FrameGrid) -> None:
        if sample_rate != SAMPLE_RATE or grid != GRID:
            raise W2VEmbedError(
                f"fbank front end: the model records {sample_rate} Hz and grid {grid}; expected {SAMPLE_RATE} Hz, {GRID}"
            )

    def prepare(self, signal: np.ndarray, inplace: bool = False) -> np.ndarray:
        return fbank_features(signal)

    def cut(self, prepared: np.ndarray, chunk: Chunk) -> np.ndarray:
        first = chunk.start // GRID.hop
        return prepared[first : first + GRID.num_frames(chunk.stop - chunk.start)]

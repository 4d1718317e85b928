"""What an Embedder computes and how it cuts the audio: the options, and their checks by option name.

Kept apart from the embedder so that the CLI, Ray and the adapters can build and check options
without the stream machinery.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import UsageError
from .layers import LayerSpec
from .pooling import POOLING_MODES

MIN_CHUNK_SECONDS = 1.0  # chunks shorter than this are mostly context; the default is 30
MIN_WINDOW_SECONDS = 0.02  # one frame of the 50 Hz grid: a shorter window could hold none


@dataclass(frozen=True)
class EmbedOptions:
    """What to compute and how to cut it; defaults suit speech corpora of seconds to hours."""

    layers: LayerSpec = "last"  # "last" (last_hidden_state), "all" (0..L), "6,12", "6,last" or a sequence
    pool: str = "mean"  # mean | max | meanstd | none
    chunk_seconds: float = 30.0  # files longer than this are chunked; 0 disables (why 30: docs/performance.md)
    context_seconds: float = 1.5  # extra audio each side of a chunk (> the positional conv's 1.28 s), then dropped
    batch_size: int | None = None  # most chunks in one batch (default: 4 on CPU, 32 on GPU)
    max_batch_seconds: float | None = None  # most padded audio in one batch (default: 20 s on CPU, 160 s on GPU)
    lookahead_seconds: float = 240.0  # audio gathered before batching (longer: less padding, more memory)
    window_seconds: float = 0.0  # > 0: one pooled row per window of this length instead of per file
    hop_seconds: float | None = None  # windows start this often (default: window_seconds, no overlap)

    @property
    def hop(self) -> float:
        return self.hop_seconds if self.hop_seconds is not None else self.window_seconds


def check_options(options: EmbedOptions) -> None:
    """Every bad value is refused by the option's name; none is silently replaced by a default."""
    if options.pool not in POOLING_MODES:
        raise UsageError(f"--pool {options.pool}: expected one of {', '.join(POOLING_MODES)}")
    _check_seconds("--chunk-seconds", options.chunk_seconds, zero_ok=True)
    if 0 < options.chunk_seconds < MIN_CHUNK_SECONDS:  # shorter rounds to zero frames, i.e. silently no chunking
        raise UsageError(f"--chunk-seconds {options.chunk_seconds:g}: expected 0 (never chunk) or at least {MIN_CHUNK_SECONDS:g}")
    _check_seconds("--context-seconds", options.context_seconds, zero_ok=True)
    if options.max_batch_seconds is not None:
        _check_seconds("--max-batch-seconds", options.max_batch_seconds, zero_ok=False)
    _check_seconds("lookahead_seconds", options.lookahead_seconds, zero_ok=True)
    if options.batch_size is not None and options.batch_size < 1:
        raise UsageError(f"--batch-size {options.batch_size}: expected a whole number >= 1")
    _check_seconds("--window", options.window_seconds, zero_ok=True)
    if options.window_seconds > 0:
        if options.pool == "none":
            raise UsageError("--window pools each window: use --pool mean, max or meanstd with it")
        if options.window_seconds < MIN_WINDOW_SECONDS:
            raise UsageError(f"--window {options.window_seconds:g}: expected at least {MIN_WINDOW_SECONDS:g} s (one frame)")
        _check_seconds("--hop", options.hop, zero_ok=False)
        if options.hop < MIN_WINDOW_SECONDS:  # windows less than a frame apart repeat each other's frames
            raise UsageError(f"--hop {options.hop:g}: expected at least {MIN_WINDOW_SECONDS:g} s (one frame)")
    elif options.hop_seconds is not None:
        raise UsageError("--hop needs --window")


def _check_seconds(option: str, value: float, zero_ok: bool) -> None:
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise UsageError(f"{option} {value:g}: expected a finite number of seconds {'>=' if zero_ok else '>'} 0")

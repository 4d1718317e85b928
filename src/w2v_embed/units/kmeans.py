"""Fitting a codebook: k-means on frames *sampled* while extracting, never on all of them.

Dumping every frame first is what makes k-means run out of memory and disk (one layer is ~70× the
audio's size in float32); the sample is all a fit needs. Two samplers, both seeded:
- `hours`: a reservoir of that many hours of frames (Algorithm R), memory fixed whatever the corpus;
- `fraction`: each frame kept with that probability, drawn per file name (and chunk), so the same files
  give the same sample in any order, from audio or from a frames file; memory is the fraction of the corpus.

Engines: faiss (default, fast) or scikit-learn's MiniBatchKMeans with fairseq's simple_kmeans settings.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError, W2VEmbedError
from ..layers import Layer
from .codebook import KMInfo, needs_extra

ENGINES = ("faiss", "sklearn")
DEFAULT_SAMPLE_HOURS = 10.0
FAISS_ITERATIONS = 25  # faiss.Kmeans' default
# fairseq examples/hubert/simple_kmeans/learn_kmeans.py's defaults
SKLEARN_SETTINGS = dict(init="k-means++", max_iter=100, batch_size=10000, tol=0.0, max_no_improvement=100,
                        n_init=20, reassignment_ratio=0.0, init_size=None, compute_labels=False)
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class SampleOptions:
    """Which frames a fit sees: `hours` (a reservoir) or `fraction` (per frame), with a seed."""

    hours: float = 0.0
    fraction: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.hours > 0) == (self.fraction > 0):
            raise UsageError("give one of --sample-hours and --sample-fraction")
        if not math.isfinite(self.hours) or self.hours < 0:
            raise UsageError(f"--sample-hours {self.hours:g}: expected a positive number of hours")
        if not (0 <= self.fraction <= 1):
            raise UsageError(f"--sample-fraction {self.fraction:g}: expected a number in (0, 1]")


class FrameSample:
    """The frames kept for the fit; memory is bounded by the sample, not by what passes through."""

    def __init__(self, options: SampleOptions, frame_rate: float) -> None:
        self.options = options
        self.capacity = max(1, round(options.hours * 3600 * frame_rate)) if options.hours > 0 else 0
        self.seen = 0
        self._rng = np.random.default_rng(options.seed)
        self._kept: dict[tuple[str, int], np.ndarray] = {}  # fraction: kept frames per (file, chunk start)
        self._reservoir: np.ndarray | None = None
        self._filled = 0

    def add(self, name: str, start: int, frames: np.ndarray) -> None:
        """Frames `start`… of input `name` (the pair seeds the fraction sampler's draw)."""
        frames = np.asarray(frames, np.float32)
        if self.capacity:
            self._reserve(frames)
        else:
            draw = np.random.default_rng([self.options.seed, zlib.crc32(os.fsencode(name)), start])
            keep = draw.random(len(frames)) < self.options.fraction
            if keep.any():
                self._kept[name, start] = frames[keep].copy()
        self.seen += len(frames)

    def _reserve(self, frames: np.ndarray) -> None:
        if self._reservoir is None:
            self._reservoir = np.empty((self.capacity, frames.shape[1]), np.float32)
        fill = min(self.capacity - self._filled, len(frames))
        self._reservoir[self._filled : self._filled + fill] = frames[:fill]
        self._filled += fill
        rest = frames[fill:]
        if len(rest):  # Algorithm R: frame number t replaces a random slot with probability capacity / (t + 1)
            t = self.seen + fill + np.arange(len(rest))
            slots = self._rng.integers(0, t + 1)
            hit = slots < self.capacity
            self._reservoir[slots[hit]] = rest[hit]  # repeated slots: the later frame wins, as in the sequential form

    def frames(self) -> np.ndarray:
        if self.capacity:
            return self._reservoir[: self._filled] if self._reservoir is not None else np.empty((0, 0), np.float32)
        # in a fixed order: the fit is then the same whatever order the files were embedded in
        return np.concatenate([self._kept[key] for key in sorted(self._kept)]) if self._kept else np.empty((0, 0), np.float32)


def fit(frames: np.ndarray, k: int, engine: str = "faiss", seed: int = 0) -> np.ndarray:
    """(K, D) centroids of `frames` (N, D)."""
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine}: expected one of {', '.join(ENGINES)}")
    if k < 2:
        raise UsageError(f"-k {k}: expected at least 2 clusters")
    if len(frames) < k:
        raise W2VEmbedError(f"the sample holds {len(frames)} frames, fewer than K={k}: sample more (--sample-hours/-fraction)")
    x = np.ascontiguousarray(frames, np.float32)
    if engine == "faiss":
        try:
            import faiss
        except ImportError:
            raise needs_extra("kmeans --engine faiss") from None
        # every sampled frame is used (faiss would otherwise subsample to 256 per centroid)
        km = faiss.Kmeans(x.shape[1], k, niter=FAISS_ITERATIONS, seed=seed, verbose=False,
                          max_points_per_centroid=len(x) // k + 1)
        km.train(x)
        return np.asarray(km.centroids, np.float32)
    try:
        from sklearn.cluster import MiniBatchKMeans
    except ImportError:
        raise needs_extra("kmeans --engine sklearn") from None
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, **SKLEARN_SETTINGS)
    km.fit(x)
    return km.cluster_centers_.astype(np.float32)


@dataclass(frozen=True)
class FitResult:
    centroids: np.ndarray
    info: KMInfo
    seen_frames: int


def _fitted(sample: FrameSample, layer: Layer, k: int, engine: str, model_sha256: str, model: str,
            source: str) -> FitResult:
    frames = sample.frames()
    centroids = fit(frames, k, engine, sample.options.seed)
    info = KMInfo(layer=layer, k=k, dim=centroids.shape[1], model_sha256=model_sha256, model=model, engine=engine,
                  sample_frames=len(frames), sample_hours=sample.options.hours,
                  sample_fraction=sample.options.fraction, seed=sample.options.seed, source=source)
    return FitResult(centroids, info, sample.seen)


class _SampleSink:
    """The FrameSink of a long file's streamed chunks: into the sample, never stored."""

    def __init__(self, sample: FrameSample) -> None:
        self.sample = sample

    def write_frames(self, name: Any, layer: Layer, start: int, frames: np.ndarray, num_frames: int) -> None:
        self.sample.add(name, start, frames)


def fit_audio(files: list[Any], embedder: Any, layer: Layer, k: int, sample: SampleOptions, engine: str = "faiss",
              progress: Progress | None = None) -> FitResult:
    """Fit on frames of `layer`, sampled while the Embedder computes them (the graph ends at that layer)."""
    from ..engine import LocalEngine
    from ..extract import ExtractOptions

    embedder = embedder.with_options(layers=(layer,), pool="none", window_seconds=0.0, hop_seconds=None)
    kept = FrameSample(sample, embedder.info.frame_rate)
    failed = []
    for result in LocalEngine(embedder).results(files, ExtractOptions(), _SampleSink(kept)):
        if result.features is None:
            failed.append((result.name, result.error))
        elif len(result.features[layer]):  # empty: streamed chunk by chunk into the sample already
            kept.add(result.name, 0, result.features[layer])
        if progress:
            progress(result.name, result.num_samples / embedder.info.sample_rate if result.features is not None else 0.0)
    if len(failed) == len(files):
        raise W2VEmbedError(f"no file could be embedded (first: {failed[0][0]}: {failed[0][1]})")
    info = embedder.info
    return _fitted(kept, layer, k, engine, info.weights_sha256, info.source, f"{len(files) - len(failed)} audio files")


def fit_frames_file(path: str | Path, layer: Layer, k: int, sample: SampleOptions, engine: str = "faiss",
                    progress: Progress | None = None) -> FitResult:
    """Fit on a frame-level output (`extract --pool none`), read one file at a time."""
    from ..store import open as open_output

    with open_output(path, layers=[layer]) as out:
        attrs = out.attrs
        if not out.frame_level:
            raise UsageError(f"{path}: pooled features ({attrs.get('pooling')}); k-means needs frames (extract --pool none)")
        rate = float(attrs.get("frame_rate", 50.0))
        kept = FrameSample(sample, rate)
        for name, features in out:
            kept.add(name, 0, features[layer])
            if progress:
                progress(name, len(features[layer]) / rate)
    return _fitted(kept, layer, k, engine, str(attrs.get("model_sha256", "")), str(attrs.get("model", "")),
                   os.fspath(path))


"""In-memory embedding: signals in, per-layer features out. `extract` and notebooks share this path.

The stream engine prepares each whole signal through the model's front end (normalised samples, or
w2v-BERT's fbank features), cuts it into chunks on the frame grid, batches chunks of similar length
across signals, runs the model and pools each file's kept frames as they arrive, so memory is
bounded by the lookahead window, not by file length or corpus size.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from .audio import TARGET_SAMPLE_RATE
from .batching import make_batches, pad_batch
from .chunking import Chunk, plan_chunks, seconds_to_frames
from .embed_options import EmbedOptions, check_options
from .errors import W2VEmbedError
from .frontends import frontend_for
from .layers import Layer, depth, parse_layers
from .pooling import Pooler, WindowPooler, window_ranges
from .runtime import OnnxModel, default_model_path

K = TypeVar("K", bound=Hashable)
# Frame-level files with more than this in frames are streamed to the sink chunk by chunk (a 2-hour
# file's 13 layers are 14 GB); smaller ones are held whole and batched with their neighbours.
STREAM_FRAMES_BYTES = 64 << 20
Features = dict[Layer, np.ndarray]


def to_mono_16k(audio: Any, sample_rate: float) -> np.ndarray:
    """Accept (samples,) or (samples, channels) at any rate, as soundfile returns it (a torch tensor
    too); channels-first audio (torchaudio's layout) is refused rather than averaged into garbage."""
    import soxr

    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.number)) or not (
            math.isfinite(sample_rate) and sample_rate > 0 and int(sample_rate) == sample_rate):
        raise W2VEmbedError(f"sample_rate {sample_rate!r}: expected a positive whole number of Hz, one for all signals")
    if hasattr(audio, "detach"):  # a torch tensor, maybe on a GPU or needing grad: torch is never imported here
        audio = audio.detach().cpu().numpy()
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2 and x.shape[0] < x.shape[1]:
        raise W2VEmbedError(f"audio of shape {x.shape} looks channels-first (torchaudio's layout); "
                            "pass (samples,) or (samples, channels), e.g. audio.T")
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32)
    if x.ndim != 1:
        raise W2VEmbedError(f"audio must be (samples,) or (samples, channels), got shape {x.shape}")
    if sample_rate != TARGET_SAMPLE_RATE:
        x = soxr.resample(x, int(sample_rate), TARGET_SAMPLE_RATE, quality="HQ")
    return x


def _finite(features: Features) -> Features | W2VEmbedError:
    """The features, or why they cannot be stored: NaN/inf from overflowing audio or a corrupted model
    would otherwise pass as a success (NaN survives every pooling, so checking the result suffices)."""
    bad = [str(layer) for layer, values in features.items() if not np.isfinite(values).all()]
    if bad:
        return W2VEmbedError(f"the model's output is not finite (NaN or infinite values in layer {', '.join(bad)})")
    return features


class FrameSink(Protocol):
    """Where streamed frames go (FeatureWriter is one): per file, layer and chunk."""

    def write_frames(self, name: Any, layer: Layer, start: int, frames: np.ndarray, num_frames: int) -> None: ...


class _Streamed:
    """Pooling "none" into a sink: each chunk's frames go straight out instead of into a file-sized array.
    The result is empty (the frames are the sink's), or NaN when a chunk was not finite, so that the
    file is reported as failed like any other (the sink then drops what it got)."""

    def __init__(self, sink: FrameSink, key: Hashable, layer: Layer, num_frames: int) -> None:
        self.sink, self.key, self.layer, self.num_frames = sink, key, layer, num_frames
        self.finite = True

    def add(self, start: int, frames: np.ndarray) -> None:
        self.finite = self.finite and bool(np.isfinite(frames).all())
        if self.finite:
            self.sink.write_frames(self.key, self.layer, start, frames, self.num_frames)

    def result(self) -> np.ndarray:
        return np.zeros(0, np.float32) if self.finite else np.full(1, np.nan, np.float32)


@dataclass
class _Piece:
    key: Hashable
    chunk: Chunk
    inputs: np.ndarray  # the chunk's model input: samples, or fbank rows


class Embedder:
    """Embed audio with an exported model: `Embedder("models/x.onnx").embed(audio, sr)`.

    It pickles as its model path, options and device (HF datasets hashes it to cache a `map`; DataLoader
    workers receive it); an unpickled one loads the model on first use.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "auto",
        threads: int | None = None,
        options: EmbedOptions = EmbedOptions(),
        runtime: str = "auto",  # auto | onnxruntime | openvino (runtime/select.py)
    ) -> None:
        self.model = OnnxModel(model or default_model_path(), device=device, threads=threads, runtime=runtime)
        self.info = self.model.info
        self.frontend = frontend_for(self.info.frontend, self.info.sample_rate, self.info.grid, self.info.do_normalize)
        self._threads = threads
        self._configure(options)

    def __getstate__(self) -> dict[str, object]:
        if "_spec" in self.__dict__:  # unpickled and not used yet
            return {"_spec": self.__dict__["_spec"]}
        model = self.model  # absolute: a DataLoader worker or Ray task may start in another folder
        identity = (self.info.weights_sha256, self.info.precision)  # an int8 export of the same weights is another model
        return {"_spec": (os.path.abspath(model.path), *model.requested, self._threads, self.options, identity)}

    def __getattr__(self, name: str) -> Any:
        """Called only for attributes not set: an unpickled Embedder loads its model here, on first use."""
        spec = self.__dict__.get("_spec")
        if spec is None or name.startswith("__"):
            raise AttributeError(name)
        path, device, runtime, threads, options, identity = self.__dict__.pop("_spec")
        self.__init__(path, device=device, threads=threads, options=options, runtime=runtime)
        if (self.info.weights_sha256, self.info.precision) != identity:
            raise W2VEmbedError(f"{path}: holds another model than the one this Embedder was pickled with")
        return getattr(self, name)

    def _configure(self, options: EmbedOptions) -> None:
        check_options(options)
        self.options = options
        self.layers = parse_layers(options.layers, self.info.num_layers)
        self.model.prepare(depth(self.layers, self.info.num_layers))
        # CPUs gain nothing from big batches and pay in memory (the first conv's output is 2 kB per sample);
        # GPUs need them to be busy.
        gpu = self.model.device == "cuda"
        self.batch_rows = options.batch_size or (32 if gpu else 4)
        seconds = options.max_batch_seconds or (160.0 if gpu else 20.0)
        self.batch_samples = int(seconds * self.info.sample_rate)
        self.lookahead_samples = int(max(options.lookahead_seconds, seconds) * self.info.sample_rate)

    def embed(self, audio: np.ndarray, sample_rate: int) -> Features:
        """Features of one in-memory signal: {layer: pooled (D,) or frames (T, D)}."""
        return self.embed_batch([audio], sample_rate)[0]

    def embed_batch(self, signals: Sequence[np.ndarray], sample_rate: int) -> list[Features]:
        """Features of several in-memory signals, in input order, batched across them as `extract` does
        (what HF datasets' batched `map` wants); a signal that cannot be embedded raises, naming its index."""
        results = dict(self.embed_stream((i, to_mono_16k(s, sample_rate)) for i, s in enumerate(signals)))
        for i, result in sorted(results.items()):
            if isinstance(result, W2VEmbedError):
                if len(signals) == 1:
                    raise result
                raise W2VEmbedError(f"signal {i}: {result}") from result
        return [results[i] for i in range(len(signals))]

    def embed_stream(
        self, items: Iterable[tuple[K, np.ndarray]], inplace: bool = False, frame_sink: FrameSink | None = None
    ) -> Iterator[tuple[K, Features | W2VEmbedError]]:
        """(key, 16 kHz mono signal) in → (key, features or the reason it failed) out, as files complete.

        With `inplace` the waveform front end normalises the signals in place instead of copying them
        (the caller owns them).
        With `frame_sink` and pooling "none", a long file's chunks (frames over STREAM_FRAMES_BYTES) go
        to the sink as they come out and the finished file yields empty features: memory holds a
        chunk's frames, not a file's.
        """
        opts = self.options
        sr = self.info.sample_rate
        grid = self.info.grid
        chunk_frames = seconds_to_frames(opts.chunk_seconds, grid, sr)
        context_frames = seconds_to_frames(opts.context_seconds, grid, sr)
        poolers: dict[Hashable, dict[Layer, Pooler | WindowPooler | _Streamed]] = {}
        remaining: dict[Hashable, int] = {}
        queue: list[_Piece] = []
        queued = 0
        for key, signal in items:
            try:
                signal = self._check(signal)
            except W2VEmbedError as exc:
                yield key, exc
                continue
            inputs = self.frontend.prepare(signal, inplace)  # whole-file statistics, before chunking
            chunks = plan_chunks(len(signal), grid, chunk_frames, context_frames)
            frames = grid.num_frames(len(signal))
            frame_bytes = frames * len(self.layers) * self.info.hidden_size * 4
            if frame_sink is not None and opts.pool == "none" and frame_bytes > STREAM_FRAMES_BYTES:
                poolers[key] = {layer: _Streamed(frame_sink, key, layer, frames) for layer in self.layers}
            else:
                poolers[key] = {layer: self._pooler(frames) for layer in self.layers}
            remaining[key] = len(chunks)
            queue.extend(_Piece(key, c, self.frontend.cut(inputs, c)) for c in chunks)
            queued += len(signal)
            if queued >= self.lookahead_samples:
                yield from self._run_queue(queue, poolers, remaining)
                queue, queued = [], 0
        yield from self._run_queue(queue, poolers, remaining)

    def _pooler(self, num_frames: int) -> Pooler | WindowPooler:
        opts, info = self.options, self.info
        if opts.window_seconds <= 0:
            return Pooler(opts.pool, num_frames)
        ranges = window_ranges(num_frames, info.frame_rate, info.frame_center_offset, opts.window_seconds, opts.hop)
        return WindowPooler(opts.pool, ranges)

    def _check(self, signal: np.ndarray) -> np.ndarray:
        """Reject what the model cannot embed."""
        signal = np.asarray(signal, dtype=np.float32)
        field = self.info.grid.receptive_field
        if len(signal) < field:
            raise W2VEmbedError(
                f"too short: {len(signal)} samples at 16 kHz ({len(signal) / 16:.1f} ms); "
                f"the model needs at least {field} ({field / 16:.0f} ms)"
            )
        if not np.isfinite(signal).all():
            raise W2VEmbedError("audio contains NaN or infinite samples")
        return signal

    def _run_queue(
        self, queue: list[_Piece], poolers: dict[Hashable, dict[Layer, Pooler | WindowPooler | _Streamed]], remaining: dict[Hashable, int]
    ) -> Iterator[tuple[Hashable, Features | W2VEmbedError]]:
        multiple = int(self.frontend.rate) if self.model.device == "cuda" else 1  # GPU: shapes in 1 s buckets
        for rows in make_batches([p.chunk.stop - p.chunk.start for p in queue], self.batch_rows, self.batch_samples):
            pieces = [queue[i] for i in rows]
            batch, lengths = pad_batch([p.inputs for p in pieces], multiple)
            outputs = self.model.run(batch, lengths, self.layers)
            for row, piece in enumerate(pieces):
                for layer, states in outputs.items():
                    kept = states[row, piece.chunk.keep_start : piece.chunk.keep_stop]
                    poolers[piece.key][layer].add(piece.chunk.frame_start, kept)
                remaining[piece.key] -= 1
                if remaining[piece.key] == 0:
                    del remaining[piece.key]
                    yield piece.key, _finite({layer: p.result() for layer, p in poolers.pop(piece.key).items()})

    def self_check(self) -> None:
        """Fail fast on a damaged model: a corrupted weight gives NaN for every file, which per-file checks
        would find one failed file at a time. Plain noise must give finite features."""
        noise = np.random.default_rng(0).uniform(-0.5, 0.5, self.info.sample_rate).astype(np.float32)
        try:
            self.embed(noise, self.info.sample_rate)
        except W2VEmbedError as exc:
            raise W2VEmbedError(
                f"{self.model.path}: {exc} on 1 s of plain noise; the model file is damaged, export or copy it again"
            ) from None

    def with_options(self, **changes: object) -> Embedder:
        """The same loaded model with other options (e.g. layers=(6,), pool='none'), holding only the
        session the clone runs: a graph of other depth is released (this Embedder reloads it if used)."""
        model = self.model  # an unpickled Embedder loads here, so that the clone shares its sessions
        clone = object.__new__(Embedder)
        clone.__dict__.update(vars(self), model=model)
        clone._configure(dataclasses.replace(self.options, **changes))
        model.release(keep=depth(clone.layers, clone.info.num_layers))
        return clone

"""The main job: audio files → features of the chosen layers in one HDF5 file.

Data flows one way: discovered files are decoded and resampled in worker threads (ahead of the
model, so decoding overlaps inference), embedded by the Embedder's chunk/batch/pool engine, and
written by the FeatureWriter, which keeps finished work safe across crashes and resumes.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from queue import SimpleQueue
from typing import TypeVar

import numpy as np

from .audio import Decoded, decode
from .discover import AudioFile
from .embedder import Embedder
from .errors import UsageError, W2VEmbedError
from .store import FeatureWriter, RunInfo

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ExtractOptions:
    """Output-side choices; what to compute lives in the Embedder's EmbedOptions."""

    mode: str = "new"  # new | resume | overwrite
    dtype: str = "float32"  # storage dtype: float32 | float16
    channel: int | None = None  # None: mean of all channels
    decode_workers: int = 2
    decode_ahead: int = 2  # decoded files waiting for the model: an hour of audio is 230 MB
    save_every_files: int = 64  # finished files are made crash-safe at least this often …
    save_every_seconds: float = 20.0  # … and at least this often
    shard: str = ""  # "I/N" when `files` are one shard of a list of `total_files` (shards.select)
    total_files: int = 0

    def __post_init__(self) -> None:
        if self.channel is not None and self.channel < 0:
            raise UsageError(f"--channel {self.channel}: expected a channel number >= 0 (0 is the first)")
        if self.save_every_files < 1:
            raise UsageError(f"--save-every {self.save_every_files}: expected a number of files >= 1")
        if not math.isfinite(self.save_every_seconds) or self.save_every_seconds < 0:
            raise UsageError(f"save_every_seconds {self.save_every_seconds}: expected a finite number >= 0")


@dataclass
class ExtractSummary:
    output: Path
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def realtime_factor(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


Progress = Callable[[str, float], None]  # (file name, its seconds of audio), once per finished file


def prefetch(func: Callable[[T], R], items: Iterable[T], workers: int, ahead: int) -> Iterator[tuple[T, Future[R]]]:
    """Ordered map over worker threads with at most `ahead` results in flight (decoders release the GIL).

    The workers are daemon threads, unlike ThreadPoolExecutor's, which the interpreter joins at exit: a
    decoder stuck in a read that never returns (a hung network mount) cannot keep Ctrl-C from ending the run.
    """
    jobs: SimpleQueue[tuple[T, Future[R]] | None] = SimpleQueue()
    threads = [
        threading.Thread(target=_work, args=(func, jobs), name=f"decode-{i}", daemon=True) for i in range(max(workers, 1))
    ]
    for thread in threads:
        thread.start()
    pending: deque[tuple[T, Future[R]]] = deque()
    try:
        for item in items:
            pending.append((item, Future()))
            jobs.put(pending[-1])
            if len(pending) >= ahead:
                yield pending.popleft()
        while pending:
            yield pending.popleft()
    finally:
        for _, future in pending:
            future.cancel()
        for _ in threads:
            jobs.put(None)


def _work(func: Callable[[T], R], jobs: SimpleQueue[tuple[T, Future[R]] | None]) -> None:
    while (job := jobs.get()) is not None:
        item, future = job
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(func(item))
            except BaseException as exc:  # handed to the consumer, like ThreadPoolExecutor does
                future.set_exception(exc)


def extract(
    files: list[AudioFile],
    output: str | Path,
    embedder: Embedder,
    options: ExtractOptions = ExtractOptions(),
    progress: Progress | None = None,
) -> ExtractSummary:
    """Embed every file into `output`; bad files are recorded under /failed, never fatal."""
    started = time.perf_counter()
    info = embedder.info
    run_info = RunInfo(
        model=info.source,
        model_sha256=info.weights_sha256,
        layers=embedder.layers,
        pooling=embedder.options.pool,
        hidden_size=info.hidden_size,
        dtype=options.dtype,
        sample_rate=info.sample_rate,
        frame_rate=info.frame_rate,
        frame_center_offset=info.frame_center_offset,
        chunk_seconds=embedder.options.chunk_seconds,
        context_seconds=embedder.options.context_seconds,
        shard=options.shard,
        shard_files=len(files) if options.shard else 0,
        total_files=options.total_files,
        model_file_sha256=embedder.model.sha256,
        precision=info.precision,
        channel="mean" if options.channel is None else str(options.channel),
    )
    summary = ExtractSummary(Path(output))
    sources: dict[str, tuple[int, int]] = {}  # name -> (samples at 16 kHz, source rate); not the audio itself

    def fail(name: str, reason: str) -> None:
        writer.add_failure(name, reason)
        summary.failed += 1
        summary.failures.append((name, reason))
        if progress:
            progress(name, 0.0)

    def load(file: AudioFile) -> Decoded:
        if file.problem:
            raise W2VEmbedError(file.problem)
        return decode(file.path, channel=options.channel, target_rate=info.sample_rate)

    def signals() -> Iterator[tuple[str, np.ndarray]]:
        todo = [f for f in files if f.name not in writer.done]
        summary.skipped = len(files) - len(todo)
        for file, future in prefetch(load, todo, options.decode_workers, options.decode_ahead):
            try:
                audio = future.result()
            except W2VEmbedError as exc:
                fail(file.name, str(exc))
                continue
            sources[file.name] = (len(audio.samples), audio.source_sample_rate)
            yield file.name, audio.samples

    with FeatureWriter(
        Path(output), run_info, options.mode, options.save_every_files, options.save_every_seconds
    ) as writer:
        embedder.self_check()  # after the writer's resume checks: a changed model file is named as such first
        for name, result in embedder.embed_stream(signals(), inplace=True):  # the decoded audio is ours
            num_samples, source_rate = sources.pop(name)
            if isinstance(result, W2VEmbedError):
                fail(name, str(result))
                continue
            writer.add(name, num_samples, source_rate, result)
            seconds = num_samples / info.sample_rate
            summary.ok += 1
            summary.audio_seconds += seconds
            if progress:
                progress(name, seconds)
    summary.wall_seconds = time.perf_counter() - started
    return summary


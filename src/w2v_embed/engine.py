"""Engines: where decoding and inference run. LocalEngine runs both in this process — decode threads
ahead of the Embedder, so decoding overlaps inference; ray_engine runs them on a Ray cluster. Either
hands `extract` one Result per file, in any order.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from queue import SimpleQueue
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

from .audio import MAX_OVERSHOOT, Decoded, decode, decode_segments
from .discover import AudioFile
from .embedder import Embedder, Features, FrameSink
from .errors import W2VEmbedError
from .segments import close_groups

if TYPE_CHECKING:
    from .extract import ExtractOptions

T = TypeVar("T")
R = TypeVar("R")


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


@dataclass(frozen=True)
class Result:
    """One file's outcome from an engine: its features, or why it failed."""

    name: str
    num_samples: int = 0  # at 16 kHz
    source_sample_rate: int = 0
    features: Features | None = None
    error: str = ""
    truncated: float = 0.0  # seconds a segment was cut short at the audio's end (audio.Decoded.truncated)


class Engine(Protocol):
    """Where decoding and inference run: this process (LocalEngine) or a Ray cluster (ray_engine)."""

    embedder: Embedder  # in this process: what the run computes, checked before any file

    def results(
        self, files: list[AudioFile], options: ExtractOptions, frame_sink: FrameSink | None = None
    ) -> Iterator[Result]:
        """Each file's outcome; frame-level features may go to `frame_sink` chunk by chunk instead."""
        ...


class LocalEngine:
    """Decode threads ahead of the Embedder, both in this process."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def results(
        self, files: list[AudioFile], options: ExtractOptions, frame_sink: FrameSink | None = None
    ) -> Iterator[Result]:
        rate = self.embedder.info.sample_rate
        sources: dict[str, tuple[int, int, float]] = {}  # name -> (samples at 16 kHz, source rate, truncated)
        failed: list[Result] = []  # decode failures, handed out between model results

        def load(group: list[AudioFile]) -> list[Decoded | W2VEmbedError]:
            return decode_group(group, options.channel, rate, options.max_overshoot)

        def signals() -> Iterator[tuple[str, np.ndarray]]:
            groups = [[files[i] for i in group] for group in close_groups(files)]
            ahead = max(options.decode_workers, options.decode_ahead)  # every decoder busy, no more held
            for group, future in prefetch(load, groups, options.decode_workers, ahead):
                for file, audio in zip(group, future.result()):
                    if isinstance(audio, W2VEmbedError):
                        failed.append(Result(file.name, error=str(audio)))
                        continue
                    sources[file.name] = (len(audio.samples), audio.source_sample_rate, audio.truncated)
                    yield file.name, audio.samples

        # The decoded audio is ours to normalise in place; frame-level chunks go to the sink as they come.
        for name, result in self.embedder.embed_stream(signals(), inplace=True, frame_sink=frame_sink):
            yield from failed
            failed.clear()
            num_samples, source_rate, truncated = sources.pop(name)
            if isinstance(result, W2VEmbedError):
                yield Result(name, num_samples, source_rate, error=str(result))
            else:
                yield Result(name, num_samples, source_rate, result, truncated=truncated)
        yield from failed


def decode_group(
    files: list[AudioFile], channel: int | None, rate: int, max_overshoot: float = MAX_OVERSHOOT
) -> list[Decoded | W2VEmbedError]:
    """One group of segments.close_groups as 16 kHz mono, each file or segment with its own outcome:
    a whole file, a row that discovery or the segment list already rejected, or close segments of
    one recording decoded in one pass."""
    first = files[0]
    try:
        if first.problem:
            raise W2VEmbedError(first.problem)
        if first.segment is None:
            return [decode(first.path, channel=channel, target_rate=rate)]
        segments = [file.segment for file in files if file.segment is not None]
        return list(decode_segments(first.path, segments, channel=channel, target_rate=rate, max_overshoot=max_overshoot))
    except W2VEmbedError as exc:
        return [exc] * len(files)

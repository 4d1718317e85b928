"""Downmix and resample to the model's rate, one signal at a time.

A decoder (libsndfile or ffmpeg, see audio.py) hands over its output as one `Source`: blocks of
(frames, channels) and what they are. Data flows one way, source → `resample_blocks` (the whole
stream) or `carve` (spans of it) → samples; nothing calls back. Each signal
has its own streaming soxr resampler, which gives the same samples as resampling the whole signal
at once, so block boundaries never change the result. That is also why several segments can be
carved out of one pass over a file (`carve`) and still equal each segment decoded on its own.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from .errors import AudioError


def downmix(block: np.ndarray, channel: int | None) -> np.ndarray:
    """(frames, channels) → (frames,): the chosen channel, or the mean of all of them."""
    if channel is not None:
        return np.ascontiguousarray(block[:, channel])
    if block.shape[1] == 1:
        return np.ascontiguousarray(block[:, 0])
    return block.mean(axis=1, dtype=np.float32)


@dataclass(frozen=True)
class Source:
    """A decoder's output: float32 (frames, channels) blocks of `path` at `rate` Hz, the first block starting
    at source frame `first`; `channel` is the one to keep (None: the mean of all)."""

    path: Path
    blocks: Iterable[np.ndarray]
    rate: int
    channel: int | None = None
    first: int = 0

    def mono(self) -> Iterator[np.ndarray]:
        for block in self.blocks:
            yield downmix(block, self.channel)


class Resampled:
    """One signal's downmixed blocks → its samples at the target rate, in one preallocated array."""

    def __init__(self, rate: int, target_rate: int, expected_frames: int | None) -> None:
        self.stream = None if rate == target_rate else soxr.ResampleStream(rate, target_rate, 1, dtype="float32", quality="HQ")
        capacity = math.ceil(expected_frames * target_rate / rate) + 16 if expected_frames else 1 << 16
        self.out = np.empty(capacity, dtype=np.float32)
        self.filled = 0
        self.frames = 0  # source frames taken in

    def add(self, mono: np.ndarray) -> None:
        self.frames += len(mono)
        self._append(self.stream.resample_chunk(mono, last=False) if self.stream else mono)

    def finish(self) -> np.ndarray:
        if self.stream:
            self._append(self.stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        self.out.resize(self.filled, refcheck=False)  # no view of `out` exists: shrink in place
        return self.out

    def _append(self, piece: np.ndarray) -> None:
        if self.filled + len(piece) > len(self.out):  # realloc: large blocks grow by remapping, not copying
            self.out.resize(max(2 * len(self.out), self.filled + len(piece)), refcheck=False)
        self.out[self.filled : self.filled + len(piece)] = piece
        self.filled += len(piece)


def _not_finite(path: Path) -> AudioError:
    return AudioError(f"cannot decode {path}: contains NaN or infinite samples")


def resample_blocks(source: Source, target_rate: int, expected_frames: int | None) -> np.ndarray:
    """The whole source, downmixed and resampled into one preallocated 1-D float32 array (sized from
    `expected_frames` where the header gives it)."""
    signal = Resampled(source.rate, target_rate, expected_frames)
    for mono in source.mono():
        if not np.isfinite(mono).all():
            raise _not_finite(source.path)
        signal.add(mono)
    if signal.frames == 0:
        raise AudioError(f"cannot decode {source.path}: no audio (0 frames)")
    return signal.finish()


def carve(
    source: Source,
    spans: Sequence[tuple[int, int] | AudioError],
    target_rate: int,
    slack: int = 0,
    overshoot: int = 0,
) -> list[tuple[np.ndarray, int] | AudioError]:
    """Each (start, count) span of source frames → its own resampled samples, with the source frames
    it lacked at the audio's end.

    A span may end up to `overshoot` frames past the audio's end (ffmpeg, asked for a range, stops
    where the audio does; its seek may round by a few samples, hence the `slack`); beyond that, or
    starting at or past the end, it fails.
    """
    path, rate = source.path, source.rate
    outcomes: list[tuple[np.ndarray, int] | AudioError] = [
        span if isinstance(span, AudioError)
        else AudioError(f"cannot decode {path}: the segment is shorter than one sample at {rate} Hz") if span[1] < 1
        else (np.zeros(0), 0)
        for span in spans
    ]  # fmt: skip
    # Spans join when the blocks reach their start and leave when complete, so each block visits only the
    # spans it cuts through, however many the group holds. A resampler (~90 kB of soxr state) is made at
    # its span's first piece: a group of thousands of short segments holds only a few at a time.
    upcoming = deque(sorted((i for i, o in enumerate(outcomes) if not isinstance(o, AudioError)), key=lambda i: spans[i]))
    active: dict[int, Resampled | None] = {}
    position = source.first
    for mono in source.mono():
        end = position + len(mono)
        while upcoming and spans[upcoming[0]][0] < end:  # type: ignore[index]
            active[upcoming.popleft()] = None
        for i, signal in list(active.items()):
            start, count = spans[i]  # type: ignore[misc]
            a, b = max(start, position), min(start + count, end)
            if a >= b:
                continue
            piece = mono[a - position : b - position]
            if not np.isfinite(piece).all():
                outcomes[i] = _not_finite(path)
                del active[i]
                continue
            if signal is None:
                signal = active[i] = Resampled(rate, target_rate, count)
            signal.add(piece)
            if signal.frames == count:
                outcomes[i] = (signal.finish(), 0)
                del active[i]
        position = end
    for i in [*active, *upcoming]:
        start, count = spans[i]  # type: ignore[misc]
        signal = active.get(i)
        if signal is None or signal.frames < count - max(slack, overshoot):
            outcomes[i] = past_end(path, start / rate, (start + count) / rate, position / rate, overshoot / rate)
        else:
            outcomes[i] = (signal.finish(), count - signal.frames)
    return outcomes


def past_end(path: Path, start: float, end: float, audio_end: float, max_overshoot: float) -> AudioError:
    """Why a segment cannot be cut from audio that ends at `audio_end` s, with times precise enough to
    show the difference (Kaldi's lists are rounded to 10 ms: "5.66 s, past the end (5.66 s)" said nothing)."""
    over = end - audio_end
    shown = start - audio_end if start >= audio_end else over  # the difference the message is about
    digits = 3 if shown == 0 or shown >= 5e-4 else 6
    if start >= audio_end:
        return AudioError(f"cannot decode {path}: the segment starts at {start:.{digits}f} s, "
                          f"at or past the audio's end at {audio_end:.{digits}f} s")
    return AudioError(
        f"cannot decode {path}: the segment ends at {end:.{digits}f} s, {over:.{digits}f} s past the audio's end "
        f"at {audio_end:.{digits}f} s (more than --max-overshoot {max_overshoot:g} s)"
    )

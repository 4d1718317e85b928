"""Audio files → float32 mono at the model's rate (16 kHz), in bounded memory.

Files are read in blocks of about `BLOCK_SECONDS`, each block is downmixed and fed to a streaming
soxr resampler (resample.py), so a multi-hour file is never whole in memory at its source rate and
channel count: only the 16 kHz mono result is (≈ 230 MB per hour). Streaming soxr gives the same
samples as resampling the whole signal at once, so block size never changes the result.

libsndfile (via soundfile) reads wav/flac/ogg/opus/mp3/aiff/au…; everything else (m4a, aac, mp4,
webm, wma…) goes through an `ffmpeg` subprocess when one can be found (ffmpeg.py). This module
checks what both decoders yield and turns files, or segments of them, into `Decoded` signals.
"""

from __future__ import annotations

import math
import os
import stat
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from . import ffmpeg
from .errors import AudioError, one_line
from .ffmpeg import FFMPEG_HINT, ffmpeg_executable
from .paths import special_kind
from .resample import Source, carve, past_end, resample_blocks

__all__ = ["FFMPEG_HINT", "MAX_OVERSHOOT", "TARGET_SAMPLE_RATE", "AudioError", "Decoded", "decode", "decode_segments",
           "ffmpeg_executable"]

TARGET_SAMPLE_RATE = 16000
MIN_SOURCE_RATE, MAX_SOURCE_RATE = 1_000, 768_000  # Hz; outside: a broken or hostile header, not audio
BLOCK_SECONDS = 10.0  # source audio per block; the only source-rate buffer alive at a time
# Seconds a segment may end past its audio and be cut at the end instead of failing: Kaldi's
# extract-segments default (its lists round times to 10 ms; lhotse trims such cuts too).
MAX_OVERSHOOT = 0.5
_MAX_PREALLOC_SECONDS = 48 * 3600  # do not trust a header beyond this when preallocating
# Extensions libsndfile reads: a failure on these is a broken file, not a missing ffmpeg.
_SNDFILE_EXTENSIONS = frozenset({
    "wav", "wave", "bwf", "flac", "ogg", "oga", "opus", "mp3", "aiff", "aif", "aifc", "au", "snd", "caf",
    "w64", "rf64", "sd2", "voc", "nist", "sph", "wavex",
})  # fmt: skip


@dataclass(frozen=True)
class Decoded:
    samples: np.ndarray  # float32, mono, target rate, 1-D
    source_sample_rate: int
    source_channels: int
    truncated: float = 0.0  # seconds a segment was cut short at the audio's end (at most max_overshoot)


def decode(
    path: Path,
    *,
    channel: int | None = None,
    target_rate: int = TARGET_SAMPLE_RATE,
    segment: tuple[float, float] | None = None,
    max_overshoot: float = MAX_OVERSHOOT,
) -> Decoded:
    """Read `path` as float32 mono at `target_rate`: mean of channels, or only `channel` (0-based).

    With `segment` (start, end seconds) only that part is read and resampled alone, exactly as if it
    had been cut out into a file of its own (see decode_segments, also for `max_overshoot`).
    Tries libsndfile first (even for odd extensions: a misnamed wav still reads), then ffmpeg.
    Raises AudioError with a one-line reason for anything that yields no usable samples.
    """
    if segment is not None:
        outcome = decode_segments(path, [segment], channel=channel, target_rate=target_rate, max_overshoot=max_overshoot)[0]
        if isinstance(outcome, AudioError):
            raise outcome
        return outcome
    path = Path(path)
    _check_path(path)
    try:
        reader = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        return _decode_with_ffmpeg(path, channel, target_rate, _sf_reason(exc))
    with reader:
        rate, channels = int(reader.samplerate), int(reader.channels)
        _check_rate(path, rate)
        _check_channel(path, channel, channels)
        block = max(int(rate * BLOCK_SECONDS), 1)
        try:
            expected = reader.frames if 0 < reader.frames <= rate * _MAX_PREALLOC_SECONDS else None
            samples = resample_blocks(Source(path, _sf_blocks(reader, block), rate, channel), target_rate, expected)
            _check_complete(path, reader)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"cannot decode {path}: {_sf_reason(exc)}") from exc
    return Decoded(samples, rate, channels)


def decode_segments(
    path: Path,
    segments: Sequence[tuple[float, float]],
    *,
    channel: int | None = None,
    target_rate: int = TARGET_SAMPLE_RATE,
    max_overshoot: float = MAX_OVERSHOOT,
) -> list[Decoded | AudioError]:
    """Several (start, end) segments of one file, in one pass over the part they span.

    The span is read once (libsndfile seeks to its start; ffmpeg is asked for it alone) and every
    segment is downmixed and resampled on its own as the blocks go by, so each equals
    `decode(path, segment=...)` and the same audio cut out into a file of its own, while close
    segments — diarization turns, overlapping windows — share one read. A segment that cannot be
    (past the audio's end, NaN samples in it) is its own AudioError in the list; a file that
    cannot be read at all raises AudioError. A segment that ends past the audio's end by at most
    `max_overshoot` seconds is cut at the end, as Kaldi's extract-segments does (`Decoded.truncated`).
    """
    path = Path(path)
    _check_path(path)
    try:
        reader = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        return _segments_with_ffmpeg(path, segments, channel, target_rate, _sf_reason(exc), max_overshoot)
    with reader:
        rate, channels = int(reader.samplerate), int(reader.channels)
        _check_rate(path, rate)
        _check_channel(path, channel, channels)
        spans = [_segment_frames(path, segment, rate, reader.frames, max_overshoot) for segment in segments]
        cut = [max(round(end * rate) - reader.frames, 0) if reader.frames > 0 else 0 for _, end in segments]
        valid = [span for span in spans if not isinstance(span, AudioError)]
        if not valid:
            return spans  # type: ignore[return-value]  # all AudioError
        first = min(start for start, _ in valid)
        stop = max(start + count for start, count in valid)
        try:
            reader.seek(first)
            blocks = _sf_blocks(reader, max(int(rate * BLOCK_SECONDS), 1), stop - first)
            outcomes = carve(Source(path, blocks, rate, channel, first), spans, target_rate)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"cannot decode {path}: {_sf_reason(exc)}") from exc
    return _decoded(outcomes, rate, channels, cut)


def _decoded(outcomes: list[tuple[np.ndarray, int] | AudioError], rate: int, channels: int,
             cut: Sequence[int]) -> list[Decoded | AudioError]:
    """Carved spans as Decoded, each with the frames it lacked at the audio's end (`cut`, or as carve found)."""
    return [o if isinstance(o, AudioError) else Decoded(o[0], rate, channels, (o[1] + c) / rate)
            for o, c in zip(outcomes, cut)]


def _segment_frames(
    path: Path, segment: tuple[float, float], rate: int, frames: int, max_overshoot: float
) -> tuple[int, int] | AudioError:
    """First frame and frame count of [start, end) seconds (cut at the audio's end when it overshoots
    by at most `max_overshoot` s), or why the file's length (`frames`; 0: unknown) does not allow it."""
    start, end = segment
    if not (0 <= start < end and math.isfinite(end * rate)):  # a library caller's times: no OverflowError
        return AudioError(f"cannot decode {path}: ({start!r}, {end!r}) is not a segment (0 <= start < end)")
    first, last = round(start * rate), round(end * rate)
    if frames > 0 and last > frames:
        if first >= frames or last - frames > max_overshoot * rate:
            return past_end(path, start, end, frames / rate, max_overshoot)
        last = frames
    return first, last - first


# --- checks -----------------------------------------------------------------------------------


def _check_path(path: Path) -> None:
    """Name the common failures before libsndfile turns them into a vague 'System error'."""
    if not os.path.lexists(path):
        raise AudioError(f"cannot decode {path}: no such file")
    if not path.exists():
        raise AudioError(f"cannot decode {path}: broken symlink (-> {os.readlink(path)})")
    try:
        info = path.stat()
    except OSError as exc:
        raise AudioError(f"cannot decode {path}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise AudioError(f"cannot decode {path}: is a directory")
    if not stat.S_ISREG(info.st_mode):  # never open one: reading a FIFO blocks until a writer comes
        raise AudioError(f"cannot decode {path}: not a regular file ({special_kind(info.st_mode)})")
    size = info.st_size
    if not os.access(path, os.R_OK):
        raise AudioError(f"cannot decode {path}: permission denied")
    if size == 0:
        raise AudioError(f"cannot decode {path}: empty file (0 bytes)")


def _check_rate(path: Path, rate: int) -> None:
    """A header claiming 1 Hz turned 64 kB into 8.9 hours of audio (and 2.6 GB of memory) at 16 kHz."""
    if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
        raise AudioError(
            f"cannot decode {path}: sample rate {rate} Hz in the header is not plausible for audio "
            f"(expected {MIN_SOURCE_RATE} to {MAX_SOURCE_RATE})"
        )


def _check_complete(path: Path, reader: sf.SoundFile) -> None:
    """Fail a file cut short (an interrupted copy or download) instead of embedding it as shorter audio.

    Detected where a header states the length: an MP3's Xing/LAME frame count (libsndfile's `frames`),
    and a WAV's data chunk size (libsndfile trims `frames` to the bytes present, so it is read here).
    Ogg and header-less MP3 state no length: a cut there is not detectable before the decoder fails.
    """
    decoded = reader.tell()
    promised = reader.frames
    declared, present = _wav_data_sizes(path)
    if declared > present > 0:
        promised = round(reader.frames * declared / present)
    slack = max(reader.samplerate // 2, promised // 100)  # an estimated length (VBR MP3), codec padding
    if promised - decoded > slack:
        raise AudioError(
            f"cannot decode {path}: truncated: the header promises {promised / reader.samplerate:.1f} s, "
            f"the file holds {decoded / reader.samplerate:.2f} s"
        )


def _wav_data_sizes(path: Path) -> tuple[int, int]:
    """(bytes the RIFF data chunk declares, bytes present after its header); (0, 0) when not a plain WAV
    or when the size is a streaming placeholder (0 or 0xFFFFFFFF)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
        size = os.fstat(f.fileno()).st_size
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return 0, 0
    pos = 12
    while pos + 8 <= len(head):
        chunk, length = struct.unpack_from("<4sI", head, pos)
        if chunk == b"data":
            return (0, 0) if length in (0, 0xFFFFFFFF) else (length, size - pos - 8)
        pos += 8 + length + (length & 1)
    return 0, 0


def _check_channel(path: Path, channel: int | None, channels: int) -> None:
    if channel is not None and not 0 <= channel < channels:
        raise AudioError(
            f"cannot decode {path}: channel {channel} does not exist "
            f"(the file has {channels} channel{'s' if channels != 1 else ''}: 0..{channels - 1})"
        )


def _sf_reason(exc: BaseException) -> str:
    """libsndfile's own words without the 'Error opening <path>:' prefix soundfile adds."""
    text = getattr(exc, "error_string", None) or str(exc)
    return one_line(text).removeprefix("Error : ").rstrip(".")


# --- reading ----------------------------------------------------------------------------------


def _sf_blocks(reader: sf.SoundFile, frames: int, limit: int | None = None) -> Iterator[np.ndarray]:
    """Blocks of `frames` from the current position, to the end or for `limit` frames in all."""
    left = limit
    while left is None or left > 0:
        block = reader.read(frames if left is None else min(frames, left), dtype="float32", always_2d=True)
        if not len(block):
            return
        if left is not None:
            left -= len(block)
        yield block


# --- through ffmpeg ---------------------------------------------------------------------------


def _decode_with_ffmpeg(path: Path, channel: int | None, target_rate: int, sf_reason: str) -> Decoded:
    with ffmpeg.pcm_stream(path, BLOCK_SECONDS, _libsndfile_reason(path, sf_reason)) as (rate, channels, blocks):
        _check_rate(path, rate)
        _check_channel(path, channel, channels)
        samples = resample_blocks(Source(path, blocks, rate, channel), target_rate, None)
    return Decoded(samples, rate, channels)


def _segments_with_ffmpeg(
    path: Path, segments: Sequence[tuple[float, float]], channel: int | None, target_rate: int, sf_reason: str,
    max_overshoot: float = MAX_OVERSHOOT,
) -> list[Decoded | AudioError]:
    """ffmpeg is asked for the span of all `segments` once; each is carved out of that one stream."""
    start, stop = min(a for a, _ in segments), max(b for _, b in segments)
    reason = _libsndfile_reason(path, sf_reason)
    with ffmpeg.pcm_stream(path, BLOCK_SECONDS, reason, (start, stop)) as (rate, channels, blocks):
        _check_rate(path, rate)
        _check_channel(path, channel, channels)
        spans = [_segment_frames(path, segment, rate, 0, 0.0) for segment in segments]  # ffmpeg finds the end as it goes
        slack = round(0.01 * rate)
        outcomes = carve(Source(path, blocks, rate, channel, round(start * rate)), spans, target_rate, slack,
                         overshoot=round(max_overshoot * rate))
    # A few frames short is ffmpeg's seek rounding, not an overshoot.
    outcomes = [o if isinstance(o, AudioError) or o[1] > slack else (o[0], 0) for o in outcomes]
    return _decoded(outcomes, rate, channels, [0] * len(outcomes))


def _libsndfile_reason(path: Path, sf_reason: str) -> str | None:
    """libsndfile's refusal where the format is one of its own (a broken file), else None (ffmpeg's turn)."""
    return sf_reason if path.suffix.lower().lstrip(".") in _SNDFILE_EXTENSIONS else None

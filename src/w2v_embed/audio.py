"""Audio files → float32 mono at the model's rate (16 kHz), in bounded memory.

Files are read in blocks of about `BLOCK_SECONDS`, each block is downmixed and fed to one
streaming soxr resampler, so a multi-hour file is never whole in memory at its source rate and
channel count: only the 16 kHz mono result is (≈ 230 MB per hour). Streaming soxr gives the same
samples as resampling the whole signal at once, so block size never changes the result.

libsndfile (via soundfile) reads wav/flac/ogg/opus/mp3/aiff/au…; everything else (m4a, aac, mp4,
webm, wma…) goes through an `ffmpeg` subprocess when one can be found (see `ffmpeg_executable`).
"""

from __future__ import annotations

import math
import os
import shutil
import stat
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from .errors import W2VEmbedError

TARGET_SAMPLE_RATE = 16000
MIN_SOURCE_RATE, MAX_SOURCE_RATE = 1_000, 768_000  # Hz; outside: a broken or hostile header, not audio
BLOCK_SECONDS = 10.0  # source audio per block; the only source-rate buffer alive at a time
NORM_EPS = 1e-7  # transformers' Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
_NORM_BLOCK = 1 << 20  # samples per float64 temporary in normalize()
_MAX_PREALLOC_SECONDS = 48 * 3600  # do not trust a header beyond this when preallocating
# Extensions libsndfile reads: a failure on these is a broken file, not a missing ffmpeg.
_SNDFILE_EXTENSIONS = frozenset({
    "wav", "wave", "bwf", "flac", "ogg", "oga", "opus", "mp3", "aiff", "aif", "aifc", "au", "snd", "caf",
    "w64", "rf64", "sd2", "voc", "nist", "sph", "wavex",
})  # fmt: skip
FFMPEG_HINT = "install ffmpeg (apt-get install ffmpeg) or `pip install 'w2v-embed[ffmpeg]'`"


class AudioError(W2VEmbedError):
    """A file that cannot be turned into samples; the message names the file and the reason."""


@dataclass(frozen=True)
class Decoded:
    samples: np.ndarray  # float32, mono, target rate, 1-D
    source_sample_rate: int
    source_channels: int


def decode(
    path: Path,
    *,
    channel: int | None = None,
    target_rate: int = TARGET_SAMPLE_RATE,
    segment: tuple[float, float] | None = None,
) -> Decoded:
    """Read `path` as float32 mono at `target_rate`: mean of channels, or only `channel` (0-based).

    With `segment` (start, end seconds) only that part is read — libsndfile seeks to it, ffmpeg is
    asked for it — and resampled alone, exactly as if it had been cut out into a file of its own.
    Tries libsndfile first (even for odd extensions: a misnamed wav still reads), then ffmpeg.
    Raises AudioError with a one-line reason for anything that yields no usable samples.
    """
    path = Path(path)
    _check_path(path)
    try:
        reader = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        return _decode_with_ffmpeg(path, channel, target_rate, _sf_reason(exc), segment)
    with reader:
        rate, channels = int(reader.samplerate), int(reader.channels)
        _check_rate(path, rate)
        _check_channel(path, channel, channels)
        block = max(int(rate * BLOCK_SECONDS), 1)
        try:
            if segment is None:
                expected = reader.frames if 0 < reader.frames <= rate * _MAX_PREALLOC_SECONDS else None
                samples = _resample_blocks(path, _sf_blocks(reader, block), rate, target_rate, channel, expected)
                _check_complete(path, reader)
            else:
                first, count = _segment_frames(path, segment, rate, reader.frames)
                reader.seek(first)
                samples = _resample_blocks(path, _sf_blocks(reader, block, count), rate, target_rate, channel, count)
                if reader.tell() - first < count:
                    raise AudioError(f"cannot decode {path}: the segment ends past the audio ({reader.tell() / rate:.2f} s)")
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"cannot decode {path}: {_sf_reason(exc)}") from exc
    return Decoded(samples, rate, channels)


def _segment_frames(path: Path, segment: tuple[float, float], rate: int, frames: int) -> tuple[int, int]:
    """First frame and frame count of [start, end) seconds, checked against the file's length."""
    start, end = segment
    first, last = round(start * rate), round(end * rate)
    if frames > 0 and last > frames:
        raise AudioError(f"cannot decode {path}: the segment ends at {end:g} s, past the audio's end ({frames / rate:.2f} s)")
    return first, last - first


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


def ffmpeg_executable() -> str | None:
    """`ffmpeg` on PATH, else the binary bundled with the optional imageio-ffmpeg, else None."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg  # optional extra: w2v-embed[ffmpeg]
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (RuntimeError, OSError):
        return None


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
        raise AudioError(f"cannot decode {path}: not a regular file ({_special_kind(info.st_mode)})")
    size = info.st_size
    if not os.access(path, os.R_OK):
        raise AudioError(f"cannot decode {path}: permission denied")
    if size == 0:
        raise AudioError(f"cannot decode {path}: empty file (0 bytes)")


def _special_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"))  # fmt: skip
    return next((words for test, words in kinds if test(mode)), "not a file")


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


def _one_line(text: str, limit: int = 200) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[-1] if lines else "unknown error"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _sf_reason(exc: BaseException) -> str:
    """libsndfile's own words without the 'Error opening <path>:' prefix soundfile adds."""
    text = getattr(exc, "error_string", None) or str(exc)
    return _one_line(text).removeprefix("Error : ").rstrip(".")


# --- block pipeline ---------------------------------------------------------------------------


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


def _downmix(block: np.ndarray, channel: int | None) -> np.ndarray:
    """(frames, channels) → (frames,): the chosen channel, or the mean of all of them."""
    if channel is not None:
        return np.ascontiguousarray(block[:, channel])
    if block.shape[1] == 1:
        return np.ascontiguousarray(block[:, 0])
    return block.mean(axis=1, dtype=np.float32)


def _resample_blocks(
    path: Path,
    blocks: Iterable[np.ndarray],
    rate: int,
    target_rate: int,
    channel: int | None,
    expected_frames: int | None,
) -> np.ndarray:
    """Downmix and resample (frames, channels) blocks into one preallocated 1-D float32 array."""
    stream = None if rate == target_rate else soxr.ResampleStream(rate, target_rate, 1, dtype="float32", quality="HQ")
    capacity = math.ceil(expected_frames * target_rate / rate) + 16 if expected_frames else 1 << 16
    out = np.empty(capacity, dtype=np.float32)
    filled = 0
    frames = 0

    def append(piece: np.ndarray) -> None:
        nonlocal filled
        if filled + len(piece) > len(out):  # realloc: large blocks grow by remapping, not copying
            out.resize(max(2 * len(out), filled + len(piece)), refcheck=False)
        out[filled : filled + len(piece)] = piece
        filled += len(piece)

    for block in blocks:
        mono = _downmix(block, channel)
        if not np.isfinite(mono).all():
            raise AudioError(f"cannot decode {path}: contains NaN or infinite samples")
        frames += len(mono)
        append(stream.resample_chunk(mono, last=False) if stream else mono)
    if frames == 0:
        raise AudioError(f"cannot decode {path}: no audio (0 frames)")
    if stream:
        append(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    out.resize(filled, refcheck=False)  # no view of `out` exists: shrink in place
    return out


# --- ffmpeg -----------------------------------------------------------------------------------
# ffmpeg writes a WAV stream (pcm_f32le) to a pipe at the decoder's native rate, all channels.
# The WAV header tells channels and rate exactly (no parsing of ffmpeg's human-readable log and
# no need for ffprobe); the sizes in it are placeholders on a pipe, so data is read until EOF.
# Downmix and resampling then run through the same code as libsndfile's blocks.


def _decode_with_ffmpeg(
    path: Path, channel: int | None, target_rate: int, sf_reason: str, segment: tuple[float, float] | None = None
) -> Decoded:
    exe = ffmpeg_executable()
    if exe is None:
        if path.suffix.lower().lstrip(".") not in _SNDFILE_EXTENSIONS:
            raise AudioError(f"cannot decode {path}: libsndfile does not read this format; {FFMPEG_HINT}")
        raise AudioError(f"cannot decode {path}: {sf_reason}")
    source = "file:" + os.fspath(path)  # the file protocol: names like "-x.m4a" or "a:b.m4a" stay names
    command = [
        exe, "-nostdin", "-hide_banner", "-loglevel", "error",
        *(["-ss", f"{segment[0]:.6f}", "-to", f"{segment[1]:.6f}"] if segment else []),
        "-i", source,
        "-map", "0:a:0", "-c:a", "pcm_f32le", "-f", "wav", "pipe:1",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty stderr cannot deadlock us
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        except OSError as exc:
            raise AudioError(f"cannot decode {path}: cannot run {exe}: {exc.strerror or exc}") from exc
        try:
            try:
                rate, channels = _read_wav_header(process.stdout)
            except AudioError as exc:
                process.wait()
                reason = _ffmpeg_log(log).replace(f"{source}: ", "") or str(exc)
                if path.suffix.lower().lstrip(".") in _SNDFILE_EXTENSIONS:
                    reason = f"{sf_reason} (libsndfile); {reason} (ffmpeg)"
                else:
                    reason = f"ffmpeg: {reason}"
                raise AudioError(f"cannot decode {path}: {reason}") from None
            _check_rate(path, rate)
            _check_channel(path, channel, channels)
            blocks = _pcm_blocks(process.stdout, channels, max(int(rate * BLOCK_SECONDS), 1))
            samples = _resample_blocks(path, blocks, rate, target_rate, channel, None)
            if process.wait() != 0:
                raise AudioError(f"cannot decode {path}: ffmpeg: {_ffmpeg_log(log) or 'failed'}")
            if segment and len(samples) < (segment[1] - segment[0] - 0.01) * target_rate:  # ffmpeg stops at the end
                raise AudioError(f"cannot decode {path}: the segment ends at {segment[1]:g} s, past the audio's end")
        finally:
            if process.poll() is None:
                process.kill()
            process.stdout.close()
            process.wait()
    return Decoded(samples, rate, channels)


def _ffmpeg_log(log: BinaryIO) -> str:
    log.seek(0)
    text = log.read().decode("utf-8", "replace")
    return _one_line(text) if text.strip() else ""


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise AudioError("truncated WAV header")
    return data


def _read_wav_header(stream: BinaryIO) -> tuple[int, int]:
    """(sample rate, channels) from a streamed RIFF/WAVE header; leaves `stream` at the samples."""
    riff = _read_exact(stream, 12)
    if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise AudioError("not a WAV stream")
    rate = channels = None
    while True:
        chunk_id, size = struct.unpack("<4sI", _read_exact(stream, 8))
        if chunk_id == b"data":
            if rate is None or channels is None:
                raise AudioError("WAV data before its format")
            return rate, channels
        body = _read_exact(stream, size + (size & 1))
        if chunk_id == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag not in (3, 0xFFFE) or bits != 32 or channels < 1 or rate < 1:
                raise AudioError(f"unexpected WAV format {tag}/{bits} bit")


def _pcm_blocks(stream: BinaryIO, channels: int, frames: int) -> Iterator[np.ndarray]:
    """Interleaved float32 little-endian PCM → (frames, channels) blocks until EOF."""
    frame_bytes = 4 * channels
    want = frames * frame_bytes
    rest = b""
    while True:
        data = stream.read(want)
        if not data:
            return
        data = rest + data
        usable = len(data) - len(data) % frame_bytes
        rest = data[usable:]
        if usable:
            yield np.frombuffer(data[:usable], dtype="<f4").reshape(-1, channels).astype(np.float32, copy=False)

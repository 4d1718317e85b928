"""Everything libsndfile does not read (m4a, aac, mp4, webm, wma…), through an `ffmpeg` subprocess.

ffmpeg writes a WAV stream (pcm_f32le) to a pipe at the decoder's native rate, all channels. The
WAV header tells channels and rate exactly (no parsing of ffmpeg's human-readable log and no need
for ffprobe); the sizes in it are placeholders on a pipe, so data is read until EOF. Downmix and
resampling then run through the same code as libsndfile's blocks (resample.py).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import AudioError, one_line

FFMPEG_HINT = "install ffmpeg (apt-get install ffmpeg) or `pip install 'w2v-embed[ffmpeg]'`"


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


@contextmanager
def pcm_stream(
    path: Path, block_seconds: float, libsndfile_reason: str | None, span: tuple[float, float] | None = None
) -> Iterator[tuple[int, int, Iterator[np.ndarray]]]:
    """(rate, channels, (frames, channels) blocks) of `path`, or of `span` seconds of it (-ss/-to).

    `libsndfile_reason` is why libsndfile refused a format it should read (None: not one of its
    formats); error lines name both decoders then. ffmpeg's exit status is checked when the caller
    is done with the blocks, and the process never outlives the block.
    """
    exe = ffmpeg_executable()
    if exe is None:
        if libsndfile_reason is None:
            raise AudioError(f"cannot decode {path}: libsndfile does not read this format; {FFMPEG_HINT}")
        raise AudioError(f"cannot decode {path}: {libsndfile_reason}")
    source = "file:" + os.fspath(path)  # the file protocol: names like "-x.m4a" or "a:b.m4a" stay names
    command = [
        exe, "-nostdin", "-hide_banner", "-loglevel", "error",
        *(["-ss", f"{span[0]:.6f}", "-to", f"{span[1]:.6f}"] if span else []),
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
                if libsndfile_reason is not None:
                    reason = f"{libsndfile_reason} (libsndfile); {reason} (ffmpeg)"
                else:
                    reason = f"ffmpeg: {reason}"
                raise AudioError(f"cannot decode {path}: {reason}") from None
            yield rate, channels, _pcm_blocks(process.stdout, channels, max(int(rate * block_seconds), 1))
            if process.wait() != 0:
                raise AudioError(f"cannot decode {path}: ffmpeg: {_ffmpeg_log(log) or 'failed'}")
        finally:
            if process.poll() is None:
                process.kill()
            process.stdout.close()
            process.wait()


def _ffmpeg_log(log: BinaryIO) -> str:
    log.seek(0)
    text = log.read().decode("utf-8", "replace")
    return one_line(text) if text.strip() else ""


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

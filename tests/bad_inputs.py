"""Hostile inputs for issue 9's cases, made on the fly: odd names, special files, broken audio and models.

Each helper writes one bad thing under the path it is given and returns that path, so a test reads as
the list of what it throws at the tool (`latin1_wav(tmp_path)`, `fifo(tmp_path / "x.wav")` …).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from audio_utils import sine, write_audio

LATIN1_NAME = b"caf\xe9.wav"  # not valid UTF-8: Python holds it as 'caf\udce9.wav'


def latin1_wav(folder: Path, seconds: float = 1.0) -> Path:
    """A good WAV whose file name is Latin-1 bytes; returns its path (os.fsdecode form)."""
    plain = write_audio(folder / "plain-name.wav", sine(seconds, 16_000), 16_000)
    path = Path(os.fsdecode(os.path.join(os.fsencode(folder), LATIN1_NAME)))
    os.rename(plain, path)  # by name: soundfile cannot even open such a name for writing
    return path


def fifo(path: Path) -> Path:
    """A named pipe with an audio extension: opening it for reading blocks until a writer comes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def extreme_float_wav(path: Path, seconds: float = 1.0, peak: float = 3.4e38) -> Path:
    """A finite float32 WAV with samples up to 3.4e38: fine as audio, overflows a model that does not normalise."""
    x = sine(seconds, 16_000, amplitude=1.0) * np.float32(peak)
    return write_audio(path, x, 16_000, subtype="FLOAT")


def truncated(source: Path, path: Path, keep_bytes: int) -> Path:
    """The first `keep_bytes` of `source` (a download or copy cut short)."""
    path.write_bytes(source.read_bytes()[:keep_bytes])
    return path


def wav_claiming_rate(path: Path, rate: int, num_samples: int = 32_000) -> Path:
    """A 16-bit mono PCM WAV whose header says `rate` Hz (1 Hz: 64 kB of samples claim 8.9 hours)."""
    data = (sine(num_samples / 16_000, 16_000)[:, 0] * 32767).astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
    path.write_bytes(header + b"data" + struct.pack("<I", len(data)) + data)
    return path


def corrupted_copy(source: Path, path: Path, offset_fraction: float = 0.5, junk: bytes = b"\xff" * 8) -> Path:
    """`source` with 8 bytes overwritten in the middle (bit rot in a model's weights)."""
    data = bytearray(source.read_bytes())
    at = int(len(data) * offset_fraction)
    data[at : at + len(junk)] = junk
    path.write_bytes(bytes(data))
    return path

"""Generated test audio: deterministic sines and noise, written in any format soundfile or ffmpeg can.

Tests import it as a top-level module (pytest puts tests/ on sys.path), for example
`write_audio(tmp_path / "a.flac", sine(2.0, 44100, channels=2), 44100)`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf


def sine(seconds: float, rate: int, channels: int = 1, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    """(frames, channels) float32; channel k is at freq * (k + 1), so channels are distinguishable."""
    t = np.arange(round(seconds * rate), dtype=np.float64) / rate
    cols = [amplitude * np.sin(2 * np.pi * freq * (k + 1) * t) for k in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def noise(seconds: float, rate: int, channels: int = 1, amplitude: float = 0.3, seed: int = 0) -> np.ndarray:
    """(frames, channels) float32 uniform noise in [-amplitude, amplitude]; reproducible by seed."""
    rng = np.random.default_rng(seed)
    frames = round(seconds * rate)
    return rng.uniform(-amplitude, amplitude, size=(frames, channels)).astype(np.float32)


def can_write(fmt: str, subtype: str | None = None) -> bool:
    """Whether this libsndfile build writes `fmt` (e.g. 'MP3') with `subtype` (e.g. 'MPEG_LAYER_III')."""
    if fmt.upper() not in sf.available_formats():
        return False
    return subtype is None or subtype.upper() in sf.available_subtypes(fmt)


def write_audio(path: Path, data: np.ndarray, rate: int, subtype: str | None = None, fmt: str | None = None) -> Path:
    """Write with soundfile; the format comes from the extension unless `fmt` is given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, rate, subtype=subtype, format=fmt)
    return path


def read_back(path: Path) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 and rate, as libsndfile decodes the file (lossy codecs included)."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data, rate


def has_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None


def write_with_ffmpeg(path: Path, data: np.ndarray, rate: int, *codec_args: str) -> Path:
    """Encode `data` with ffmpeg into whatever `path`'s extension means (m4a → AAC by default)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = data.shape[1]
    command = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "f32le", "-ar", str(rate), "-ac", str(channels), "-i", "pipe:0",
        *codec_args, str(path),
    ]  # fmt: skip
    subprocess.run(command, input=np.ascontiguousarray(data, dtype="<f4").tobytes(), check=True)
    return path


def write_long_wav(path: Path, seconds: float, rate: int, channels: int, block_seconds: float = 60.0) -> Path:
    """A long noise WAV written block by block, so generating hours of audio stays small in memory."""
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=channels, subtype="PCM_16") as f:
        done, seed = 0.0, 0
        while done < seconds:
            step = min(block_seconds, seconds - done)
            f.write(noise(step, rate, channels, seed=seed))
            done += step
            seed += 1
    return Path(path)

"""Write a small mixed example corpus: several formats, rates, channel counts, one long file, one bad file.

    python scripts/make_example_audio.py example/corpus
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf


def voiced(seconds: float, rate: int, f0: float, seed: int, channels: int = 1) -> np.ndarray:
    """Speech-like test signal: a gliding harmonic tone with syllable-rate amplitude modulation and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    mono = 0.2 * tone * envelope + 0.01 * rng.standard_normal(len(t))
    if channels == 1:
        return mono.astype(np.float32)
    return np.stack([mono * (1 - 0.3 * c) for c in range(channels)], axis=1).astype(np.float32)


FILES = [
    # name, seconds, rate, channels, subtype
    ("speaker1/utt1.wav", 3.0, 16_000, 1, "PCM_16"),
    ("speaker1/utt2.flac", 5.5, 44_100, 2, "PCM_24"),
    ("speaker2/utt1.ogg", 2.0, 22_050, 1, "VORBIS"),
    ("speaker2/utt2.wav", 8.0, 48_000, 2, "FLOAT"),
    ("long/lecture.flac", 150.0, 16_000, 1, "PCM_16"),
]


def make_corpus(root: Path) -> list[Path]:
    written = []
    for i, (name, seconds, rate, channels, subtype) in enumerate(FILES):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, voiced(seconds, rate, 110 + 20 * i, i, channels), rate, subtype=subtype)
        written.append(path)
    broken = root / "speaker2" / "corrupt.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")  # recorded under /failed, not fatal
    return written + [broken]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    for path in make_corpus(parser.parse_args().root):
        print(path)


if __name__ == "__main__":
    main()

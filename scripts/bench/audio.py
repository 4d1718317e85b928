"""Generated audio for the end-to-end cases: a corpus of mixed rates and channels, long files, diarization-like turns."""

from __future__ import annotations

from pathlib import Path


def make_corpus(folder: Path, files: int, seed: int = 0) -> float:
    """`files` noise-and-tone files of 2–20 s at 8–48 kHz, mono or stereo; returns total seconds."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for i in range(files):
        rate = int(rng.choice([8_000, 16_000, 22_050, 44_100, 48_000]))
        seconds = float(rng.uniform(2, 20))
        channels = int(rng.choice([1, 2]))
        n = int(seconds * rate)
        t = np.arange(n) / rate
        x = 0.1 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.02 * rng.standard_normal(n)
        x = np.repeat(x[:, None], channels, axis=1) if channels == 2 else x
        sf.write(folder / f"f{i:04d}.{'flac' if i % 2 else 'wav'}", x.astype(np.float32), rate)
        total += seconds
    return total


def make_turns(recording: Path, table: Path, seconds: float, seed: int = 2) -> tuple[int, float]:
    """A diarization-like segment list: turns of 1–8 s with 0.1–1.5 s pauses; returns (rows, seconds in turns)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows, covered, t = [], 0.0, 0.0
    while True:
        start = t + rng.uniform(0.1, 1.5)
        end = start + rng.uniform(1.0, 8.0)
        if end > seconds:
            break
        rows.append(f"{recording}\t{start:.3f}\t{end:.3f}\n")
        covered += round(end, 3) - round(start, 3)
        t = end
    table.write_text("path\tstart\tend\n" + "".join(rows))
    return len(rows), covered


def make_long_file(path: Path, hours: float) -> None:
    """A long 48 kHz stereo FLAC, written in blocks so the generator itself stays small."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(1)
    left = round(hours * 3600 * 48_000)
    with sf.SoundFile(path, "w", 48_000, 2, format="FLAC") as f:
        while left > 0:  # a minute at a time
            block = min(left, 48_000 * 60)
            f.write(0.05 * rng.standard_normal((block, 2)).astype(np.float32))
            left -= block

"""Outputs of real `extract` runs on generated audio, shared by the convert, docs and adapter tests."""

from __future__ import annotations

from pathlib import Path

from audio_utils import noise, sine, write_audio

# Names sort differently from their lengths, so stored order is not length (batching) order.
CLIPS = {"corpus/b.wav": 1.3, "corpus/a.wav": 0.6, "corpus/sub/c.wav": 2.1, "corpus/d.wav": 0.9}


def make_corpus(root: Path) -> Path:
    for i, (name, seconds) in enumerate(CLIPS.items()):
        signal = sine(seconds, 16000, freq=220.0 * (i + 1)) + noise(seconds, 16000, amplitude=0.05, seed=i)
        write_audio(root / name, signal, 16000)
    return root / "corpus"


def extract(model: Path, output: Path, *args: str) -> Path:
    from typer.testing import CliRunner

    from w2v_embed.cli import app

    result = CliRunner().invoke(app, ["extract", *args, "-o", str(output), "-m", str(model), "-q"])
    assert result.exit_code == 0, result.output
    return output

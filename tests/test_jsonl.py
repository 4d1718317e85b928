"""-o -: pooled rows as JSON Lines on stdout, as files finish; errors on stderr; frame-level refused."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from w2v_embed.embedder import EmbedOptions, Embedder


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "w2v_embed", "extract", *args], capture_output=True, text=True)


def test_rows_per_file_and_per_window(onnx_model, tmp_path):
    rng = np.random.default_rng(0)
    audio = {name: rng.uniform(-0.5, 0.5, n).astype(np.float32) for name, n in (("a.wav", 30_000), ("b.wav", 20_000))}
    for name, x in audio.items():
        sf.write(tmp_path / name, x, 16_000, subtype="FLOAT")
    (tmp_path / "bad.wav").write_bytes(b"RIFF nonsense")
    model = str(onnx_model("group"))
    proc = _run(str(tmp_path), "-o", "-", "-m", model, "--layers", "1,last")
    assert proc.returncode == 1 and "bad.wav" in proc.stderr  # the failure is on stderr, not stdout
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(r["path"] for r in rows) == sorted(str(tmp_path / n) for n in audio)
    embedder = Embedder(model, device="cpu", options=EmbedOptions("1,last", "mean"))
    for row in rows:
        expected = embedder.embed(audio[row["path"].rsplit("/", 1)[1]], 16_000)
        for layer in (1, "last"):
            np.testing.assert_allclose(row["layers"][str(layer)], expected[layer], atol=1e-5)
    proc = _run(str(tmp_path / "a.wav"), "-o", "-", "-m", model, "--window", "1", "--hop", "0.5")
    windows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(w["start"], w["end"], w["partial"]) for w in windows] == [(0.0, 1.0, False), (0.5, 1.5, False),
                                                                        (1.0, 2.0, True), (1.5, 2.5, True)]
    assert all(len(w["layers"]["last"]) == 32 for w in windows)


def test_frame_level_to_a_pipe_is_refused(onnx_model, tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(16_000, np.float32), 16_000)
    proc = _run(str(tmp_path / "a.wav"), "-o", "-", "-m", str(onnx_model("group")), "--pool", "none")
    assert proc.returncode == 2 and proc.stdout == "" and "frame-level" in proc.stderr
    proc = _run(str(tmp_path / "a.wav"), "-o", "-", "-m", str(onnx_model("group")), "--resume")
    assert proc.returncode == 2 and "--resume" in proc.stderr

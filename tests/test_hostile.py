"""Issue 9, end to end: what a hostile user throws at `w2v-embed extract` (inputs from bad_inputs.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import pytest

import bad_inputs
from audio_utils import sine, write_audio
from test_cli import cli
from w2v_embed.errors import W2VEmbedError
from w2v_embed.store import load


def test_names_that_are_not_utf8_are_embedded_and_stored_byte_for_byte(onnx_model, tmp_path):
    corpus = tmp_path / "corpus"
    latin1 = bad_inputs.latin1_wav(corpus)
    write_audio(corpus / "b.wav", sine(1.0, 16_000), 16_000)
    listing = tmp_path / "list.txt"
    listing.write_bytes(os.fsencode(latin1) + b"\n" + os.fsencode(corpus) + b"/gone\xe9.wav\n")  # Latin-1 lines
    model = str(onnx_model("group"))
    for args, code in (([str(corpus)], 0), (["--files-from", str(listing)], 1)):
        out = tmp_path / "out.h5"
        proc = cli("extract", *args, "-o", str(out), "-m", model, "--overwrite")
        assert proc.returncode == code, proc.stderr
        assert str(latin1) in load(out)[0]
        with h5py.File(out) as f:
            assert os.fsencode(latin1) in list(f["paths"][()])
    assert "gone\\xe9.wav: cannot decode" in proc.stderr  # shown with the odd byte escaped
    info = cli("info", str(out))
    assert info.returncode == 0 and "gone\\xe9.wav" in info.stdout, info.stderr


def extract_to(out: Path, inputs: list[Path], model: Path, mode: str = "new", **options):
    """The library's extract, as the CLI calls it (faster than a subprocess)."""
    from w2v_embed.discover import discover
    from w2v_embed.embedder import Embedder
    from w2v_embed.extract import ExtractOptions, extract

    embedder = Embedder(model, device="cpu")
    return extract(discover([str(p) for p in inputs]), out, embedder, ExtractOptions(mode=mode, **options))


def test_a_damaged_model_gives_failed_files_and_is_refused_on_resume(onnx_model, tmp_path):
    corpus = tmp_path / "corpus"
    for i in range(2):
        write_audio(corpus / f"{i}.wav", sine(1.0, 16_000, freq=300 + 100 * i), 16_000)
    model = tmp_path / "model.onnx"
    shutil.copy(onnx_model("group"), model)
    out = tmp_path / "out.h5"
    assert extract_to(out, [corpus], model).ok == 2
    bad_inputs.corrupted_copy(onnx_model("group"), model)  # 8 bytes of bit rot in the weights
    with pytest.raises(W2VEmbedError, match="cannot resume: .* model file sha256 .*--overwrite"):
        extract_to(out, [corpus], model, "resume")
    summary = extract_to(out, [corpus], model, "overwrite")
    assert summary.ok == 0 and summary.failed == 2
    assert {reason for _, reason in summary.failures} == {
        "the model's output is not finite (NaN or infinite values in layer 3)"}


def test_resume_with_another_channel_is_refused(onnx_model, tmp_path):
    stereo = write_audio(tmp_path / "st.wav", sine(1.0, 16_000, channels=2), 16_000)
    out = tmp_path / "out.h5"
    extract_to(out, [stereo], onnx_model("group"), channel=1)
    with pytest.raises(W2VEmbedError, match="cannot resume: .* channel 1, this run asks for mean"):
        extract_to(out, [stereo], onnx_model("group"), "resume")

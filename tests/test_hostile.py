"""Issue 9, end to end: what a hostile user throws at `w2v-embed extract` (inputs from bad_inputs.py)."""

from __future__ import annotations

import os
from pathlib import Path

import h5py

import bad_inputs
from audio_utils import sine, write_audio
from test_cli import cli
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

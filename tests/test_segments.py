"""--segments: rows that are parts of recordings, decoded by seeking, equal to the part cut out alone."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
import soundfile as sf

import w2v_embed
from w2v_embed.audio import decode
from w2v_embed.errors import UsageError
from w2v_embed.segments import parse_table, read_segments


def test_tsv_csv_and_kaldi_rows(tmp_path):
    tsv = parse_table("start\tend\tpath\tid\n0.5\t1.5\ta.wav\tutt1\n2\t3\tb.flac\t\n", "s.tsv")
    assert [(f.name, str(f.path), f.segment, f.problem) for f in tsv] == [
        ("utt1", "a.wav", (0.5, 1.5), None), ("b.flac:2-3", "b.flac", (2.0, 3.0), None)]
    csv = parse_table("path,start,end\na.wav,1,1\na.wav,x,2\na.wav,-1,2\n", "s.csv")
    assert [f.problem for f in csv] == ["s.csv line 2: expected 0 <= start < end, got 1 to 1",
                                        "s.csv line 3: start and end must be seconds, got 'x', '2'",
                                        "s.csv line 4: expected 0 <= start < end, got -1 to 2"]
    with pytest.raises(UsageError, match="lacks end"):
        parse_table("path,start\na.wav,1\n")
    (tmp_path / "wav.scp").write_text("rec1 /data/rec1.wav\nrec2 sox x.wav -t wav - |\n")
    (tmp_path / "segments").write_text("u1 rec1 0.0 1.25\nu2 rec2 0 1\nu3 rec9 0 1\n")
    kaldi = read_segments(tmp_path)
    assert [(f.name, f.segment) for f in kaldi][:1] == [("u1", (0.0, 1.25))]
    assert "not a plain path" in kaldi[1].problem and "rec9" in kaldi[2].problem


def test_decoding_a_segment_equals_decoding_it_cut_out(tmp_path):
    rate = 44_100
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (rate * 5, 2)).astype(np.float32)
    sf.write(tmp_path / "long.flac", x, rate)
    a, b = 1.25, 3.5
    sf.write(tmp_path / "cut.flac", x[round(a * rate) : round(b * rate)], rate)
    part = decode(tmp_path / "long.flac", segment=(a, b)).samples
    np.testing.assert_array_equal(part, decode(tmp_path / "cut.flac").samples)


def test_cli_rows_failures_and_layout(onnx_model, tmp_path):
    rate = 22_050
    x = np.random.default_rng(1).uniform(-0.5, 0.5, rate * 6).astype(np.float32)
    sf.write(tmp_path / "rec.wav", x, rate, subtype="FLOAT")
    sf.write(tmp_path / "cut.wav", x[round(2 * rate) : round(4.5 * rate)], rate, subtype="FLOAT")
    table = tmp_path / "segments.tsv"
    table.write_text(
        "path\tstart\tend\tid\n"
        f"{tmp_path / 'rec.wav'}\t2\t4.5\tturn1\n"
        f"{tmp_path / 'rec.wav'}\t0\t1\t\n"
        f"{tmp_path / 'rec.wav'}\t5\t7\tpast_the_end\n"
        f"{tmp_path / 'missing.wav'}\t0\t1\tunknown_file\n"
        f"{tmp_path / 'rec.wav'}\t1\t1.01\ttoo_short\n"
        f"{tmp_path / 'rec.wav'}\t3\t2\tbackwards\n"
    )
    out = tmp_path / "seg.h5"
    model = str(onnx_model("group"))
    run = [sys.executable, "-m", "w2v_embed", "extract", "-m", model, "--layers", "1,last", "--chunk-seconds", "0"]
    proc = subprocess.run([*run, "--segments", str(table), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    failed = dict(w2v_embed.read_summary(out)["failed"])
    assert set(failed) == {"past_the_end", "unknown_file", "too_short", "backwards"}
    assert "past the audio's end" in failed["past_the_end"] and "no such file" in failed["unknown_file"]
    assert "too short" in failed["too_short"] and "line 7" in failed["backwards"]
    with h5py.File(out) as f:
        assert f.attrs["segments"]
        names = list(f["paths"].asstr()[()])
        assert sorted(names) == sorted(["turn1", f"{tmp_path / 'rec.wav'}:0-1"])
        row = names.index("turn1")
        assert f["source_path"].asstr()[row] == str(tmp_path / "rec.wav")
        assert (f["segment_start"][row], f["segment_end"][row]) == (2.0, 4.5)
    # The segment equals the same audio cut out into a file and run alone.
    whole = tmp_path / "cut.h5"
    assert subprocess.run([*run, str(tmp_path / "cut.wav"), "-o", str(whole)], capture_output=True).returncode == 0
    for layer in (1, "last"):
        paths, rows = w2v_embed.load(out, layer=layer)
        _, alone = w2v_embed.load(whole, layer=layer)
        np.testing.assert_allclose(rows[paths.index("turn1")], alone[0], atol=1e-4)


def test_segments_with_windows_into_a_pipe(onnx_model, tmp_path):
    import json

    sf.write(tmp_path / "rec.wav", np.random.default_rng(2).uniform(-0.5, 0.5, 16_000 * 5).astype(np.float32), 16_000)
    table = tmp_path / "s.csv"
    table.write_text(f"path,start,end,id\n{tmp_path / 'rec.wav'},1,3.5,turn\n")
    proc = subprocess.run([sys.executable, "-m", "w2v_embed", "extract", "--segments", str(table), "-o", "-", "-m",
                           str(onnx_model("group")), "--window", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["path"], r["source_path"], r["segment_start"], r["start"], r["partial"]) for r in rows] == [
        ("turn", str(tmp_path / "rec.wav"), 1.0, 0.0, False), ("turn", str(tmp_path / "rec.wav"), 1.0, 1.0, False),
        ("turn", str(tmp_path / "rec.wav"), 1.0, 2.0, True)]

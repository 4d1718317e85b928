"""--segments: rows that are parts of recordings, decoded by seeking (close ones in one pass), equal to the part cut out alone."""

from __future__ import annotations

import json
import subprocess
import sys

from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf

import w2v_embed
from w2v_embed import audio, resample
from w2v_embed.audio import AudioError, decode, decode_segments
from w2v_embed.discover import AudioFile
from w2v_embed.errors import UsageError
from w2v_embed.extract import extract
from w2v_embed.segments import close_groups, parse_rttm, parse_table, read_segments
from w2v_embed.store import read_summary


def test_tsv_csv_and_kaldi_rows(tmp_path):
    tsv = parse_table("start\tend\tpath\tid\n0.5\t1.5\ta.wav\tutt1\n2\t3\tb.flac\t\n", "s.tsv")
    assert [(f.name, str(f.path), f.segment, f.problem) for f in tsv] == [
        ("utt1", "a.wav", (0.5, 1.5), None), ("b.flac:2-3", "b.flac", (2.0, 3.0), None)]
    csv = parse_table("path,start,end\na.wav,1,1\na.wav,x,2\na.wav,-1,2\n", "s.csv")
    assert [f.problem for f in csv] == ["s.csv line 2: expected 0 <= start < end, got 1 to 1",
                                        "s.csv line 3: start and end must be seconds, got 'x', '2'",
                                        "s.csv line 4: expected 0 <= start < end, got -1 to 2"]
    excel = parse_table("\ufeffPath,Start,End\r\na.wav,0,1.5\r\n")  # a spreadsheet's CSV: BOM, CRLF, capitals
    assert [(str(f.path), f.segment, f.problem) for f in excel] == [("a.wav", (0.0, 1.5), None)]
    with pytest.raises(UsageError, match="lacks end"):
        parse_table("path,start\na.wav,1\n")
    # A name is one output row: a repeated one fails by its line instead of vanishing as a retried delivery.
    twice = parse_table("path,start,end,id\na.wav,0,1,x\na.wav,2,3,x\na.wav,0,1,\na.wav,0,1,\n", "d.csv")
    assert [f.name for f in twice] == ["x", "x (d.csv line 3)", "a.wav:0-1", "a.wav:0-1 (d.csv line 5)"]
    assert [f.problem for f in twice][:2] == [None, "d.csv line 3: the name x is already used by d.csv line 2; "
                                              "give each row an id of its own"]
    assert twice[2].problem is None and "already used by d.csv line 4" in twice[3].problem
    (tmp_path / "wav.scp").write_text("rec1 /data/rec1.wav\nrec2 sox x.wav -t wav - |\n")
    (tmp_path / "segments").write_text("u1 rec1 0.0 1.25\nu2 rec2 0 1\nu3 rec9 0 1\n")
    kaldi = read_segments(tmp_path)
    assert [(f.name, f.segment) for f in kaldi][:1] == [("u1", (0.0, 1.25))]
    assert "not a plain path" in kaldi[1].problem
    assert kaldi[2].problem.endswith("line 3: recording rec9 is not in wav.scp")  # missing, not a pipe


def test_decoding_a_segment_equals_decoding_it_cut_out(tmp_path):
    rate = 44_100
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (rate * 5, 2)).astype(np.float32)
    sf.write(tmp_path / "long.flac", x, rate)
    a, b = 1.25, 3.5
    sf.write(tmp_path / "cut.flac", x[round(a * rate) : round(b * rate)], rate)
    part = decode(tmp_path / "long.flac", segment=(a, b)).samples
    np.testing.assert_array_equal(part, decode(tmp_path / "cut.flac").samples)


def test_rttm_rows_are_matched_to_the_inputs_by_name(tmp_path):
    audio = [AudioFile(Path("/d/corpus/a.wav"), "corpus/a.wav"), AudioFile(Path("/d/corpus/sub/b.flac"), "corpus/sub/b.flac"),
             AudioFile(Path("/d/x/b.wav"), "x/b.wav")]
    rttm = (
        "SPKR-INFO a 1 <NA> <NA> <NA> unknown spk1 <NA> <NA>\n"
        "SPEAKER a 1 0.50 1.25 <NA> <NA> spk1 <NA> <NA>\n"
        "SPEAKER corpus/sub/b 1 10000.01 2.00 <NA> <NA> spk2 <NA> <NA>\n"
        "SPEAKER corpus/sub/b 1 10000.02 2.00 <NA> <NA> spk2 <NA> <NA>\n"
        "SPEAKER b 1 0 1 <NA> <NA> spk1 <NA> <NA>\n"
        "SPEAKER c 1 0 1 <NA> <NA> spk1 <NA> <NA>\n"
        "SPEAKER a 1 3 0 <NA> <NA> spk1 <NA> <NA>\n"
        "SPEAKER a 1 x\n"
    )
    rows = parse_rttm(rttm, audio, "d.rttm")
    assert [(f.name, str(f.path), f.problem) for f in rows[:3]] == [
        ("a:0.5-1.75:spk1", "/d/corpus/a.wav", None),
        ("corpus/sub/b:10000.01-10002.01:spk2", "/d/corpus/sub/b.flac", None),  # `:g` gave both "10000-10002"
        ("corpus/sub/b:10000.02-10002.02:spk2", "/d/corpus/sub/b.flac", None)]
    assert rows[0].segment == (0.5, 1.75) and rows[1].segment == pytest.approx((10000.01, 10002.01))
    assert "line 5: recording b matches 2 inputs (corpus/sub/b.flac, x/b.wav)" in rows[3].problem
    assert "line 6: recording c matches no input" in rows[4].problem
    assert "line 7: expected 0 <= start < end" in rows[5].problem
    assert "line 8: expected SPEAKER uri channel onset duration" in rows[6].problem
    (tmp_path / "t.rttm").write_text(rttm)
    with pytest.raises(UsageError, match="give their audio files or folders as inputs"):
        read_segments(tmp_path / "t.rttm")
    with pytest.raises(UsageError, match="lists the audio itself"):
        read_segments(tmp_path, audio)  # a Kaldi folder (or a table) with audio inputs


def test_cli_rttm_over_a_folder_equals_the_same_rows_as_a_table(onnx_model, tmp_path):
    rate = 22_050
    (tmp_path / "rec").mkdir()
    x = np.random.default_rng(7).uniform(-0.5, 0.5, rate * 6).astype(np.float32)
    sf.write(tmp_path / "rec" / "meeting.wav", x, rate, subtype="FLOAT")
    (tmp_path / "d.rttm").write_text("SPEAKER meeting 1 0.25 2.5 <NA> <NA> alice <NA> <NA>\n"
                                     "SPEAKER meeting 1 2.0 3.0 <NA> <NA> bob <NA> <NA>\n"
                                     "SPEAKER other 1 0 1 <NA> <NA> alice <NA> <NA>\n")
    wav = tmp_path / "rec" / "meeting.wav"
    (tmp_path / "t.tsv").write_text(f"path\tstart\tend\tid\n{wav}\t0.25\t2.75\talice\n{wav}\t2\t5\tbob\n")
    run = [sys.executable, "-m", "w2v_embed", "extract", "-m", str(onnx_model("group")), "--chunk-seconds", "0"]
    proc = subprocess.run([*run, "--segments", str(tmp_path / "d.rttm"), str(tmp_path / "rec"), "-o",
                           str(tmp_path / "rttm.h5")], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr  # the row for "other"
    assert "recording other matches no input" in dict(w2v_embed.read_summary(tmp_path / "rttm.h5")["failed"])[
        "other:0-1:alice"]
    assert subprocess.run([*run, "--segments", str(tmp_path / "t.tsv"), "-o", str(tmp_path / "tsv.h5")]).returncode == 0
    paths, got = w2v_embed.load(tmp_path / "rttm.h5")
    want_paths, want = w2v_embed.load(tmp_path / "tsv.h5")
    assert sorted(paths) == ["meeting:0.25-2.75:alice", "meeting:2-5:bob"]
    with h5py.File(tmp_path / "rttm.h5") as f:
        assert set(f["source_path"].asstr()[()]) == {str(wav)}
    for name, want_name in (("meeting:0.25-2.75:alice", "alice"), ("meeting:2-5:bob", "bob")):
        np.testing.assert_allclose(got[paths.index(name)], want[want_paths.index(want_name)], atol=1e-6)
    refused = subprocess.run([*run, "--segments", str(tmp_path / "t.tsv"), str(tmp_path / "rec"), "-o",
                              str(tmp_path / "x.h5")], capture_output=True, text=True)
    assert refused.returncode == 2 and "lists the audio itself" in refused.stderr


def _count_opens(monkeypatch) -> list[str]:
    """Every file libsndfile opens from now on (the decoder's one read per file or group)."""
    opened: list[str] = []
    real = audio.sf.SoundFile

    def counting(path, *args, **kwargs):
        opened.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(audio.sf, "SoundFile", counting)
    return opened


# Overlapping, adjacent, a gap, a short one, one reaching the last sample, and one past the end.
SEGMENTS = [(1.0, 4.0), (3.0, 6.0), (6.0, 8.0), (10.0, 12.0), (12.5, 12.6), (14.0, 20.0), (18.0, 25.0)]


@pytest.mark.parametrize("rate, channels", [(44_100, 2), (16_000, 1)])
def test_close_segments_share_one_read_and_equal_each_decoded_alone(tmp_path, monkeypatch, rate, channels):
    x = np.random.default_rng(3).uniform(-0.5, 0.5, (rate * 20, channels)).astype(np.float32)
    sf.write(tmp_path / "rec.flac", x, rate, subtype="PCM_24")
    monkeypatch.setattr(audio, "BLOCK_SECONDS", 0.7)  # blocks that cut through segments
    opened = _count_opens(monkeypatch)
    together = decode_segments(tmp_path / "rec.flac", SEGMENTS)
    assert len(opened) == 1
    for (a, b), got in zip(SEGMENTS[:-1], together):
        np.testing.assert_array_equal(got.samples, decode(tmp_path / "rec.flac", segment=(a, b)).samples)
        sf.write(tmp_path / "cut.flac", sf.read(tmp_path / "rec.flac", dtype="float32", always_2d=True)[0][round(a * rate) : round(b * rate)], rate, subtype="PCM_24")
        np.testing.assert_array_equal(got.samples, decode(tmp_path / "cut.flac").samples)
        assert (got.source_sample_rate, got.source_channels) == (rate, channels)
    assert isinstance(together[-1], AudioError) and "ends at 25.000 s, 5.000 s past the audio's end at 20.000 s" in str(together[-1])


def test_close_segments_through_ffmpeg_share_one_process(tmp_path, monkeypatch):
    if audio.ffmpeg_executable() is None:
        pytest.skip("no ffmpeg")
    rate = 22_050
    x = np.random.default_rng(4).uniform(-0.5, 0.5, (rate * 20, 2)).astype(np.float32)
    sf.write(tmp_path / "rec.wav", x, rate, subtype="FLOAT")
    started = []
    real = audio.ffmpeg.subprocess.Popen
    monkeypatch.setattr(audio.ffmpeg.subprocess, "Popen", lambda *a, **k: started.append(a) or real(*a, **k))
    together = audio._segments_with_ffmpeg(tmp_path / "rec.wav", SEGMENTS, None, 16_000, "unused")
    assert len(started) == 1
    for (a, b), got in zip(SEGMENTS[:-1], together):
        sf.write(tmp_path / "cut.wav", x[round(a * rate) : round(b * rate)], rate, subtype="FLOAT")
        np.testing.assert_array_equal(got.samples, decode(tmp_path / "cut.wav").samples)
    assert isinstance(together[-1], AudioError) and "past the audio's end" in str(together[-1])


def test_a_group_of_many_short_segments_holds_few_resamplers(tmp_path, monkeypatch):
    rate = 48_000
    sf.write(tmp_path / "rec.wav", np.random.default_rng(8).uniform(-0.5, 0.5, rate * 60).astype(np.float32), rate)
    segments = [(i * 0.02, i * 0.02 + 0.05) for i in range(2900)]  # 50 ms windows every 20 ms: one group
    live, most = set(), [0]

    class Counting(resample.Resampled):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            live.add(id(self))
            most[0] = max(most[0], len(live))

        def finish(self) -> np.ndarray:
            live.discard(id(self))
            return super().finish()

    monkeypatch.setattr(resample, "Resampled", Counting)
    got = decode_segments(tmp_path / "rec.wav", segments)
    assert most[0] <= 4  # the ones a block edge cuts through, not 2,900 (~90 kB of soxr state each)
    for i in (0, 499, 500, 2899):  # 500 starts at 10.0 s, where a block ends
        np.testing.assert_array_equal(got[i].samples, decode(tmp_path / "rec.wav", segment=segments[i]).samples)


def test_a_bad_stretch_fails_only_the_segments_in_it(tmp_path):
    x = np.random.default_rng(5).uniform(-0.5, 0.5, 16_000 * 6).astype(np.float32)
    x[16_000 * 3 + 5] = np.nan
    sf.write(tmp_path / "rec.wav", x, 16_000, subtype="FLOAT")
    ok, bad, after, tiny = decode_segments(tmp_path / "rec.wav", [(0.0, 2.0), (2.5, 3.5), (4.0, 6.0), (1.0, 1.00001)])
    assert isinstance(bad, AudioError) and "NaN" in str(bad)
    assert isinstance(tiny, AudioError) and "shorter than one sample at 16000 Hz" in str(tiny)
    np.testing.assert_array_equal(ok.samples, x[:32_000])
    np.testing.assert_array_equal(after.samples, x[64_000:])


def test_close_groups():
    def seg(path, a, b):
        return AudioFile(Path(path), f"{path}:{a}-{b}", segment=(a, b))

    files = [
        seg("r.wav", 30, 35),  # 0: after a 15 s gap from the 1..15 group: a group of its own
        seg("r.wav", 1, 5), seg("q.wav", 0, 2), seg("r.wav", 4, 15),  # 1, 3 overlap; 2 another recording
        AudioFile(Path("whole.wav"), "whole.wav"),  # 4: a whole file: alone
        AudioFile(Path("r.wav"), "bad", problem="line 7: backwards"),  # 5: rejected: alone
        seg("r.wav", 24, 29),  # 6: 9 s after 15: joins 0's group (ends at 35; starts at 24 ≤ 15 + 10)
        seg("q.wav", 400, 401),
    ]
    assert close_groups(files) == [[1, 3, 6, 0], [2], [4], [5], [7]]
    assert close_groups(files, max_gap=5.0) == [[6, 0], [1, 3], [2], [4], [5], [7]]  # in time order within a group
    # At most 10 s of segments a group: 1 (4 s) + 3 (11 s) split; 6 + 0 (5 + 5 s) stay.
    assert close_groups(files, max_seconds=10.0) == [[6, 0], [1], [2], [3], [4], [5], [7]]


def test_close_segments_are_decoded_once_in_a_run(onnx_model, tmp_path, monkeypatch):
    rate = 32_000
    x = np.random.default_rng(6).uniform(-0.5, 0.5, rate * 12).astype(np.float32)
    sf.write(tmp_path / "rec.flac", x, rate)
    rows = [(0.5, 2.0), (1.5, 3.0), (3.2, 5.0), (7.0, 9.5), (9.5, 11.9)]
    table = "path\tstart\tend\n" + "".join(f"{tmp_path / 'rec.flac'}\t{a}\t{b}\n" for a, b in rows)
    files = parse_table(table)
    embedder = w2v_embed.Embedder(onnx_model("group"), options=w2v_embed.EmbedOptions("1,last", chunk_seconds=0))
    opened = _count_opens(monkeypatch)
    summary = extract(files, tmp_path / "seg.h5", embedder)
    assert summary.ok == len(rows) and len(opened) == 1
    paths, got = w2v_embed.load(tmp_path / "seg.h5", layer="last")
    for (a, b), file in zip(rows, files):
        alone = embedder.embed(x[round(a * rate) : round(b * rate)], rate)  # the same audio cut out, run alone
        np.testing.assert_allclose(got[paths.index(file.name)], alone["last"], atol=1e-4)


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
        f"{tmp_path / 'rec.wav'}\t0\t1\tturn1\n"
    )
    out = tmp_path / "seg.h5"
    model = str(onnx_model("group"))
    run = [sys.executable, "-m", "w2v_embed", "extract", "-m", model, "--layers", "1,last", "--chunk-seconds", "0"]
    proc = subprocess.run([*run, "--segments", str(table), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    failed = dict(w2v_embed.read_summary(out)["failed"])
    assert set(failed) == {"past_the_end", "unknown_file", "too_short", "backwards", f"turn1 ({table} line 8)"}
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


# --- Issue 18: Kaldi data folders and lhotse cuts ------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "w2v_embed", *args], capture_output=True, text=True)


def test_a_kaldi_folder_with_10_ms_rounded_ends_loses_nothing(onnx_model, tmp_path):
    """Kaldi's lists round times to 10 ms: ends up to 5 ms past the audio are cut there (extract-segments'
    --max-overshoot rule), counted, and equal the audio cut out to its end; past the allowance a row fails
    with times that show the difference."""
    rng = np.random.default_rng(5)
    lengths = [5.657, 3.2013, 4.0046]  # seconds; each list end rounds up past the audio by < 5 ms
    scp, segs, expected = [], [], {}
    for r, seconds in enumerate(lengths):
        x = rng.uniform(-0.5, 0.5, round(seconds * 16_000)).astype(np.float32)
        sf.write(tmp_path / f"rec{r}.wav", x, 16_000, subtype="FLOAT")
        scp.append(f"rec{r} {tmp_path / f'rec{r}.wav'}\n")
        end = np.ceil(seconds * 100) / 100
        for k, start in enumerate((0.0, 1.0, end - 1.5)):
            segs.append(f"rec{r}-{k} rec{r} {start:.2f} {end if k != 1 else 2.0:.2f}\n")
            expected[f"rec{r}-{k}"] = x[round(start * 16_000) : round((end if k != 1 else 2.0) * 16_000)]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "wav.scp").write_text("".join(scp))
    (tmp_path / "data" / "segments").write_text("".join(segs))
    out = tmp_path / "out.h5"
    model = str(onnx_model("group"))
    proc = _cli("extract", "--segments", str(tmp_path / "data"), "-o", str(out), "-m", model, "--json-summary")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["ok"], summary["failed"], summary["truncated"]) == (9, 0, 6)
    with h5py.File(out) as f:
        stored = dict(zip(f["paths"].asstr()[()], f["num_samples"][()]))
    assert stored == {name: len(x) for name, x in expected.items()}
    assert read_summary(out)["truncated"] == 6  # recorded per row (/segment_truncated): `info` shows it
    with w2v_embed.open(out) as o:
        assert o.segment("rec0-0")[2] == pytest.approx(5.66)  # the listed end, so a resume compares alike
    # The truncated segment is the audio to its end, as decoded alone.
    got = decode(tmp_path / "rec0.wav", segment=(0.0, 5.66))
    np.testing.assert_array_equal(got.samples, expected["rec0-0"])
    assert got.truncated == pytest.approx(0.003, abs=1 / 16_000)
    with pytest.raises(AudioError, match=r"ends at 5\.660 s, 0\.003 s past the audio's end at 5\.657 s"):
        decode(tmp_path / "rec0.wav", segment=(0.0, 5.66), max_overshoot=0.002)
    proc = _cli("extract", "--segments", str(tmp_path / "data"), "-o", str(out), "-m", model, "--overwrite")
    assert proc.returncode == 0 and "9 ok (6 truncated), 0 failed" in proc.stderr, proc.stderr
    proc = _cli("extract", "--segments", str(tmp_path / "data"), "-o", str(out), "-m", model, "--overwrite",
                "--max-overshoot", "0")
    assert proc.returncode == 1 and "6 failed" in proc.stderr, proc.stderr
    assert "ends at 5.660 s, 0.003 s past the audio's end at 5.657 s" in dict(w2v_embed.read_summary(out)["failed"])["rec0-0"]
    from w2v_embed.extract import ExtractOptions

    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(UsageError, match="--max-overshoot"):
            ExtractOptions(max_overshoot=bad)


def test_overshoot_through_ffmpeg(tmp_path):
    if audio.ffmpeg_executable() is None:
        pytest.skip("no ffmpeg")
    x = np.random.default_rng(6).uniform(-0.5, 0.5, round(3.3 * 22_050)).astype(np.float32)
    sf.write(tmp_path / "rec.wav", x, 22_050, subtype="FLOAT")
    cut, far, late = audio._segments_with_ffmpeg(tmp_path / "rec.wav", [(1.0, 3.6), (2.0, 4.0), (3.31, 3.5)], None,
                                                 16_000, "unused", max_overshoot=0.5)
    np.testing.assert_array_equal(cut.samples, decode(tmp_path / "rec.wav", segment=(1.0, 3.3)).samples)
    assert cut.truncated == pytest.approx(0.3, abs=1e-3)
    assert "ends at 4.000 s, 0.700 s past the audio's end at 3.300 s" in str(far)
    assert "starts at 3.310 s, at or past the audio's end at 3.300 s" in str(late)


def test_a_kaldi_folder_with_only_wav_scp_embeds_each_recording_whole(onnx_model, tmp_path):
    for r, seconds in enumerate((1.5, 2.25)):
        sf.write(tmp_path / f"r{r}.flac", np.random.default_rng(r).uniform(-0.5, 0.5, round(seconds * 22_050)), 22_050)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "wav.scp").write_text(f"spk1-a {tmp_path / 'r0.flac'}\nspk2-b\t{tmp_path / 'r1.flac'}\n"
                                               f"gone {tmp_path / 'gone.wav'}\n")
    out = tmp_path / "out.h5"
    proc = _cli("extract", "--segments", str(tmp_path / "data"), "-o", str(out), "-m", str(onnx_model("group")))
    assert proc.returncode == 1 and "gone" in proc.stderr and "no such file" in proc.stderr, proc.stderr
    whole = tmp_path / "whole.h5"
    proc = _cli("extract", str(tmp_path / "r0.flac"), str(tmp_path / "r1.flac"), "-o", str(whole), "-m", str(onnx_model("group")))
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        rows = {name: (source, start, end) for name, source, start, end in
                zip(f["paths"].asstr()[()], f["source_path"].asstr()[()], f["segment_start"][()], f["segment_end"][()])}
    length = {f: sf.info(tmp_path / f).frames / 22_050 for f in ("r0.flac", "r1.flac")}
    assert rows == {"spk1-a": (str(tmp_path / "r0.flac"), 0.0, length["r0.flac"]),
                    "spk2-b": (str(tmp_path / "r1.flac"), 0.0, length["r1.flac"])}
    names, got = w2v_embed.load(out)
    alone_names, alone = w2v_embed.load(whole)
    for name, file in (("spk1-a", "r0.flac"), ("spk2-b", "r1.flac")):
        np.testing.assert_array_equal(got[names.index(name)], alone[alone_names.index(str(tmp_path / file))])


def _lhotse_cuts(tmp_path: Path):
    """Cuts as lhotse itself writes them: mono and stereo recordings, windows, a MultiCut, a URL source."""
    lhotse = pytest.importorskip("lhotse")
    rng = np.random.default_rng(7)
    sf.write(tmp_path / "a.wav", rng.uniform(-0.5, 0.5, 16_000 * 3).astype(np.float32), 16_000, subtype="FLOAT")
    sf.write(tmp_path / "b.flac", rng.uniform(-0.5, 0.5, 44_100 * 2), 44_100)
    sf.write(tmp_path / "st.wav", rng.uniform(-0.5, 0.5, (16_000 * 2, 2)).astype(np.float32), 16_000, subtype="FLOAT")
    recordings = [lhotse.Recording.from_file(str(tmp_path / n)) for n in ("a.wav", "b.flac", "st.wav")]
    url = lhotse.Recording(id="web", sources=[lhotse.AudioSource(type="url", channels=[0], source="https://x/y.wav")],
                           sampling_rate=16_000, num_samples=16_000, duration=1.0)
    cuts = lhotse.CutSet.from_manifests(recordings=lhotse.RecordingSet.from_recordings([*recordings, url]))
    cuts = cuts.cut_into_windows(1.25).to_eager()
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    return cuts


def test_lhotse_cuts_are_read_as_segments_equal_to_lhotse_audio(tmp_path):
    cuts = _lhotse_cuts(tmp_path)
    files = read_segments(tmp_path / "cuts.jsonl.gz")
    assert [f.name for f in files] == [c.id for c in cuts]
    for file, cut in zip(files, cuts):
        if cut.recording.id in ("a", "b"):
            assert file.problem is None and file.segment == (cut.start, cut.start + cut.duration)
            assert str(file.path) == cut.recording.sources[0].source
            if cut.recording.id == "a":  # at 16 kHz no resampler stands between the two
                np.testing.assert_array_equal(decode(file.path, segment=file.segment).samples, cut.load_audio()[0])
        elif cut.recording.id == "st":
            assert "MultiCut" in file.problem
        else:
            assert "source is of type 'url'" in file.problem


def test_cli_lhotse_cuts(onnx_model, tmp_path):
    cuts = _lhotse_cuts(tmp_path)
    out = tmp_path / "out.h5"
    proc = _cli("extract", "--segments", str(tmp_path / "cuts.jsonl.gz"), "-o", str(out), "-m", str(onnx_model("group")))
    assert proc.returncode == 1, proc.stderr
    mono = [c for c in cuts if c.recording.id in ("a", "b")]
    assert sorted(w2v_embed.load(out)[0]) == sorted(c.id for c in mono)
    assert len(w2v_embed.read_summary(out)["failed"]) == len(cuts) - len(mono)


def _doc_blocks(language: str) -> list[str]:
    text = (Path(__file__).resolve().parents[1] / "docs" / "segments.md").read_text()
    return [block.split("```")[0] for block in text.split(f"```{language}\n")[1:]]


def test_the_examples_in_docs_segments_md(tmp_path, monkeypatch):
    (tsv,), (csv,), (recipe,) = _doc_blocks("tsv"), _doc_blocks("csv"), _doc_blocks("python")
    assert [(f.name, str(f.path), f.segment) for f in parse_table(tsv, "s.tsv")] == [
        ("a-1", "rec/a.wav", (0.5, 2.25)), ("rec/a b.wav:3-4.5", "rec/a b.wav", (3.0, 4.5))]
    assert [(f.name, str(f.path), f.segment) for f in parse_table(csv, "s.csv")] == [
        ("c-1", "rec/with,comma.wav", (0.0, 1.5)), ("trailing-space", "rec/a.wav ", (1.0, 2.0))]
    lhotse = pytest.importorskip("lhotse")
    monkeypatch.chdir(tmp_path)
    sf.write("a.wav", np.zeros(16_000 * 2, np.float32), 16_000)
    sf.write("b.flac", np.zeros(22_050, np.float32), 22_050)
    exec(recipe, {})
    rows = read_segments("cuts.jsonl.gz")
    cuts = lhotse.CutSet.from_file("cuts.jsonl.gz")
    assert [(f.name, str(f.path), f.segment, f.problem) for f in rows] == [
        (c.id, c.recording.sources[0].source, (c.start, c.end), None) for c in cuts]
    assert [f.segment for f in rows] == [(0.0, 1.25), (1.25, 2.0), (0.0, 1.0)]

"""Issue 9, end to end: what a hostile user throws at `w2v-embed extract` (inputs from bad_inputs.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
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


def test_a_damaged_model_is_refused_on_resume_and_stops_a_new_run_before_any_file(onnx_model, tmp_path):
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
    before = load(out)
    with pytest.raises(W2VEmbedError, match=r"model\.onnx: the model's output is not finite .* on 1 s of plain noise; "
                                             "the model file is damaged"):
        extract_to(out, [corpus], model, "overwrite")
    assert load(out)[0] == before[0] and not (tmp_path / "out.h5.parts").exists()  # nothing touched


def test_resume_with_another_channel_is_refused(onnx_model, tmp_path):
    stereo = write_audio(tmp_path / "st.wav", sine(1.0, 16_000, channels=2), 16_000)
    out = tmp_path / "out.h5"
    extract_to(out, [stereo], onnx_model("group"), channel=1)
    with pytest.raises(W2VEmbedError, match="cannot resume: .* channel 1, this run asks for mean"):
        extract_to(out, [stereo], onnx_model("group"), "resume")


def _can_mount_tmpfs() -> bool:
    probe = "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d; rmdir $d"
    try:
        return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", probe],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


FULL_DISK = """
set -u
mount -t tmpfs -o size={size}k tmpfs {disk}
{extract} > {tmp}/first.out 2> {tmp}/first.err; echo $? > {tmp}/first.rc
ls -A {disk} {disk}/out.h5.parts > {tmp}/listing 2>&1
mount -o remount,size=64m {disk}  # space freed
{extract} --resume > /dev/null 2> {tmp}/second.err; echo $? > {tmp}/second.rc
cp {disk}/out.h5 {tmp}/out.h5
"""


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare and mount (user namespaces) for a small tmpfs")
@pytest.mark.parametrize("size_kib, when", [(600, "segment"), (4500, "merge")])
def test_full_disk_is_one_line_then_resume_completes(onnx_model, tmp_path, size_kib, when):
    """A real full disk (a tmpfs in a user namespace), filling at a segment commit or in the final merge."""
    corpus = tmp_path / "corpus"
    for i in range(20):
        write_audio(corpus / f"{i:02d}.wav", sine(6.0, 16_000, freq=200 + 20 * i), 16_000)
    disk = tmp_path / "disk"
    disk.mkdir()
    extract = (f"{sys.executable} -m w2v_embed extract {corpus} -o {disk}/out.h5 -m {onnx_model('group')} "
               "--pool none --layers all --save-every 2")
    script = FULL_DISK.format(size=size_kib, disk=disk, tmp=tmp_path, extract=extract)
    subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "bash", "-c", script], check=True, timeout=600,
                   env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    first_err = (tmp_path / "first.err").read_text()
    assert (tmp_path / "first.rc").read_text().strip() == "1", first_err
    assert first_err.startswith("error: no space left on the device of ") and first_err.count("\n") == 1, first_err
    listing = (tmp_path / "listing").read_text()
    assert ".tmp" not in listing  # no temp file left on the full disk
    assert (listing.count("seg-") == 10) == (when == "merge"), listing  # where it filled up
    assert (tmp_path / "second.rc").read_text().strip() == "0", (tmp_path / "second.err").read_text()
    frames = load(tmp_path / "out.h5", layer=3)
    assert sorted(frames) == [f"{corpus}/{i:02d}.wav" for i in range(20)]


@pytest.mark.parametrize("mode", [[], ["--overwrite"], ["--resume"]])
def test_output_path_that_is_a_folder_is_a_usage_error(onnx_model, tmp_path, mode):
    from typer.testing import CliRunner

    from w2v_embed.cli import app

    wav = write_audio(tmp_path / "a.wav", sine(1.0, 16_000), 16_000)
    result = CliRunner().invoke(app, ["extract", str(wav), "-o", str(tmp_path), "-m", str(onnx_model("group")), *mode])
    assert result.exit_code == 2 and result.output.startswith(f"error: {tmp_path} is a folder; give a file name")
    assert result.output.count("\n") == 1, result.output


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare and mount (user namespaces) for a read-only tmpfs")
def test_read_only_file_system_is_one_line(onnx_model, tmp_path):
    wav = write_audio(tmp_path / "a.wav", sine(1.0, 16_000), 16_000)
    disk = tmp_path / "ro"
    disk.mkdir()
    script = (f"mount -t tmpfs -o ro,size=64k tmpfs {disk} && {sys.executable} -m w2v_embed extract {wav} "
              f"-o {disk}/sub/out.h5 -m {onnx_model('group')}")
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "bash", "-c", script],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    assert proc.returncode == 1
    assert proc.stderr == f"error: cannot write {disk}/sub/out.h5: Read-only file system\n"


STUCK_DECODER = """
import sys, threading
sys.path.insert(0, {src!r})
from w2v_embed.engine import prefetch

def decode(item):
    if item == 1:
        threading.Event().wait()  # a read that never returns (a FIFO, a hung network mount)
    return item

for item, future in prefetch(decode, range(4), workers=2, ahead=2):
    print(item, future.result(), flush=True)
    if item == 0:
        raise KeyboardInterrupt  # Ctrl-C while the other decoder is stuck
"""


def test_ctrl_c_ends_the_run_even_while_a_decoder_is_stuck(tmp_path):
    script = STUCK_DECODER.format(src=str(Path(__file__).parents[1] / "src"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.stdout == "0 0\n" and "KeyboardInterrupt" in proc.stderr


def test_named_pipes_and_unlistable_folders_fail_with_a_reason_and_the_run_goes_on(onnx_model, tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    write_audio(corpus / "a.wav", sine(1.0, 16_000), 16_000)
    bad_inputs.fifo(corpus / "pipe.wav")
    write_audio(corpus / "locked" / "b.wav", sine(1.0, 16_000), 16_000)
    given = bad_inputs.fifo(tmp_path / "given.wav")
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
                        if str(p).endswith("locked") else real_scandir(p))  # root reads any folder: simulate it
    summary = extract_to(tmp_path / "out.h5", [corpus, given], onnx_model("group"))
    assert summary.ok == 1
    assert dict(summary.failures) == {
        f"{corpus}/locked": f"cannot list folder {corpus}/locked: Permission denied",
        f"{corpus}/pipe.wav": f"cannot decode {corpus}/pipe.wav: not a regular file (a named pipe)",
        str(given): f"cannot decode {given}: not a regular file (a named pipe)",
    }


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGKILL, -9)])
def test_signal_during_overwrite_keeps_the_old_output_and_saves_finished_files(onnx_model, tmp_path, sig, code):
    old_corpus, corpus = tmp_path / "old", tmp_path / "new"
    write_audio(old_corpus / "x.wav", sine(1.0, 16_000), 16_000)
    for i in range(200):
        write_audio(corpus / f"{i:03d}.wav", sine(10.0, 16_000, freq=100 + 5 * i), 16_000)
    model, out = str(onnx_model("group")), tmp_path / "out.h5"
    assert cli("extract", str(old_corpus), "-o", str(out), "-m", model).returncode == 0
    before = load(out)
    args = ["extract", str(corpus), "-o", str(out), "-m", model, "--layers", "all", "--save-every", "1000",
            "--batch-size", "1", "--threads", "1"]
    # SIGINT as a terminal sends it, even where this run inherited it ignored (a shell's background job)
    victim = subprocess.Popen([sys.executable, "-m", "w2v_embed", *args, "--overwrite", "--progress-seconds", "0.2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in victim.stderr:  # stderr is a pipe: the periodic progress lines of a batch job
        if line.startswith("progress: ") and int(line.split()[1].split("/")[0]) >= 5:
            break  # some files are done, none committed yet (every 1000 files or 20 s)
    victim.send_signal(sig)
    stderr = victim.stderr.read()
    victim.wait(timeout=120)
    assert victim.returncode == code, stderr
    if sig != signal.SIGKILL:
        assert "finished files are saved; rerun with --resume to continue" in stderr
    paths, x = load(out)  # the old output is untouched
    assert paths == before[0] and np.array_equal(x, before[1])
    proc = cli(*args, "--resume", "--json-summary")
    assert proc.returncode == 0, proc.stderr
    assert (json.loads(proc.stdout)["skipped"] > 0) == (sig != signal.SIGKILL)  # what was done was kept
    assert sorted(load(out)[0]) == [f"{corpus}/{i:03d}.wav" for i in range(200)]


def test_a_truncated_model_is_reported_as_truncated_or_corrupt(onnx_model, tmp_path):
    from w2v_embed.runtime import OnnxModel

    model = bad_inputs.truncated(onnx_model("group"), tmp_path / "cut.onnx", keep_bytes=100_000)
    with pytest.raises(W2VEmbedError, match=r"cut\.onnx: truncated or corrupt ONNX file \(100000 bytes; .*Protobuf parsing"):
        OnnxModel(model, device="cpu")


@pytest.mark.parametrize("rate", [1, 100, 10_000_000])
def test_absurd_sample_rates_are_refused(tmp_path, rate):
    from w2v_embed.audio import AudioError, decode

    path = bad_inputs.wav_claiming_rate(tmp_path / "odd.wav", rate)
    with pytest.raises(AudioError, match=rf"odd\.wav: sample rate {rate} Hz in the header is not plausible for audio \(expected 1000 to 768000\)"):
        decode(path)


@pytest.mark.parametrize("fmt, subtype", [("wav", "PCM_16"), ("mp3", "MPEG_LAYER_III")])
def test_truncated_audio_fails_instead_of_being_embedded_shorter(tmp_path, fmt, subtype):
    from audio_utils import can_write, noise
    from w2v_embed.audio import AudioError, decode

    if not can_write(fmt.upper(), subtype):
        pytest.skip(f"this libsndfile cannot write {fmt}")
    whole = write_audio(tmp_path / f"whole.{fmt}", noise(5.0, 16_000), 16_000, subtype=subtype)
    assert abs(len(decode(whole).samples) - 80_000) < 2_000
    for keep in (1_000, whole.stat().st_size // 3):  # a download or copy cut short
        cut = bad_inputs.truncated(whole, tmp_path / f"cut.{fmt}", keep)
        with pytest.raises(AudioError, match=rf"cut\.{fmt}: truncated: the header promises 5\.0 s, the file holds \d\.\d+ s"):
            decode(cut)


@pytest.mark.slow
def test_extreme_float_audio_through_a_model_without_normalisation_fails_the_file(checkpoint_dir, tmp_path):
    from w2v_embed.export import ExportOptions, export_model

    checkpoint = tmp_path / "raw-input-checkpoint"
    shutil.copytree(checkpoint_dir("stable"), checkpoint)
    config = checkpoint / "preprocessor_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "do_normalize": False}))
    model = export_model(str(checkpoint), ExportOptions(output=tmp_path / "raw.onnx", verify=False)).path
    loud = bad_inputs.extreme_float_wav(tmp_path / "loud.wav")  # finite samples up to 3.4e38
    fine = write_audio(tmp_path / "fine.wav", sine(1.0, 16_000), 16_000)
    summary = extract_to(tmp_path / "out.h5", [loud, fine], model)
    assert summary.ok == 1 and [name for name, _ in summary.failures] == [str(loud)]
    assert "the model's output is not finite" in summary.failures[0][1]


def test_names_that_look_like_markup_are_printed_as_they_are(onnx_model, tmp_path):
    from typer.testing import CliRunner

    from w2v_embed.cli import app

    missing = tmp_path / "a[/]b[red].wav"  # rich would take these for markup, or fail on the stray [/]
    folder = tmp_path / "[bold]out"
    folder.mkdir()
    runner, model = CliRunner(), str(onnx_model("group"))
    result = runner.invoke(app, ["extract", str(missing), "-o", str(tmp_path / "o.h5"), "-m", model])
    assert result.exit_code == 1 and f"failed: {missing}: cannot decode {missing}: no such file" in result.output
    result = runner.invoke(app, ["extract", str(missing), "-o", str(folder), "-m", model])
    assert result.exit_code == 2 and result.output.startswith(f"error: {folder} is a folder"), result.output


def test_info_on_a_damaged_model_says_it_is_damaged(onnx_model, tmp_path):
    from typer.testing import CliRunner

    from w2v_embed.cli import app

    runner = CliRunner()
    good = runner.invoke(app, ["info", str(onnx_model("group"))])
    assert good.exit_code == 0 and "finite features on 1 s of noise" in good.output
    model = bad_inputs.corrupted_copy(onnx_model("group"), tmp_path / "model.onnx")
    result = runner.invoke(app, ["info", str(model)])
    assert result.exit_code == 1 and "the model file is damaged" in result.output


# --- Issue 17: segment lists --------------------------------------------------------------------


def _h5_strings(out: Path, key: str) -> list[bytes]:
    with h5py.File(out) as f:
        return list(f[key][()])


def test_segment_list_paths_are_taken_byte_for_byte(onnx_model, tmp_path):
    """`"x".wav`, ` x.wav` and `x.wav ` are files of their own, not x.wav (each is written at its own rate)."""
    from w2v_embed.segments import parse_table

    names = ["x.wav", '"x".wav', " x.wav", "x.wav "]
    for name, rate in zip(names, (8_000, 16_000, 22_050, 44_100)):
        os.rename(write_audio(tmp_path / f"{rate}.wav", sine(1.0, rate), rate), tmp_path / name)
    tsv = "path\tstart\tend\tid\n" + "".join(f"{tmp_path / n}\t0\t0.5\tr{i}\n" for i, n in enumerate(names))
    assert [str(f.path) for f in parse_table(tsv)] == [str(tmp_path / n) for n in names]
    # CSV: standard quoting, no stripping; `"x".wav` is not valid CSV quoting and fails its row alone.
    csv = f'id,start,end,path\nq,0,0.5,"{tmp_path}/ x.wav"\nu,0,0.5,{tmp_path}/x.wav \nbad,0,0.5,"x".wav\n'
    rows = parse_table(csv, "s.csv")
    assert [str(f.path) for f in rows[:2]] == [f"{tmp_path}/ x.wav", f"{tmp_path}/x.wav "]
    assert rows[2].problem.startswith("s.csv line 4: not a CSV row")
    listing = tmp_path / "list.tsv"
    listing.write_text(tsv)
    out = tmp_path / "out.h5"
    proc = cli("extract", "--segments", str(listing), "-o", str(out), "-m", str(onnx_model("group")))
    assert proc.returncode == 0, proc.stderr
    paths, source = _h5_strings(out, "paths"), _h5_strings(out, "source_path")
    with h5py.File(out) as f:
        rates = dict(zip(paths, f["source_sample_rate"][()]))
    assert {p.decode(): s.decode() for p, s in zip(paths, source)} == {f"r{i}": str(tmp_path / n) for i, n in enumerate(names)}
    assert [rates[f"r{i}".encode()] for i in range(4)] == [8_000, 16_000, 22_050, 44_100]


def _kaldi_dir(folder: Path, scp: bytes, segments: bytes | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wav.scp").write_bytes(scp)
    if segments is not None:
        (folder / "segments").write_bytes(segments)
    return folder


def test_absurd_times_fail_their_row_with_its_line_and_the_run_goes_on(onnx_model, tmp_path):
    """1e308 made an OverflowError that killed the run (and every --resume, and --shard)."""
    from w2v_embed.segments import parse_table, read_segments

    wav = write_audio(tmp_path / "a.wav", sine(2.0, 16_000), 16_000)
    bad = [("0", "1e308"), ("0", "inf"), ("nan", "1"), ("1e308", "1e309"), ("0", "1_0"), ("0", "１")]
    table = "path\tstart\tend\n" + "".join(f"{wav}\t{a}\t{b}\n" for a, b in bad) + f"{wav}\t0\t1\n"
    rows = parse_table(table, "s.tsv")
    assert [f.problem is None for f in rows] == [False] * len(bad) + [True]
    assert all(f.problem.startswith(f"s.tsv line {n}:") for n, f in enumerate(rows[:-1], start=2))
    assert "start and end must be seconds" in rows[4].problem  # 1_0 is not 10 s; a full-width digit is no digit
    kaldi = _kaldi_dir(tmp_path / "data", f"rec {wav}\n".encode(), b"u1 rec 0 1e308\nu2 rec 0 1\n")
    assert [f.problem and f.problem.split(":")[0] for f in read_segments(kaldi)] == [f"{kaldi / 'segments'} line 1", None]
    listing = tmp_path / "s.csv"
    listing.write_text(table.replace("\t", ","))
    out = tmp_path / "out.h5"
    model = str(onnx_model("group"))
    for extra in ([], ["--resume"], ["--shard", "0/1", "--overwrite"]):
        proc = cli("extract", "--segments", str(listing), "-o", str(out), "-m", model, *extra)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert load(out)[0] == [f"{wav}:0-1"]


def test_latin1_kaldi_folders_keep_ids_and_paths_byte_for_byte(onnx_model, tmp_path):
    wav = bad_inputs.latin1_wav(tmp_path / "audio", seconds=2.0)
    kaldi = _kaldi_dir(tmp_path / "data", b"rec\xe9 " + os.fsencode(wav) + b"\n", b"utt\xe9 rec\xe9 0.5 1.5\n")
    out = tmp_path / "out.h5"
    proc = cli("extract", "--segments", str(kaldi), "-o", str(out), "-m", str(onnx_model("group")))
    assert proc.returncode == 0, proc.stderr
    assert _h5_strings(out, "paths") == [b"utt\xe9"] and _h5_strings(out, "source_path") == [os.fsencode(wav)]


def test_a_kaldi_folder_without_wav_scp_names_it(onnx_model, tmp_path):
    kaldi = tmp_path / "data"
    kaldi.mkdir()
    (kaldi / "segments").write_text("u1 rec 0 1\n")
    proc = cli("extract", "--segments", str(kaldi), "-o", str(tmp_path / "out.h5"), "-m", str(onnx_model("group")))
    assert proc.returncode == 2 and str(kaldi / "wav.scp") in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name, text", [
    ("empty.tsv", ""), ("header.tsv", "path\tstart\tend\n"), ("comments.csv", "# made by hand\npath,start,end\n# none\n"),
    ("none.rttm", "SPKR-INFO f 1 <NA> <NA> <NA> unknown s1 <NA> <NA>\n"),
])  # fmt: skip
def test_a_list_without_segments_is_exit_1_and_one_line(onnx_model, tmp_path, name, text):
    """An empty output and exit 0 would pass for success in a pipeline."""
    listing = tmp_path / name
    listing.write_text(text)
    inputs = [str(write_audio(tmp_path / "f.wav", sine(1.0, 16_000), 16_000))] if name.endswith(".rttm") else []
    out = tmp_path / "out.h5"
    proc = cli("extract", *inputs, "--segments", str(listing), "-o", str(out), "-m", str(onnx_model("group")))
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert str(listing) in proc.stderr and not out.exists()


def test_comments_and_duplicate_header_columns(tmp_path):
    """`#` lines are comments in TSV/CSV (not rows that fail); Kaldi has none; a header naming a column twice is refused."""
    from w2v_embed.errors import UsageError
    from w2v_embed.segments import parse_table, read_segments

    rows = parse_table("# from the diarizer\npath\tstart\tend\n# turn 1\na.wav\t0\t1\n./#b.wav\t0\t1\n", "s.tsv")
    assert [(str(f.path), f.problem) for f in rows] == [("a.wav", None), ("#b.wav", None)]
    csv = parse_table('path,start,end\n# a comment, with commas\n"#c.wav",0,1\n', "s.csv")
    assert [(str(f.path), f.problem) for f in csv] == [("#c.wav", None)]
    kaldi = _kaldi_dir(tmp_path / "data", b"rec a.wav\n", b"# not a comment\nu1 rec 0 1\n")
    assert [f.problem and f.problem.split(":")[0] for f in read_segments(kaldi)] == [f"{kaldi / 'segments'} line 1", None]
    with pytest.raises(UsageError, match="names path more than once"):
        parse_table("path,start,end,Path\na.wav,0,1,b.wav\n", "d.csv")
    extra = parse_table("path,start,end\na,b.wav,0,1\n", "c.csv")  # an unquoted comma in a path
    assert "4 fields, the header has 3" in extra[0].problem

"""`w2v-embed convert`: Kaldi, fairseq and Parquet outputs, read back by those toolkits' own readers."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
from interop_utils import extract, make_corpus
from typer.testing import CliRunner

import w2v_embed
from w2v_embed.cli import app
from w2v_embed.errors import W2VEmbedError


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, onnx_model):
    root = tmp_path_factory.mktemp("convert")
    model = onnx_model("group")
    corpus = make_corpus(root)
    segments = root / "segments.tsv"
    segments.write_text(f"id\tpath\tstart\tend\nu2\t{corpus}/sub/c.wav\t0.5\t1.7\nu1\t{corpus}/b.wav\t0.0\t0.8\n")
    return {
        "frames": extract(model, root / "frames.h5", str(corpus), "--pool", "none", "--layers", "1,last"),
        "pooled": extract(model, root / "pooled.h5", str(corpus), "--layers", "1,last"),
        "windows": extract(model, root / "windows.h5", str(corpus), "--window", "0.5", "--hop", "0.25"),
        "segments": extract(model, root / "segments.h5", "--segments", str(segments), "--pool", "none"),
    }


def convert(*args: str) -> object:
    return CliRunner().invoke(app, ["convert", *map(str, args)])


def test_kaldi_ark_reads_back_bit_exact(outputs, tmp_path):
    kaldiio = pytest.importorskip("kaldiio")
    for kind in ("frames", "segments"):
        dest = tmp_path / kind
        result = convert(outputs[kind], "--to", "kaldi", "-o", dest)
        assert result.exit_code == 0, result.output
        out = w2v_embed.open(outputs[kind], layers=["last"])
        feats = kaldiio.load_scp(str(dest / "feats.scp"))
        assert list(feats.keys()) == out.paths  # stored (input) order
        for name, stored in out:
            assert feats[name].dtype == np.float32
            np.testing.assert_array_equal(feats[name], stored["last"])
        frames = [line.split() for line in (dest / "utt2num_frames").read_text().splitlines()]
        assert frames == [[name, str(len(stored["last"]))] for name, stored in out]
        assert (dest / "frame_shift").read_text() == "0.02\n"
        assert sorted(os.listdir(dest)) == ["feats.ark", "feats.scp", "frame_shift", "utt2num_frames"]  # no temp files left


def test_kaldi_pooled_rows_are_vectors_of_the_chosen_layer(outputs, tmp_path):
    kaldiio = pytest.importorskip("kaldiio")
    assert convert(outputs["pooled"], "--to", "kaldi", "--layer", "1", "-o", tmp_path).exit_code == 0
    paths, x = w2v_embed.load(outputs["pooled"], layer=1)
    with kaldiio.ReadHelper(f"scp:{tmp_path / 'feats.scp'}") as reader:
        got = list(reader)
    assert [k for k, _ in got] == paths
    np.testing.assert_array_equal(np.stack([v for _, v in got]), x)
    assert sorted(os.listdir(tmp_path)) == ["feats.ark", "feats.scp"]  # no frames: no utt2num_frames


def fairseq_feat_iterator(feat_dir, split, nshard, rank):
    """fairseq's examples/hubert/simple_kmeans/dump_km_label.py get_feat_iterator, as it reads a dump."""
    feat_path = f"{feat_dir}/{split}_{rank}_{nshard}.npy"
    leng_path = f"{feat_dir}/{split}_{rank}_{nshard}.len"
    with open(leng_path) as f:
        lengs = [int(line.rstrip()) for line in f]
        offsets = [0] + np.cumsum(lengs[:-1]).tolist()
    feat = np.load(feat_path, mmap_mode="r")
    assert feat.shape[0] == (offsets[-1] + lengs[-1])
    return [feat[offset : offset + leng] for offset, leng in zip(offsets, lengs)]


def fairseq_manifest(tsv):
    """fairseq's feature_utils.get_path_iterator + the sizes hubert_dataset.load_audio reads."""
    with open(tsv) as f:
        root = f.readline().rstrip()
        lines = [line.rstrip().split("\t") for line in f]
    return [(f"{root}/{rel}", int(size)) for rel, size in lines]


def test_fairseq_dump_reads_in_manifest_order(outputs, tmp_path):
    result = convert(outputs["frames"], "--to", "fairseq", "--layer", "1", "--split", "dev", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path)) == ["dev.tsv", "dev_0_1.len", "dev_0_1.npy"]
    out = w2v_embed.open(outputs["frames"], layers=[1])
    manifest = fairseq_manifest(tmp_path / "dev.tsv")
    feats = fairseq_feat_iterator(tmp_path, "dev", 1, 0)
    assert [os.path.normpath(p) for p, _ in manifest] == out.paths
    for (path, size), frames in zip(manifest, feats, strict=True):
        assert frames.dtype == np.float32
        np.testing.assert_array_equal(frames, out[os.path.normpath(path)][1])
        assert size == sf.info(path).frames  # 16 kHz sources: the audio's own sample count, as fairseq's manifests


def test_fairseq_root_and_shard_names(outputs, tmp_path):
    result = convert(outputs["frames"], "--to", "fairseq", "--rank", "1", "--nshard", "3", "--root", "/nowhere", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "train_1_3.npy").exists() and (tmp_path / "train_1_3.len").exists()
    assert (tmp_path / "train.tsv").read_text().splitlines()[0] == "/nowhere"


def test_parquet_pooled_and_windowed(outputs, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    assert convert(outputs["pooled"], "--to", "parquet", "-o", tmp_path / "p.parquet").exit_code == 0
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.column_names == ["path", "num_samples", "seconds", "layer_1", "last"]
    for layer, column in ((1, "layer_1"), ("last", "last")):
        paths, x = w2v_embed.load(outputs["pooled"], layer=layer)
        assert table.column("path").to_pylist() == paths
        np.testing.assert_array_equal(np.stack(table.column(column).to_numpy(zero_copy_only=False)), x)

    assert convert(outputs["windows"], "--to", "parquet", "-o", tmp_path / "w.parquet").exit_code == 0
    table = pq.read_table(tmp_path / "w.parquet").to_pydict()
    out = w2v_embed.open(outputs["windows"])
    row = 0
    for name, feats in out:
        times = out.timestamps(name)
        for w in range(len(times)):
            assert table["path"][row] == name and table["window"][row] == w
            assert (table["start"][row], table["end"][row]) == tuple(times[w])
            np.testing.assert_array_equal(np.asarray(table["last"][row], np.float32), feats["last"][w])
            row += 1
    assert row == len(table["path"])


def test_parquet_by_duckdb(outputs, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    assert convert(outputs["pooled"], "--to", "parquet", "-o", tmp_path / "p.parquet").exit_code == 0
    rows = duckdb.sql(f"SELECT path, len(last) FROM '{tmp_path / 'p.parquet'}'").fetchall()
    assert rows == [(p, 32) for p in w2v_embed.load(outputs["pooled"])[0]]


@pytest.mark.parametrize(
    ("kind", "to", "message"),
    [("frames", "parquet", "pooled or windowed"), ("pooled", "fairseq", "holds frames"), ("frames", "numpy", "expected one of")],
)
def test_refused_combinations_are_usage_errors(outputs, tmp_path, kind, to, message):
    result = convert(outputs[kind], "--to", to, "-o", tmp_path / "x")
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "x").exists() or not os.listdir(tmp_path / "x")


@pytest.mark.parametrize("to", ["kaldi", "fairseq"])
def test_a_failed_conversion_leaves_no_files(outputs, tmp_path, monkeypatch, to):
    from w2v_embed.sinks.base import StagedSink
    from w2v_embed.sinks.convert import ConvertOptions
    from w2v_embed.sinks.convert import convert as convert_output

    add = StagedSink.add

    def fail_on_third(self, row):
        if row.index == 2:
            raise W2VEmbedError("disk trouble")
        add(self, row)

    monkeypatch.setattr(StagedSink, "add", fail_on_third)
    with pytest.raises(W2VEmbedError, match="disk trouble"):
        convert_output(outputs["frames"], tmp_path, ConvertOptions(to))
    assert os.listdir(tmp_path) == []


def test_rows_out_of_input_order_are_refused(tmp_path):
    from w2v_embed.sinks.fairseq import FairseqSink
    from w2v_embed.store.sink import Row

    sink = FairseqSink(tmp_path, "last")
    sink.add(Row(3, "a.wav", 16000, 16000, {"last": np.zeros((49, 4), np.float32)}))
    with pytest.raises(W2VEmbedError, match="row 1 .* after row 3"):
        sink.add(Row(1, "b.wav", 16000, 16000, {"last": np.zeros((49, 4), np.float32)}))
    sink.abort()
    assert os.listdir(tmp_path) == []


def test_missing_extra_is_one_line_naming_it(outputs, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "kaldiio", None)
    result = convert(outputs["frames"], "--to", "kaldi", "-o", tmp_path)
    assert result.exit_code == 1 and "'interop' extra" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("to", "pool", "dest"), [("kaldi", "none", "kd"), ("fairseq", "none", "fs"), ("parquet", "mean", "x.parquet")])
def test_a_name_that_is_not_utf8_is_one_error_and_leaves_nothing(onnx_model, tmp_path, to, pool, dest):
    """extract keeps such names byte for byte; these formats hold names as UTF-8 text, so the
    conversion stops with one line naming the row instead of a traceback or a renamed row."""
    pytest.importorskip({"kaldi": "kaldiio", "fairseq": "numpy", "parquet": "pyarrow"}[to])
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    name = os.fsdecode(b"caf\xe9.wav")
    for stem in ("a.wav", name):
        sf.write(os.fsencode(corpus / stem), np.random.default_rng(0).uniform(-0.3, 0.3, 16000).astype(np.float32), 16000)
    out = extract(onnx_model("group"), tmp_path / "o.h5", str(corpus), "--pool", pool)
    result = convert(out, "--to", to, "-o", tmp_path / "conv" / dest)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "caf\\xe9.wav" in lines[0] and "UTF-8" in lines[0]
    assert not (tmp_path / "conv").exists()  # nor the folders made for it


def test_a_segment_source_that_is_not_utf8_is_refused_by_name(tmp_path):
    pytest.importorskip("pyarrow")
    from w2v_embed.sinks.parquet import ParquetSink
    from w2v_embed.store.sink import Row

    sink = ParquetSink(tmp_path / "new" / "s.parquet", ["last"])
    source = os.fsdecode(b"rec/caf\xe9.wav")
    with pytest.raises(W2VEmbedError, match=r"caf\udce9.wav: not UTF-8 .* Parquet"):
        sink.add(Row(0, "utt-1", 16000, 16000, {"last": np.zeros(4, np.float32)}, (source, 0.0, 1.0)))
    sink.abort()
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(("kind", "to", "dest"), [("pooled", "parquet", "x.parquet"), ("frames", "kaldi", "kd"),
                                                  ("frames", "fairseq", "fs")])
def test_a_conversion_replaces_what_is_there_only_with_overwrite(outputs, tmp_path, kind, to, dest):
    pytest.importorskip({"kaldi": "kaldiio", "fairseq": "numpy", "parquet": "pyarrow"}[to])
    target = tmp_path / dest
    first = {"parquet": target, "kaldi": target / "feats.scp", "fairseq": target / "train.tsv"}[to]
    first.parent.mkdir(parents=True, exist_ok=True)
    first.write_text("precious\n")
    result = convert(outputs[kind], "--to", to, "-o", target)
    assert result.exit_code == 2 and f"{first} exists; pass --overwrite" in result.output, result.output
    assert first.read_text() == "precious\n"
    os.remove(first)
    os.mkfifo(first)
    result = convert(outputs[kind], "--to", to, "-o", target, "--overwrite")
    assert result.exit_code == 2 and "is a named pipe, not a file" in result.output, result.output
    os.remove(first)
    first.write_text("precious\n")
    assert convert(outputs[kind], "--to", to, "-o", target, "--overwrite").exit_code == 0
    assert first.read_bytes() != b"precious\n"


@pytest.mark.parametrize("to", ["kaldi", "fairseq"])
def test_a_folder_format_onto_a_file_is_one_error(outputs, tmp_path, to):
    plain = tmp_path / "plainfile"
    plain.write_text("x")
    result = convert(outputs["frames"], "--to", to, "-o", plain)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.startswith(f"error: {plain} is a file, not a folder"), result.output


@pytest.mark.parametrize("odd", ["a\tb.wav", "a\nb.wav"])
def test_a_fairseq_manifest_refuses_a_name_its_lines_cannot_hold(tmp_path, odd):
    """The .tsv is `relpath TAB num_samples` per line: a tab or newline in a name would shift every later
    line against the .npy rows instead of failing."""
    from w2v_embed.sinks.fairseq import FairseqSink
    from w2v_embed.store.sink import Row

    sink = FairseqSink(tmp_path / "fs", "last")
    with pytest.raises(W2VEmbedError, match="tab or line break"):
        sink.add(Row(0, odd, 16000, 16000, {"last": np.zeros((49, 4), np.float32)}))
    sink.abort()
    assert not (tmp_path / "fs").exists()


def test_temp_files_of_a_killed_conversion_are_removed_by_the_next(outputs, tmp_path):
    """kill -9 skips the cleanup: the next conversion into the folder removes the temp files of processes
    that are gone (kaldiio's .scp beside the ark too), and leaves a running one's alone."""
    pytest.importorskip("kaldiio")
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    dest = tmp_path / "kd"
    dest.mkdir()
    stale = [dest / f".feats.ark.partial-{gone}", dest / f".feats.ark.partial-{gone}.scp", dest / f".utt2num_frames.partial-{gone}"]
    running = dest / f".feats.scp.partial-{os.getppid()}"  # alive, and not this process (whose temp it would be)
    for path in (*stale, running):
        path.write_bytes(b"half")
    assert convert(outputs["frames"], "--to", "kaldi", "-o", dest).exit_code == 0
    assert not any(p.exists() for p in stale) and running.exists()

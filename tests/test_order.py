"""Rows in input order: folder walks, --files-from, segment lists, -o -, after --resume and shards + merge.

Batching sorts chunks by length, so files finish out of order; every output still lists them as given.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from audio_utils import noise, write_audio
from w2v_embed.discover import discover
from w2v_embed.embedder import Embedder, EmbedOptions
from w2v_embed.extract import ExtractOptions, extract
from w2v_embed.segments import read_segments
from w2v_embed.store import load, merge, open as open_output

# Lengths that make batches finish out of order: long and short files alternate.
SECONDS = [3.1, 0.4, 2.2, 0.3, 1.7, 0.9, 2.8, 0.5, 1.2, 0.35, 2.5, 0.6]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "w2v_embed", *args], input=stdin, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("order") / "corpus"
    for i, seconds in enumerate(SECONDS):
        write_audio(root / f"spk{i % 2}" / f"u{i:02d}.wav", noise(seconds, 16_000, seed=i), 16_000)
    return root


def listing(corpus: Path) -> list[str]:
    """Not sorted, not walked: an order only the list gives."""
    names = sorted(str(p) for p in corpus.rglob("*.wav"))
    return names[5:] + names[:5][::-1]


def run(files, out, model, **options):
    embedder = Embedder(model, options=EmbedOptions(layers="1,last", batch_size=3, max_batch_seconds=4.0))
    return extract(files, out, embedder, ExtractOptions(**options))


def completion_order(model, files) -> list[str]:
    embedder = Embedder(model, options=EmbedOptions(layers="1,last", batch_size=3, max_batch_seconds=4.0))
    from w2v_embed.audio import decode

    signals = ((f.name, decode(f.path, target_rate=16_000).samples) for f in files)
    return [name for name, _ in embedder.embed_stream(signals)]


def test_the_embedder_finishes_files_out_of_order(onnx_model, corpus):
    """The premise of this file: without ordering, rows would follow completion."""
    files = discover(listing(corpus))
    assert completion_order(onnx_model("group"), files) != [f.name for f in files]


def test_files_from_order_folder_order_and_reader(onnx_model, corpus, tmp_path):
    model = onnx_model("group")
    names = listing(corpus)
    summary = run(discover(names), tmp_path / "list.h5", model)
    assert summary.ok == len(names)
    paths, x = load(tmp_path / "list.h5", layer=1)
    assert paths == names
    walked = discover([str(corpus)])
    run(walked, tmp_path / "walk.h5", model)
    assert load(tmp_path / "walk.h5", layer=1)[0] == [f.name for f in walked] == sorted(names)
    with open_output(tmp_path / "list.h5") as out:
        assert [name for name, _ in out] == names
        assert names[3] in out and "nope.wav" not in out and out.index(names[3]) == 3
        np.testing.assert_array_equal(out[names[3]][1], x[3])
        assert out.num_samples.tolist() == [round(s * 16_000) for s in (SECONDS[int(Path(n).stem[1:])] for n in names)]
        np.testing.assert_allclose(out.seconds, out.num_samples / 16_000)
        assert out.segment(0) is None
        with pytest.raises(TypeError, match="by number or name"):
            out[1.7]
        with pytest.raises(TypeError):
            out[True]


def test_resume_and_jsonl_keep_the_listing_order(onnx_model, corpus, tmp_path):
    model = onnx_model("group")
    names = listing(corpus)
    out = tmp_path / "r.h5"
    run(discover(names[::2]), out, model)  # a first run over every other file
    summary = run(discover(names), out, model, mode="resume")
    assert summary.skipped == len(names[::2]) and summary.ok == len(names[1::2])
    assert load(out, layer="last")[0] == names
    proc = cli("extract", "--files-from", "-", "-o", "-", "-m", str(model), "--layers", "1", "--batch-size", "3",
               "-q", stdin="\n".join(names + [str(corpus / "missing.wav")]))
    assert proc.returncode == 1, proc.stderr
    assert [json.loads(line)["path"] for line in proc.stdout.splitlines()] == names


def test_shards_merge_back_into_the_listing_order(onnx_model, corpus, tmp_path):
    model = str(onnx_model("group"))
    names = listing(corpus)
    (tmp_path / "list.txt").write_text("\n".join(names) + "\n")
    for i in range(3):
        proc = cli("extract", "--files-from", str(tmp_path / "list.txt"), "-o", str(tmp_path / f"p{i}.h5"), "-m", model,
                   "--layers", "1", "--shard", f"{i}/3", "-q")
        assert proc.returncode == 0, proc.stderr
        with h5py.File(tmp_path / f"p{i}.h5") as f:
            index = f["input_index"][()]
            assert [names[k] for k in index] == [p.decode() for p in f["paths"][()]]  # global positions
    summary = merge(tmp_path / "all.h5", [tmp_path / f"p{i}.h5" for i in (2, 0, 1)])
    assert summary.files == len(names)
    assert load(tmp_path / "all.h5")[0] == names
    with h5py.File(tmp_path / "all.h5") as f:
        assert f["input_index"][()].tolist() == list(range(len(names)))


def test_segment_lists_keep_their_order(onnx_model, corpus, tmp_path):
    a, b, c = (str(corpus / f"spk0/u{i:02d}.wav") for i in (0, 6, 10))  # 3.1, 2.8 and 2.5 s
    rows = [(a, 1.0, 2.5), (b, 0.0, 0.4), (a, 0.1, 0.6), (c, 2.0, 2.4), (b, 1.5, 2.1), (a, 2.6, 3.0)]  # times not sorted
    table = tmp_path / "segs.tsv"
    table.write_text("path\tstart\tend\n" + "".join(f"{p}\t{a}\t{b}\n" for p, a, b in rows))
    out = tmp_path / "segs.h5"
    proc = cli("extract", "--segments", str(table), "-o", str(out), "-m", str(onnx_model("group")), "--batch-size", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    with open_output(out) as o:
        assert [o.segment(i) for i in range(len(o))] == rows
        assert o.paths == [f.name for f in read_segments(table)] and len(set(o.paths)) == len(rows)
        np.testing.assert_allclose(o.seconds, [b - a for _, a, b in rows], atol=1 / 16_000)

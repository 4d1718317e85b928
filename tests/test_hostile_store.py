"""Round-2 hostile items on the store side (issue 17): replaced outputs, damaged shapes, the finishing
rename seen by a reader, and a resume whose segment list changed."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import h5py
import pytest

from test_order import cli, corpus, listing, run  # noqa: F401 (corpus: the fixture)
from w2v_embed.discover import discover
from w2v_embed.errors import W2VEmbedError
from w2v_embed.store import load, merge, open as open_output


def test_an_output_replaced_after_open_is_refused_also_in_pickled_copies(onnx_model, corpus, tmp_path):
    model = onnx_model("group")
    names = listing(corpus)
    out = tmp_path / "x.h5"
    run(discover(names), out, model)
    reader = open_output(out)
    copy = pickle.dumps(reader)
    assert len(copy) < 1000  # the path and the file's identity, not its names
    clone = pickle.loads(copy)
    assert clone.paths == names and clone[2][1].shape == reader[2][1].shape
    clone.close()
    reader.close()
    run(discover(names[1:]), out, model, mode="overwrite")  # another run replaces the file: every row shifts
    with pytest.raises(W2VEmbedError, match="was replaced since it was opened"):
        reader[0]
    with pytest.raises(W2VEmbedError, match="was replaced since it was opened"):
        pickle.loads(copy)


def test_merge_and_readers_refuse_datasets_with_missing_rows(onnx_model, corpus, tmp_path):
    model = onnx_model("group")
    names = listing(corpus)
    out = tmp_path / "x.h5"
    run(discover(names[:6]), out, model)
    with h5py.File(out, "a") as f:  # a damaged shard: the layer lost rows that /paths still lists
        data = f["layer_1"][:2]
        del f["layer_1"]
        f["layer_1"] = data
    for read in (lambda: load(out, layer=1), lambda: open_output(out), lambda: merge(tmp_path / "m.h5", [out])):
        with pytest.raises(W2VEmbedError, match=r"/layer_1 has shape \(2, 32\), expected \(6, 32\)"):
            read()
    assert not (tmp_path / "m.h5").exists()


def test_a_reader_never_sees_a_finished_output_as_missing(tmp_path, monkeypatch):
    """The run renames OUT.h5 into place, then removes its parts folder: looking for the parts first
    leaves no moment in which neither is seen."""
    from w2v_embed.store import layout

    out = tmp_path / "o.h5"
    parts = tmp_path / "o.h5.parts"
    parts.mkdir()
    real = Path.exists

    def exists(self):  # the run finishes right after the reader looked for OUT.h5
        seen = real(self)
        if self == out and not seen:
            out.write_bytes(b"")
            os.rmdir(parts)
        return seen

    monkeypatch.setattr(Path, "exists", exists)
    with pytest.raises(W2VEmbedError) as error:
        layout.open_finished(out)
    assert "no such file" not in str(error.value)


def test_resume_refuses_a_segment_list_whose_times_changed(onnx_model, corpus, tmp_path):
    """13 of 87 rows kept their old times silently before: now refused, naming one and the count."""
    source = str(corpus / "spk0/u00.wav")
    table = tmp_path / "segs.tsv"
    table.write_text(f"path\tstart\tend\tid\n{source}\t0\t1\ta\n{source}\t1\t2\tb\n")
    common = ["--segments", str(table), "-o", str(tmp_path / "s.h5"), "-m", str(onnx_model("group")), "-q"]
    assert cli("extract", *common).returncode == 0
    table.write_text(f"path\tstart\tend\tid\n{source}\t0\t1\ta\n{source}\t1.5\t2.5\tb\n{source}\t2\t3\tc\n")
    proc = cli("extract", *common, "--resume")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot resume: 1 segment(s) of the list changed since they were stored, e.g. b: stored as {source} 1-2 s, "
        f"now {source} 1.5-2.5 s; give them new ids, or pass --overwrite to start over"]
    table.write_text(f"path\tstart\tend\tid\n{source}\t0\t1\ta\n{source}\t1\t2\tb\n{source}\t2\t3\tc\n")
    assert cli("extract", *common, "--resume").returncode == 0  # unchanged rows, one new: resumes
    assert load(tmp_path / "s.h5")[0] == ["a", "b", "c"]

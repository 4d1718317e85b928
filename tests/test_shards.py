"""`extract --shard I/N` + `w2v-embed merge`: the split, the merge's refusals, and shards == one run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import _load_script
from test_store import add, info_for, name_of, write
from w2v_embed.discover import AudioFile
from w2v_embed.errors import UsageError, W2VEmbedError
from w2v_embed.shards import Shard, assign, select
from w2v_embed.store import FeatureWriter, load, merge, read_summary

make_corpus = _load_script("make_example_audio").make_corpus


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "w2v_embed", *args], capture_output=True, text=True, timeout=600)


def test_assign_balances_bytes_not_files():
    sizes = [100, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 50, 50]
    parts = assign(sizes, 3)
    loads = [sum(s for s, p in zip(sizes, parts) if p == k) for k in range(3)]
    assert sorted(loads) == [55, 55, 100] and parts[0] != parts[11] != parts[12]
    assert assign(sizes, 3) == parts  # deterministic
    assert assign(sizes, 1) == [0] * len(sizes) and assign([], 4) == []


def test_select_splits_the_sorted_unique_list(tmp_path):
    files = []
    for i in range(20):
        path = tmp_path / f"f{i:02d}.wav"
        path.write_bytes(b"x" * (i * 37 % 11 + 1))
        files.append(AudioFile(path, str(path)))
    given = list(reversed(files)) + files[:3]
    deals = [select(given, Shard(i, 3)) for i in range(3)]
    parts = [deal.files for deal in deals]
    names = [f.name for part in parts for f in part]
    assert sorted(names) == sorted(f.name for f in files) and len(set(names)) == 20  # every file once
    # each part in the given list's order, numbered by the first place a name has in it
    assert all([f.index for f in part] == sorted(f.index for f in part) for part in parts)
    assert all(given[f.index].name == f.name and f.index < 20 for part in parts for f in part)
    assert [f.name for f in select(files, Shard(0, 3)).files] == sorted(f.name for f in parts[0])  # the deal ignores order
    assert len({deal.fingerprint for deal in deals}) == 1 and select(files, Shard(0, 3)).fingerprint == deals[0].fingerprint


def test_the_fingerprint_changes_when_a_size_the_deal_used_changes(tmp_path):
    files = []
    for i in range(6):
        (tmp_path / f"f{i}.wav").write_bytes(b"x" * (10 + i))
        files.append(AudioFile(tmp_path / f"f{i}.wav", f"f{i}.wav"))
    before = select(files, Shard(0, 2)).fingerprint
    (tmp_path / "f3.wav").write_bytes(b"x" * 100)  # a copy still arriving
    assert select(files, Shard(0, 2)).fingerprint != before
    assert select(files, Shard(0, 3)).fingerprint != select(files, Shard(0, 2)).fingerprint


def test_segments_are_balanced_by_their_seconds_not_their_recording(tmp_path):
    (tmp_path / "rec.wav").write_bytes(b"\0" * 1000)
    rows = [AudioFile(tmp_path / "rec.wav", f"s{i}", segment=(0.0, seconds)) for i, seconds in enumerate([10, 1, 1, 8])]
    rejected = AudioFile(Path("."), "bad row", problem="line 9: backwards")
    parts = [{f.name for f in select([*rows, rejected], Shard(i, 2)).files} for i in range(2)]
    assert sorted((part - {"bad row"} for part in parts), key=len) == [{"s0"}, {"s1", "s2", "s3"}]  # 10 s vs 8 + 1 + 1
    assert sum("bad row" in part for part in parts) == 1  # weighs nothing, still recorded by one shard


@pytest.mark.parametrize("text", ["3/3", "-1/2", "1", "a/b", "0/0"])
def test_bad_shard_spec(text):
    with pytest.raises(UsageError, match="--shard"):
        Shard.parse(text)
    assert Shard.parse(" 2/ 5") == Shard(2, 5) and str(Shard(2, 5)) == "2/5"


def test_three_shards_and_merge_equal_one_run(onnx_model, tmp_path):
    corpus = tmp_path / "corpus"
    make_corpus(corpus)
    (corpus / "broken.wav").write_bytes(b"RIFF not really")
    model = str(onnx_model("group"))
    common = ["-m", model, "--layers", "1,last", "--batch-size", "1", "--quiet"]
    one = tmp_path / "one.h5"
    assert cli("extract", str(corpus), "-o", str(one), *common).returncode == 1  # broken.wav fails
    for i in range(3):
        proc = cli("extract", str(corpus), "-o", str(tmp_path / f"part.{i}.h5"), "--shard", f"{i}/3", *common)
        assert proc.returncode in (0, 1), proc.stderr
    shard_attrs = read_summary(tmp_path / "part.0.h5")
    assert shard_attrs["shard"] == "0/3" and shard_attrs["total_files"] == 7
    merged = tmp_path / "merged.h5"
    proc = cli("merge", str(merged), str(tmp_path / "part.*.h5"))
    single = read_summary(one)
    assert proc.returncode == 0, proc.stderr
    assert f"3 outputs: {single['files']} files, {len(single['failed'])} failed" in proc.stderr, proc.stderr
    for layer in (1, "last"):
        paths_one, x_one = load(one, layer=layer)
        paths_merged, x_merged = load(merged, layer=layer)
        assert sorted(paths_one) == sorted(paths_merged)
        order = [paths_merged.index(p) for p in paths_one]
        np.testing.assert_array_equal(x_merged[order], x_one)  # one file per batch: bit for bit
    assert sorted(read_summary(merged)["failed"]) == sorted(single["failed"]) and len(single["failed"]) >= 1
    assert read_summary(merged)["shard"] == ""
    assert cli("info", str(merged)).returncode == 0


def _shards(tmp_path: Path, count: int, skip: int | None = None, **info) -> list[Path]:
    out = []
    for i in range(count):
        if i == skip:
            continue
        items = [k for k in range(12) if k % count == i]
        run = info_for(shard=f"{i}/{count}", shard_files=len(items), total_files=12, **info)
        out.append(write(tmp_path / f"s{i}.h5", run, items))
    return out


def _refused(tmp_path: Path, inputs: list[Path], *needles: str) -> None:
    with pytest.raises(W2VEmbedError) as info:
        merge(tmp_path / "merged.h5", inputs)
    assert "\n" not in str(info.value) and all(n in str(info.value) for n in needles), str(info.value)
    assert not (tmp_path / "merged.h5").exists() and not list(tmp_path.glob("merged.h5.tmp-*"))


def test_merge_refuses_a_missing_or_repeated_shard(tmp_path):
    shards = _shards(tmp_path, 3, skip=1)
    _refused(tmp_path, shards, "shard 1/3 missing")
    _refused(tmp_path, [*shards, shards[0]], "given twice")


def test_merge_refuses_shards_dealt_from_different_listings(tmp_path):
    """Between two jobs of an array a file grew (a copy still arriving), the deal moved: refused, not
    '7 files, 0 failed' with a file in no shard."""
    shards = _shards(tmp_path, 2, shard_deal="a" * 64)
    run = info_for(shard="1/2", shard_files=6, total_files=12, shard_deal="b" * 64)
    shards[1] = write(tmp_path / "s1b.h5", run, [k for k in range(12) if k % 2])
    _refused(tmp_path, shards, "dealt from different listings", str(shards[1]))


def test_merge_refuses_shards_whose_files_do_not_add_up(tmp_path):
    a = write(tmp_path / "a.h5", info_for(shard="0/2", shard_files=3, total_files=8), [0, 1, 2])
    b = write(tmp_path / "b.h5", info_for(shard="1/2", shard_files=4, total_files=8), [3, 4, 5, 6])
    _refused(tmp_path, [a, b], "hold 7 files between them", "has 8")


def test_a_shard_run_records_its_deal_and_resume_compares_it(onnx_model, tmp_path):
    corpus = tmp_path / "corpus"
    make_corpus(corpus)
    common = ["-m", str(onnx_model("group")), "--layers", "1", "-q", "--shard", "0/2"]
    assert cli("extract", str(corpus), "-o", str(tmp_path / "p.h5"), *common).returncode in (0, 1)  # corrupt.wav fails
    deal = read_summary(tmp_path / "p.h5")["shard_deal"]
    assert len(deal) == 64
    biggest = max(corpus.rglob("*.wav"), key=lambda p: p.stat().st_size)
    with biggest.open("ab") as f:
        f.write(b"\0" * 4_000_000)  # grows: the deal may move files between parts
    proc = cli("extract", str(corpus), "-o", str(tmp_path / "p.h5"), "--resume", *common)
    assert proc.returncode == 1 and "cannot resume" in proc.stderr and "shard deal" in proc.stderr, proc.stderr


def test_merge_refuses_an_unfinished_or_incomplete_shard(tmp_path):
    shards = _shards(tmp_path, 2)
    shards[1].unlink()
    with FeatureWriter(shards[1], info_for(shard="1/2", shard_files=6, total_files=12)) as writer:
        add(writer, 1)
        writer.commit()
        writer.abort()  # killed: parts only
    _refused(tmp_path, shards, str(shards[1]), "not finished")
    write(shards[1], info_for(shard="1/2", shard_files=6, total_files=12), [1, 3, 5], mode="resume")
    _refused(tmp_path, shards, "holds 3 of its 6 files", "--resume")


def test_merge_refuses_different_settings_and_duplicate_files(tmp_path):
    a = write(tmp_path / "a.h5", info_for(), [0, 1])
    b = write(tmp_path / "b.h5", info_for(layers=(6,)), [2])
    _refused(tmp_path, [a, b], "layers")
    c = write(tmp_path / "c.h5", info_for(), [1, 2])
    _refused(tmp_path, [a, c], name_of(1), "both")


def test_merge_streams_everything_and_reruns_after_a_crash(tmp_path):
    shards = _shards(tmp_path, 3, pooling="none")
    (tmp_path / "merged.h5.tmp-99999").write_bytes(b"half a merge")  # a crashed earlier merge
    summary = merge(tmp_path / "merged.h5", shards)
    assert (summary.inputs, summary.files, summary.failed) == (3, 12, 0)
    assert not list(tmp_path.glob("merged.h5.tmp-*"))
    frames = load(tmp_path / "merged.h5", layer=12)
    single = write(tmp_path / "single.h5", info_for(pooling="none"), range(12))
    expected = load(single, layer=12)
    assert frames.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(frames[name], expected[name])
    with pytest.raises(W2VEmbedError, match="exists"):
        merge(tmp_path / "merged.h5", shards)
    merge(tmp_path / "merged.h5", shards, overwrite=True)
    with h5py.File(tmp_path / "merged.h5") as f:
        assert f["offsets"][-1] == sum(len(v) for v in expected.values())


def test_merge_onto_a_pipe_is_refused_even_with_overwrite(tmp_path):
    import os
    import stat

    shards = _shards(tmp_path, 2)
    fifo = tmp_path / "merged.h5"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match=r"merged\.h5 is a named pipe, not a file"):
        merge(fifo, shards, overwrite=True)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and not list(tmp_path.glob("merged.h5?*"))

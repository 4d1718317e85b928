"""FeatureWriter / load / read_summary: the layout, modes, locking, and crash-safe resume."""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from w2v_embed import __version__
from w2v_embed.errors import UsageError, W2VEmbedError
from w2v_embed.store import FeatureWriter, RunInfo, load, read_summary
from w2v_embed.store.sink import Row

HIDDEN = 8
SHA = "ab" * 32


def info_for(pooling: str = "mean", layers=(6, 12), dtype: str = "float32", **kw) -> RunInfo:
    recorded = dict(model_file_sha256="cd" * 32, precision="float32", channel="mean") | kw
    return RunInfo(model="tiny.onnx", model_sha256=SHA, layers=tuple(layers), pooling=pooling,
                   hidden_size=HIDDEN, dtype=dtype, **recorded)


def name_of(i: int) -> str:
    return f"corpus/spk{i % 3}/utt{i:03d}.wav"


def features(i: int, info: RunInfo) -> dict[int, np.ndarray]:
    """Deterministic per-file features (so a resumed run can be compared with an uninterrupted one)."""
    rng = np.random.default_rng(i)
    frames = 1 + (i * 7) % 13
    if info.frame_level:
        return {k: rng.standard_normal((frames, HIDDEN)).astype(np.float32) + k for k in info.layers}
    return {k: rng.standard_normal(info.width).astype(np.float32) + k for k in info.layers}


def num_samples(i: int) -> int:
    return 400 + 320 * (i * 7 % 13)


def add(writer: FeatureWriter, i: int) -> None:
    writer.add(Row(i, name_of(i), num_samples(i), 44_100 if i % 2 else 16_000, features(i, writer.info)))


def write(path: Path, info: RunInfo, items, mode: str = "new", **kw) -> Path:
    """items: ints (files added) or (int, reason) pairs (failures)."""
    with FeatureWriter(path, info, mode, **kw) as writer:
        for item in items:
            if isinstance(item, tuple):
                writer.add_failure(item[0], name_of(item[0]), item[1])
            elif name_of(item) not in writer.done:
                add(writer, item)
    return path


def dump(path: Path) -> dict:
    """Every dataset and attribute, for whole-file comparisons."""
    out: dict = {}
    with h5py.File(path, "r") as f:
        out["attrs"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items() if k != "run_id"}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = (obj.dtype.str if obj.dtype.kind != "O" else "str", obj[()].tolist())

        f.visititems(visit)
    return out


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


# -- layout ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["mean", "max", "meanstd"])
def test_pooled_layout(tmp_path, pooling):
    info = info_for(pooling, chunk_seconds=20.0, context_seconds=2.0)
    out = write(tmp_path / "feats.h5", info, [0, 1, 2, (3, "cannot decode x.wav: bad header"), 4])
    assert leftovers(out) == []  # no parts folder, lock or temp file left
    width = 2 * HIDDEN if pooling == "meanstd" else HIDDEN
    with h5py.File(out, "r") as f:
        a = f.attrs
        assert a["format"] == "w2v-embed/2" and a["model"] == "tiny.onnx" and a["model_sha256"] == SHA
        assert a["sample_rate"] == 16000 and a["frame_rate"] == 50.0 and a["frame_center_offset"] == 0.0125
        assert a["pooling"] == pooling and a["dtype"] == "float32" and a["w2v_embed_version"] == __version__
        assert list(a["layers"]) == ["6", "12"]
        assert a["chunk_seconds"] == 20.0 and a["context_seconds"] == 2.0
        assert list(f["paths"].asstr()[()]) == [name_of(i) for i in (0, 1, 2, 4)]
        assert f["num_samples"].dtype == np.int64 and list(f["num_samples"]) == [num_samples(i) for i in (0, 1, 2, 4)]
        assert list(f["source_sample_rate"]) == [16_000, 44_100, 16_000, 16_000]
        assert "offsets" not in f
        for k in (6, 12):
            ds = f[f"layer_{k}"]
            assert ds.shape == (4, width) and ds.dtype == np.float32
            assert ds.chunks is None and ds.id.get_offset() is not None  # contiguous: merge copies its bytes straight in
            np.testing.assert_array_equal(ds[()], np.stack([features(i, info)[k] for i in (0, 1, 2, 4)]))
        assert list(f["failed/paths"].asstr()[()]) == [name_of(3)]
        assert list(f["failed/errors"].asstr()[()]) == ["cannot decode x.wav: bad header"]


def test_frame_level_offsets_slice_each_file(tmp_path):
    info = info_for("none", layers=(1, 3))
    out = write(tmp_path / "frames.h5", info, range(6))
    with h5py.File(out, "r") as f:
        offsets = f["offsets"][()]
        assert offsets.dtype == np.int64 and offsets[0] == 0 and len(offsets) == 7
        for k in (1, 3):
            ds = f[f"layer_{k}"]
            assert ds.shape == (offsets[-1], HIDDEN) and ds.chunks is None
            for i in range(6):
                np.testing.assert_array_equal(ds[offsets[i] : offsets[i + 1]], features(i, info)[k])


def test_float16_storage(tmp_path):
    info = info_for("none", dtype="float16")
    out = write(tmp_path / "h.h5", info, range(3))
    with h5py.File(out, "r") as f:
        assert f["layer_12"].dtype == np.float16 and f.attrs["dtype"] == "float16"
    frames = load(out, layer=6)
    assert frames[name_of(2)].dtype == np.float16
    np.testing.assert_array_equal(frames[name_of(2)], features(2, info)[6].astype(np.float16))


def test_empty_run_still_writes_a_valid_file(tmp_path):
    out = write(tmp_path / "e.h5", info_for("none"), [])
    assert load(out) == {}
    summary = read_summary(out)
    assert summary["files"] == 0 and summary["frames"] == 0 and summary["failed"] == []


def test_bad_features_are_refused(tmp_path):
    with FeatureWriter(tmp_path / "x.h5", info_for("meanstd")) as writer:
        with pytest.raises(W2VEmbedError, match=r"expected \(16,\)"):
            writer.add(Row(0, "a", 1, 16_000, {6: np.zeros(HIDDEN), 12: np.zeros(HIDDEN)}))
        with pytest.raises(W2VEmbedError, match=r"lack layers \[12\]"):
            writer.add(Row(0, "a", 1, 16_000, {6: np.zeros(2 * HIDDEN)}))
        writer.add(Row(0, "a", 1, 16_000, {6: np.zeros(2 * HIDDEN), 12: np.zeros(2 * HIDDEN)}))
        with pytest.raises(W2VEmbedError, match="already stored"):
            writer.add(Row(0, "a", 1, 16_000, {6: np.zeros(2 * HIDDEN), 12: np.zeros(2 * HIDDEN)}))
    with FeatureWriter(tmp_path / "y.h5", info_for("none")) as writer:
        with pytest.raises(W2VEmbedError, match="same number of frames"):
            writer.add(Row(0, "a", 1, 16_000, {6: np.zeros((3, HIDDEN)), 12: np.zeros((4, HIDDEN))}))
    with pytest.raises(W2VEmbedError, match="pooling 'median'"):
        FeatureWriter(tmp_path / "z.h5", info_for("median"))


# -- modes and locking -------------------------------------------------------------------------------


def test_new_refuses_existing_output_and_overwrite_replaces_it(tmp_path):
    out = write(tmp_path / "x.h5", info_for(), [0, 1])
    with pytest.raises(W2VEmbedError, match=r"x\.h5 exists; pass --resume to continue it or --overwrite to replace it"):
        FeatureWriter(out, info_for())
    write(out, info_for(layers=(3,)), [5], mode="overwrite")
    paths, x = load(out)
    assert paths == [name_of(5)] and x.shape == (1, HIDDEN)
    assert leftovers(out) == []


def test_new_refuses_unfinished_parts(tmp_path):
    out = tmp_path / "x.h5"
    writer = FeatureWriter(out, info_for())
    add(writer, 0)
    writer.abort()
    with pytest.raises(W2VEmbedError, match=r"x\.h5\.parts exists; pass --resume"):
        FeatureWriter(out, info_for())
    with pytest.raises(W2VEmbedError, match="not finished yet; rerun the extraction with --resume"):
        load(out)


def test_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    out = tmp_path / "x.h5"
    first = FeatureWriter(out, info_for())
    add(first, 0)
    for mode in ("new", "resume", "overwrite"):
        with pytest.raises(W2VEmbedError, match=rf"is being written by another w2v-embed process \(pid {os.getpid()}\)"):
            FeatureWriter(out, info_for(), mode)
    first.close()
    write(out, info_for(), [1], mode="resume")  # free again once the first is done
    assert load(out)[0] == [name_of(0), name_of(1)]


def test_lock_is_released_when_the_holder_dies(tmp_path):
    out = tmp_path / "x.h5"
    script = (f"from pathlib import Path; from w2v_embed.store import FeatureWriter, RunInfo; import time, sys\n"
              f"w = FeatureWriter(Path({str(out)!r}), RunInfo('m', {SHA!r}, (6, 12), 'mean', {HIDDEN}))\n"
              "print('locked', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(W2VEmbedError, match=rf"another w2v-embed process \(pid {proc.pid}\)"):
            FeatureWriter(out, info_for(), "resume")
    finally:
        proc.kill()
        proc.wait()
    write(out, info_for(), [0], mode="resume")
    assert load(out)[0] == [name_of(0)]


def test_context_manager_aborts_on_exception(tmp_path):
    out = tmp_path / "x.h5"
    with pytest.raises(KeyboardInterrupt):
        with FeatureWriter(out, info_for(), commit_every_files=100) as writer:
            add(writer, 0)
            add(writer, 1)
            raise KeyboardInterrupt
    assert not out.exists() and not (tmp_path / "x.h5.lock").exists()
    assert sorted(p.name for p in (tmp_path / "x.h5.parts").iterdir()) == ["run.json", "seg-000001.h5"]
    with FeatureWriter(out, info_for(), "resume") as writer:
        assert writer.done == {name_of(0), name_of(1)}
    assert load(out)[0] == [name_of(0), name_of(1)]


def test_abort_with_nothing_computed_leaves_nothing_behind(tmp_path):
    out = tmp_path / "x.h5"
    FeatureWriter(out, info_for()).abort()
    assert list(tmp_path.iterdir()) == []
    write(out, info_for(), [0])  # a plain new run is not blocked
    writer = FeatureWriter(out, info_for(), "resume")
    writer.abort()
    assert leftovers(out) == [] and load(out)[0] == [name_of(0)]


def test_segments_are_committed_by_count_and_by_time(tmp_path):
    parts = tmp_path / "x.h5.parts"
    writer = FeatureWriter(tmp_path / "x.h5", info_for(), commit_every_files=3, commit_every_seconds=3600)
    for i in range(7):
        add(writer, i)
    assert len(list(parts.glob("seg-*.h5"))) == 2  # 6 files committed, 1 buffered
    writer.commit_every_seconds = 0.0
    writer.add_failure(0, "bad.wav", "boom")
    assert len(list(parts.glob("seg-*.h5"))) == 3
    writer.close()
    assert not parts.exists()


# -- resume ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["mean", "none"])
def test_abort_then_resume_equals_uninterrupted(tmp_path, pooling):
    info = info_for(pooling)
    items = [0, 1, (2, "too short"), 3, 4, 5, 6, (7, "cannot decode"), 8, 9, 10]
    full = write(tmp_path / "full.h5", info, items, commit_every_files=3)
    out = tmp_path / "out.h5"
    writer = FeatureWriter(out, info, commit_every_files=3)
    for item in items[:6]:
        writer.add_failure(item[0], name_of(item[0]), item[1]) if isinstance(item, tuple) else add(writer, item)
    writer.abort()  # 6 results: 3 committed + 3 buffered, all must survive
    assert not out.exists() and not (tmp_path / "out.h5.lock").exists()
    with FeatureWriter(out, info, "resume", commit_every_files=3) as writer:
        assert writer.done == {name_of(i) for i in (0, 1, 3, 4, 5)}  # the failure is retried
        for item in items:
            if isinstance(item, tuple):
                if item[0] != 2:
                    writer.add_failure(item[0], name_of(item[0]), item[1])
            elif name_of(item) not in writer.done:
                add(writer, item)
        writer.add_failure(2, name_of(2), "too short")  # retried, failed again: recorded once
    assert dump(out) == dump(full)
    assert leftovers(out) == ["full.h5"]


def test_retry_that_succeeds_removes_the_failure(tmp_path):
    out = write(tmp_path / "x.h5", info_for(), [0, (1, "busy"), (2, "bad")])
    write(out, info_for(), [1, (2, "still\nbad")], mode="resume")
    summary = read_summary(out)
    assert summary["files"] == 2 and summary["failed"] == [(name_of(2), "still bad")]  # latest reason, one line
    assert load(out)[0] == [name_of(0), name_of(1)]


def test_resume_on_finished_file_adds_new_files(tmp_path):
    info = info_for("none")
    full = write(tmp_path / "full.h5", info, range(8))
    out = write(tmp_path / "out.h5", info, range(5))
    with FeatureWriter(out, info, "resume") as writer:
        assert writer.done == {name_of(i) for i in range(5)}
        for i in range(8):
            if name_of(i) not in writer.done:
                add(writer, i)
    assert dump(out) == dump(full)


def test_resume_with_nothing_there_starts_fresh(tmp_path):
    out = write(tmp_path / "x.h5", info_for(), [0], mode="resume")
    assert load(out)[0] == [name_of(0)]


@pytest.mark.parametrize("finished", [False, True])
@pytest.mark.parametrize(
    "change, message",
    [
        (dict(layers=(12,)), r"was written with layers \[6, 12\], this run asks for \[12\]"),
        (dict(pooling="max"), "was written with pooling mean, this run asks for max"),
        (dict(model_sha256="cd" * 32), "was written with model sha256 ababababab"),
        (dict(dtype="float16"), "was written with dtype float32, this run asks for float16"),
        (dict(chunk_seconds=30.0), "was written with chunk seconds 0.0, this run asks for 30.0"),
        (dict(context_seconds=1.0), "context seconds"),
        (dict(model_file_sha256="ef" * 32), "was written with model file sha256 cdcdcdcdcdcd…, this run asks for efefefefefef…"),
        (dict(precision="int8"), "was written with model precision float32, this run asks for int8"),
        (dict(channel="1"), "was written with channel mean, this run asks for 1"),
    ],
)
def test_resume_with_different_settings_is_refused(tmp_path, finished, change, message):
    out = tmp_path / "x.h5"
    writer = FeatureWriter(out, info_for())
    add(writer, 0)
    writer.close() if finished else writer.abort()
    changed = dataclasses.replace(info_for(), **change)
    with pytest.raises(W2VEmbedError, match="cannot resume: .*" + message + ".*--overwrite"):
        FeatureWriter(out, changed, "resume")
    assert not (tmp_path / "x.h5.lock").exists()
    write(out, info_for(), [1], mode="resume")  # the stored work is untouched
    assert load(out)[0] == [name_of(0), name_of(1)]


def test_leftover_temp_segment_is_ignored_and_removed(tmp_path):
    out = tmp_path / "x.h5"
    writer = FeatureWriter(out, info_for(), commit_every_files=2)
    for i in range(4):
        add(writer, i)
    writer.abort()
    parts = tmp_path / "x.h5.parts"
    whole = (parts / "seg-000002.h5").read_bytes()
    (parts / "seg-000003.h5.tmp").write_bytes(whole[: len(whole) // 2])  # a commit killed half-way
    (tmp_path / "x.h5.tmp-999999").write_bytes(b"half a merge")
    with FeatureWriter(out, info_for(), "resume") as writer:
        assert writer.done == {name_of(i) for i in range(4)}
        assert not (parts / "seg-000003.h5.tmp").exists() and not (tmp_path / "x.h5.tmp-999999").exists()
        add(writer, 4)
    assert load(out)[0] == [name_of(i) for i in range(5)]
    assert leftovers(out) == []


def test_kill_after_merge_before_cleanup_stores_each_file_once(tmp_path):
    info = info_for("none")
    out = tmp_path / "x.h5"
    writer = FeatureWriter(out, info, commit_every_files=2)
    for i in range(5):
        add(writer, i)
    writer.commit()
    saved = tmp_path / "saved-parts"
    shutil.copytree(tmp_path / "x.h5.parts", saved)
    writer.close()
    shutil.copytree(saved, tmp_path / "x.h5.parts")  # as if killed between the rename and the rmtree
    with FeatureWriter(out, info, "resume") as writer:
        assert writer.done == {name_of(i) for i in range(5)}
        add(writer, 5)
    assert dump(out) == dump(write(tmp_path / "full.h5", info, range(6)))


VICTIM = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_store import add, info_for
from w2v_embed.store import FeatureWriter
writer = FeatureWriter(Path({out!r}), info_for("none", layers=(1, 3)), commit_every_files=3)
for i in range({n}):
    add(writer, i)
    time.sleep(0.002)
writer.close()
"""


def test_kill_9_mid_run_then_resume_equals_uninterrupted(tmp_path):
    n = 400
    info = info_for("none", layers=(1, 3))
    out, parts = tmp_path / "out.h5", tmp_path / "out.h5.parts"
    script = VICTIM.format(tests=str(Path(__file__).parent), out=str(out), n=n)
    victim = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while time.time() < deadline and len(list(parts.glob("seg-*.h5"))) < 5 and victim.poll() is None:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, "the victim finished before it could be killed"
    assert not out.exists() and len(list(parts.glob("seg-*.h5"))) >= 5
    with FeatureWriter(out, info, "resume") as writer:
        done = set(writer.done)
        assert 15 <= len(done) < n and done == {name_of(i) for i in range(len(done))}
        for i in range(n):
            if name_of(i) not in writer.done:
                add(writer, i)
    assert leftovers(out) == []
    frames = load(out, layer=3)
    assert list(frames) == [name_of(i) for i in range(n)]
    for i in (0, len(done) - 1, len(done), n - 1):
        np.testing.assert_array_equal(frames[name_of(i)], features(i, info)[3])
    assert dump(out) == dump(write(tmp_path / "full.h5", info, range(n), commit_every_files=3))


# -- reading -----------------------------------------------------------------------------------------


def test_load_pooled_and_frame_level(tmp_path):
    pooled_info, frames_info = info_for("meanstd"), info_for("none")
    pooled = write(tmp_path / "p.h5", pooled_info, range(4))
    paths, x = load(pooled)  # last layer by default
    assert paths == [name_of(i) for i in range(4)] and x.shape == (4, 2 * HIDDEN)
    np.testing.assert_array_equal(x, np.stack([features(i, pooled_info)[12] for i in range(4)]))
    paths, x6 = load(str(pooled), layer=6)
    np.testing.assert_array_equal(x6[1], features(1, pooled_info)[6])
    frames = load(write(tmp_path / "f.h5", frames_info, range(4)), layer=6)
    assert list(frames) == [name_of(i) for i in range(4)]
    for i in range(4):
        np.testing.assert_array_equal(frames[name_of(i)], features(i, frames_info)[6])


def test_load_missing_layer_lists_the_stored_ones(tmp_path):
    out = write(tmp_path / "p.h5", info_for(), [0])
    with pytest.raises(W2VEmbedError, match="layer 3 is not stored; stored layers: 6, 12"):
        load(out, layer=3)
    with pytest.raises(W2VEmbedError, match="no such file"):
        load(tmp_path / "nope.h5")
    (tmp_path / "junk.h5").write_text("junk")
    with pytest.raises(W2VEmbedError, match="not a readable HDF5 file.*w2v-embed extract"):
        load(tmp_path / "junk.h5")
    with pytest.raises(W2VEmbedError, match="not a readable HDF5 file.*--overwrite"):
        FeatureWriter(tmp_path / "junk.h5", info_for(), "resume")


def test_read_summary_is_plain_python(tmp_path):
    out = write(tmp_path / "p.h5", info_for(), [0, 1, (2, "bad header")])
    summary = read_summary(out)
    assert summary["files"] == 2 and summary["failed"] == [(name_of(2), "bad header")]
    assert summary["audio_seconds"] == pytest.approx((num_samples(0) + num_samples(1)) / 16_000)
    assert summary["layers"] == ["6", "12"] and summary["pooling"] == "mean" and summary["format"] == "w2v-embed/2"
    for value in summary.values():
        assert type(value) in (bool, int, float, str, list), (value, type(value))


# -- issue 9: nothing lost -----------------------------------------------------------------------------


def test_overwrite_keeps_the_old_output_until_the_new_one_replaces_it(tmp_path):
    out = write(tmp_path / "x.h5", info_for(), [0, 1])
    before = dump(out)
    writer = FeatureWriter(out, info_for(layers=(3,)), "overwrite", commit_every_files=1)
    add(writer, 5)
    writer.abort()  # Ctrl-C or kill -9 half-way through the new run
    assert dump(out) == before  # the old output is still whole and loadable
    with pytest.raises(W2VEmbedError, match="exists; pass --resume"):
        FeatureWriter(out, info_for(layers=(3,)))
    with FeatureWriter(out, info_for(layers=(3,)), "resume") as writer:  # settings of the new run, not the old file
        assert writer.done == {name_of(5)}
        add(writer, 6)
    paths, x = load(out)
    assert paths == [name_of(5), name_of(6)] and x.shape == (2, HIDDEN)  # the old rows are not merged in
    assert leftovers(out) == []


def test_names_that_are_not_utf8_are_stored_losslessly(tmp_path):
    latin1 = os.fsdecode(b"corpus/caf\xe9.wav")  # what os.listdir gives for a Latin-1 name: 'caf\udce9.wav'
    out = tmp_path / "x.h5"
    with FeatureWriter(out, info_for(), commit_every_files=1) as writer:
        writer.add(Row(0, latin1, 400, 16_000, features(0, writer.info)))
        writer.add_failure(1, os.fsdecode(b"bad\xff.wav"), f"cannot decode {os.fsdecode(b'bad/xff.wav')}: \udcff")
    with FeatureWriter(out, info_for(), "resume") as writer:  # resume reads them back too
        assert writer.done == {latin1}
    assert load(out)[0] == [latin1]
    assert read_summary(out)["failed"][0][0] == os.fsdecode(b"bad\xff.wav")
    with h5py.File(out) as f:
        assert f["paths"][0] == b"corpus/caf\xe9.wav"  # the file system's bytes, as they are


def test_outputs_from_before_the_new_settings_were_recorded_still_resume(tmp_path):
    old = RunInfo(model="tiny.onnx", model_sha256=SHA, layers=(6, 12), pooling="mean", hidden_size=HIDDEN)
    out = write(tmp_path / "x.h5", old, [0])
    write(out, info_for(), [1], mode="resume")  # unrecorded (empty) settings are not compared
    assert load(out)[0] == [name_of(0), name_of(1)]


def _fill_then_fail(path, *args):
    """What a full disk does to an HDF5 write: part of the file is there, then ENOSPC."""
    Path(path).write_bytes(b"\0" * 4096)
    raise OSError(errno.ENOSPC, "Can't close file (file write failed: errno = 28, error message = 'No space left on device')")


def test_full_disk_is_one_error_and_leaves_no_temp_files(tmp_path, monkeypatch):
    out = tmp_path / "x.h5"
    writer = FeatureWriter(out, info_for(), commit_every_files=2)
    add(writer, 0)
    add(writer, 1)  # committed
    monkeypatch.setattr("w2v_embed.store.stream.write_segment", _fill_then_fail)
    add(writer, 2)
    with pytest.raises(W2VEmbedError, match=r"^no space left on the device of .*x\.h5\.parts; free some space"):
        add(writer, 3)
    assert sorted(p.name for p in (tmp_path / "x.h5.parts").iterdir()) == ["run.json", "seg-000001.h5"]
    monkeypatch.setattr("w2v_embed.store.writer.merge_files", lambda paths, out, info: _fill_then_fail(out))  # in the final assembly
    with pytest.raises(W2VEmbedError, match=r"^no space left on the device of .*; free some space"):
        writer.close()
    assert leftovers(out) == ["x.h5.parts"] and not out.exists()
    monkeypatch.undo()  # space freed
    write(out, info_for(), range(5), mode="resume")
    assert load(out)[0] == [name_of(i) for i in range(5)]


def test_a_frame_level_commit_failing_on_the_committer_thread_is_raised_next_and_its_rows_kept(tmp_path, monkeypatch):
    info = info_for("none")
    out, parts = tmp_path / "x.h5", tmp_path / "x.h5.parts"
    writer = FeatureWriter(out, info, commit_every_files=2)
    add(writer, 0)
    add(writer, 1)  # handed to the committer thread
    writer.commit()  # waits for it
    assert sorted(p.name for p in parts.iterdir()) == ["run.json", "seg-000001.h5"]
    monkeypatch.setattr("w2v_embed.store.stream.write_segment", _fill_then_fail)
    add(writer, 2)
    add(writer, 3)  # its segment fails on the committer thread: add() has returned already
    add(writer, 4)
    with pytest.raises(W2VEmbedError, match=r"^no space left on the device of .*x\.h5\.parts; free some space"):
        add(writer, 5)  # the next commit raises it
    monkeypatch.undo()  # space freed
    writer.abort()  # rows 2-5 are still there to commit
    assert sorted(p.name for p in parts.iterdir()) == ["run.json", "seg-000001.h5", "seg-000003.h5"]
    with FeatureWriter(out, info, "resume") as writer:
        assert writer.done == {name_of(i) for i in range(6)}
        add(writer, 6)
        add(writer, 7)
    assert dump(out) == dump(write(tmp_path / "full.h5", info, range(8)))


def test_output_that_is_a_folder_or_unwritable_is_one_error(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match=r"is a folder; give a file name"):
        FeatureWriter(tmp_path, info_for(), "overwrite")

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(W2VEmbedError, match=r"^cannot write .*ro\.h5: Read-only file system$"):
        FeatureWriter(tmp_path / "sub" / "ro.h5", info_for())


def test_a_lock_file_deleted_by_hand_stops_the_first_writer_before_it_writes(tmp_path):
    out, lock = tmp_path / "x.h5", tmp_path / "x.h5.lock"
    first = FeatureWriter(out, info_for(), commit_every_files=2)
    add(first, 0)
    lock.unlink()  # by hand, "it looked stale"
    second = FeatureWriter(out, info_for(), "resume", commit_every_files=1)  # nothing tells it about the first
    add(second, 1)  # committed as seg-000001
    with pytest.raises(W2VEmbedError, match=r"x\.h5\.lock was removed or replaced while this run held it"):
        add(first, 2)  # its commit would write seg-000001 over the second's
    with pytest.raises(W2VEmbedError, match="was removed or replaced"):
        first.close()  # nothing is merged either
    assert lock.exists()  # the second writer's lock is left alone
    second.close()
    assert load(out)[0] == [name_of(1)]


def test_version_1_outputs_are_still_read_and_resumed(tmp_path):
    """Format 1 stored layers as integers; such files load, and a resume writes format 2 with their rows."""
    out = write(tmp_path / "old.h5", info_for(), [0, 1])
    with h5py.File(out, "r+") as f:
        f.attrs["format"] = "w2v-embed/1"
        f.attrs["layers"] = np.array([6, 12], dtype=np.int64)
        for key in ("shard", "shard_files", "total_files", "window_seconds", "hop_seconds"):
            del f.attrs[key]
    paths, x = load(out, layer=12)
    assert paths == [name_of(0), name_of(1)]
    write(out, info_for(), [0, 1, 2], mode="resume")
    with h5py.File(out) as f:
        assert f.attrs["format"] == "w2v-embed/2" and list(f.attrs["layers"]) == ["6", "12"]
    assert load(out, layer=12)[0] == [name_of(i) for i in range(3)]


# -- frame-level files streamed chunk by chunk -----------------------------------------------------


def test_streamed_frames_equal_added_frames_and_a_cut_off_file_is_redone(tmp_path):
    info = info_for(pooling="none")
    whole = features(3, info)
    frames = len(whole[6])
    out = tmp_path / "s.h5"
    writer = FeatureWriter(out, info)
    for start in reversed(range(0, frames, 4)):  # chunks in any order
        for layer in info.layers:
            writer.write_frames(name_of(3), layer, start, whole[layer][start : start + 4], frames)
    assert list(writer.parts.glob("stream-*.h5.tmp"))  # on disk, not in memory
    writer.add(Row(0, name_of(3), num_samples(3), 16_000, {6: np.zeros(0), 12: np.zeros(0)}))
    for layer in info.layers:
        writer.write_frames(name_of(4), layer, 0, features(4, info)[layer][:2], 5)  # cut off: never completed
    writer.abort()
    assert not list(writer.parts.glob("*.tmp"))  # the cut-off file is not half-present anywhere
    with FeatureWriter(out, info, mode="resume") as again:
        assert again.done == {name_of(3)}  # the cut-off file is redone
        add(again, 4)
    got = load(out, layer=12)
    np.testing.assert_array_equal(got[name_of(3)], whole[12])
    np.testing.assert_array_equal(got[name_of(4)], features(4, info)[12])


def test_a_failed_streamed_file_leaves_nothing(tmp_path):
    info = info_for(pooling="none")
    with FeatureWriter(tmp_path / "f.h5", info) as writer:
        writer.write_frames(name_of(1), 6, 0, features(1, info)[6], len(features(1, info)[6]))
        writer.add_failure(1, name_of(1), "the model's output is not finite")
        assert not list(writer.parts.glob("*.tmp"))
        add(writer, 2)
    assert read_summary(tmp_path / "f.h5")["failed"] == [(name_of(1), "the model's output is not finite")]


def test_a_streamed_row_must_match_the_run_s_segments_like_an_added_one(tmp_path):
    """A streamed file completes through the same row check as an added one: in a segments run its
    segment columns are stored, and a row without a segment is refused, not stored without one."""
    info = info_for(pooling="none", segments=True)
    out = tmp_path / "seg.h5"
    with FeatureWriter(out, info) as writer:
        for i, segment in ((1, ("rec.wav", 1.5, 2.25)), (2, None)):
            for layer in info.layers:
                whole = features(i, info)[layer]
                writer.write_frames(name_of(i), layer, 0, whole, len(whole))
            row = Row(i, name_of(i), num_samples(i), 16_000, {6: np.zeros(0), 12: np.zeros(0)}, segment, 0.25)
            if segment is None:
                with pytest.raises(W2VEmbedError, match="a segment needs"):
                    writer.add(row)
                writer.discard_frames(name_of(i))
            else:
                writer.add(row)
    with h5py.File(out) as f:
        assert [p.decode() for p in f["source_path"][:]] == ["rec.wav"]
        assert list(f["segment_start"][:]) == [1.5] and list(f["segment_end"][:]) == [2.25]
    np.testing.assert_array_equal(load(out, layer=12)[name_of(1)], features(1, info)[12])


@pytest.mark.parametrize("mode", ["new", "overwrite", "resume"])
def test_an_output_that_is_a_pipe_or_device_is_refused_and_left_as_it_is(tmp_path, mode):
    """A rename over it would replace it with a file (`-o /dev/null --overwrite` as root broke /dev/null)."""
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match=r"pipe\.h5 is a named pipe, not a file"):
        FeatureWriter(fifo, info_for(), mode)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and sorted(os.listdir(tmp_path)) == ["pipe.h5"]  # no lock, no parts

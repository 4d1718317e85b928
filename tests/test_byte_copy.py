"""The final assembly copies the layer (and window) datasets' bytes in the kernel instead of through
HDF5 (store.merge._byte_spans): the outputs must be identical to what the HDF5 copy writes, for
pooled, frame-level, streamed and windowed rows, out of order, after a resume, from files of an
earlier (chunked) layout, and without copy_file_range."""

from __future__ import annotations

import errno
import os
import sys

import h5py
import numpy as np
import pytest
from test_store import add, features, info_for, name_of, write

import w2v_embed
from w2v_embed.store import FeatureWriter, merge
from w2v_embed.store.sink import Row


def datasets(path) -> dict:
    """Every dataset as (dtype, shape, bytes) (strings as lists), and the attributes but run_id."""
    out: dict = {}
    with h5py.File(path, "r") as f:
        out["attrs"] = {k: np.asarray(v).tolist() for k, v in f.attrs.items() if k != "run_id"}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                out[name] = (obj.dtype.str, obj.shape, data.tolist() if obj.dtype.kind == "O" else data.tobytes())

        f.visititems(visit)
    return out


def through_hdf5(monkeypatch):
    """Make every merge copy through HDF5, as before the byte copy."""
    monkeypatch.setattr(sys.modules["w2v_embed.store.merge"], "_byte_spans", lambda *args: None)


def run(path, info, order, streamed=(), cut=()):
    """Rows in `order` (not input order), a segment every 3; `streamed` files go through write_frames
    chunk by chunk; `cut` files get a few frames streamed and then fail."""
    with FeatureWriter(path, info, commit_every_files=3) as writer:
        for i in order:
            if i in cut:
                writer.write_frames(name_of(i), info.layers[0], 0, features(i, info)[info.layers[0]][:1], 9)
                writer.add_failure(i, name_of(i), "decoder gave up")
            elif i in streamed:
                whole = features(i, info)
                for layer in info.layers:
                    for start in reversed(range(0, len(whole[layer]), 2)):
                        writer.write_frames(name_of(i), layer, start, whole[layer][start : start + 2], len(whole[layer]))
                writer.add(Row(i, name_of(i), 400, 16_000, {}))
            else:
                add(writer, i)
    return path


ORDER = [4, 0, 7, 1, 2, 9, 3, 8, 5, 6, 11, 10]


@pytest.mark.parametrize("pooling, dtype", [("mean", "float32"), ("meanstd", "float32"), ("none", "float32"),
                                            ("none", "float16")])
def test_output_is_byte_equal_to_the_hdf5_copy(tmp_path, monkeypatch, pooling, dtype):
    info = info_for(pooling, layers=(0, 3, 12), dtype=dtype)
    streamed = (2, 9) if info.frame_level else ()
    cut = (5,) if info.frame_level else ()
    copied = run(tmp_path / "copied.h5", info, ORDER, streamed, cut)
    with h5py.File(copied, "r") as f:  # the new layout: the layers contiguous (their bytes copied straight in)
        assert all(f[name].chunks is None for name in ("layer_0", "layer_3", "layer_12"))
        assert list(f["paths"].asstr()[()]) == [name_of(i) for i in range(12) if i not in cut]
    through_hdf5(monkeypatch)
    assert datasets(copied) == datasets(run(tmp_path / "hdf5.h5", info, ORDER, streamed, cut))


def test_windowed_output_is_byte_equal_to_the_hdf5_copy(tmp_path, monkeypatch):
    info = info_for("mean", window_seconds=0.05, hop_seconds=0.02)

    def windowed(path):
        with FeatureWriter(path, info, commit_every_files=2) as writer:
            for i in ORDER:
                rows = 1 + i % 4
                feats = {k: np.random.default_rng(i).standard_normal((rows, 8)).astype(np.float32) + k for k in info.layers}
                writer.add(Row(i, name_of(i), 400 + 160 * rows, 16_000, feats))
        return path

    copied = windowed(tmp_path / "copied.h5")
    through_hdf5(monkeypatch)
    assert datasets(copied) == datasets(windowed(tmp_path / "hdf5.h5"))


def test_without_copy_file_range_the_bytes_are_the_same(tmp_path, monkeypatch):
    info = info_for("none")
    copied = run(tmp_path / "copied.h5", info, ORDER)

    def unsupported(*args):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr("os.copy_file_range", unsupported)
    assert datasets(run(tmp_path / "blocks.h5", info, ORDER)) == datasets(copied)


def test_resume_and_shard_merge_are_byte_equal_to_one_run(tmp_path):
    info = info_for("none")
    full = run(tmp_path / "full.h5", info, range(12))
    out = write(tmp_path / "out.h5", info, [0, 1, 2, 3, 4], commit_every_files=2)  # finished, then resumed
    write(out, info, range(12), mode="resume", commit_every_files=2)
    assert datasets(out) == datasets(full)
    shards = [write(tmp_path / f"s{i}.h5", info_for("none", shard=f"{i}/2", shard_files=6, total_files=12),
                    [j for j in range(12) if j % 2 == i]) for i in (0, 1)]
    merge(tmp_path / "merged.h5", shards)
    merged = datasets(tmp_path / "merged.h5")
    assert {k: v for k, v in merged.items() if k != "attrs"} == {k: v for k, v in datasets(full).items() if k != "attrs"}


def test_a_chunked_output_of_an_earlier_version_is_resumed(tmp_path):
    """Outputs written before the byte copy had chunked layer datasets: a resume copies those through HDF5."""
    info = info_for("none")
    out = write(tmp_path / "out.h5", info, [3, 0, 1])
    with h5py.File(out, "r+") as f:
        for name in ("layer_6", "layer_12"):
            data = f[name][()]
            del f[name]
            f.create_dataset(name, data=data, maxshape=(None, data.shape[1]), chunks=(4, data.shape[1]))
    write(out, info, range(6), mode="resume")
    with h5py.File(out, "r") as f:
        assert f["layer_6"].chunks is None
    frames = w2v_embed.load(out, layer=6)
    assert list(frames) == [name_of(i) for i in range(6)]
    for i in range(6):
        np.testing.assert_array_equal(frames[name_of(i)], features(i, info)[6])
    assert datasets(out) == datasets(write(tmp_path / "one.h5", info, range(6)))


def test_frame_level_extract_is_byte_equal_to_the_hdf5_copy(onnx_model, tmp_path, monkeypatch):
    """A real run (files finishing out of order, the long one streamed chunk by chunk), killed after its
    first commits and resumed, equals one run copied through HDF5, and reads back."""
    from audio_utils import noise, write_audio

    from w2v_embed import embedder as embedder_module
    from w2v_embed.discover import discover
    from w2v_embed.embedder import Embedder, EmbedOptions
    from w2v_embed.extract import ExtractOptions, extract

    for i, seconds in enumerate([3.1, 0.4, 2.2, 0.3, 1.7, 0.9, 9.0, 0.5]):
        write_audio(tmp_path / "corpus" / f"u{i:02d}.wav", noise(seconds, 16_000, seed=i), 16_000)
    files = discover([str(tmp_path / "corpus")])
    embedder = Embedder(onnx_model("group"), options=EmbedOptions("1,last", "none", batch_size=3, max_batch_seconds=4.0,
                                                         chunk_seconds=2.0))
    monkeypatch.setattr(embedder_module, "STREAM_FRAMES_BYTES", 100_000)  # the 9 s file is streamed
    extract(files[:5], tmp_path / "copied.h5", embedder, ExtractOptions(save_every_files=2))
    extract(files, tmp_path / "copied.h5", embedder, ExtractOptions(mode="resume", save_every_files=2))
    through_hdf5(monkeypatch)
    extract(files, tmp_path / "hdf5.h5", embedder, ExtractOptions(save_every_files=2))
    assert datasets(tmp_path / "copied.h5") == datasets(tmp_path / "hdf5.h5")
    out = w2v_embed.open(tmp_path / "copied.h5", layers=["last"])
    assert out.paths == [f.name for f in files] and len(out[files[6].name]["last"]) == 449  # 9 s at 50 frames/s


def test_copy_range_starts_writeback_of_each_block_it_copies(tmp_path, monkeypatch):
    """The final file's fsync follows the copy: each copied block is handed to writeback at once."""
    from w2v_embed.store import files

    data = np.random.default_rng(0).bytes(10_000)
    (tmp_path / "src").write_bytes(data)
    started: list[tuple[int, int]] = []
    real = files.start_writeback
    monkeypatch.setattr(files, "_BLOCK", 4096)
    monkeypatch.setattr(files, "start_writeback", lambda fd, at, count: (started.append((at, count)), real(fd, at, count)))
    source = open(tmp_path / "src", "rb")
    with open(tmp_path / "dst", "wb") as target:
        files.copy_range(source.fileno(), 1000, target.fileno(), 7, 9000)
    source.close()
    assert (tmp_path / "dst").read_bytes() == b"\0" * 7 + data[1000:]
    assert started == [(7, 4096), (4103, 4096), (8199, 808)]


def test_start_writeback_is_best_effort(tmp_path, monkeypatch):
    """Not a regular file, or no sync_file_range (not Linux): nothing happens, nothing is raised."""
    from w2v_embed.store import files

    read, write_end = os.pipe()
    files.start_writeback(write_end, 0, 100)
    monkeypatch.setattr(files, "_sync_file_range", lambda: None)
    files.start_writeback(write_end, 0, 100)
    for fd in (read, write_end):
        os.close(fd)

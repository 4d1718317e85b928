"""w2v_embed.open(): outputs read on demand, by index or path, in DataLoader workers and other processes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import w2v_embed
from test_store import info_for, name_of, write
from w2v_embed.errors import W2VEmbedError


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader")
    pooled = write(root / "pooled.h5", info_for(), [0, 1, 2, (3, "bad"), 4])
    frames = write(root / "frames.h5", info_for(pooling="none"), [0, 1, 2, 4])
    return pooled, frames


def test_pooled_rows_by_index_and_path(outputs):
    pooled, _ = outputs
    paths, x12 = w2v_embed.load(pooled, layer=12)
    _, x6 = w2v_embed.load(pooled, layer=6)
    with w2v_embed.open(pooled) as out:
        assert len(out) == 4 and out.paths == paths and out.layers == [6, 12] and not out.frame_level
        assert out.attrs["pooling"] == "mean"
        for i, name in enumerate(paths):
            np.testing.assert_array_equal(out[i][12], x12[i])
            np.testing.assert_array_equal(out[name][6], x6[i])
        np.testing.assert_array_equal(out[-1][12], x12[-1])
        with pytest.raises(KeyError, match=name_of(3)):
            out[name_of(3)]  # failed, so not stored
        with pytest.raises(IndexError):
            out[4]
        with pytest.raises(W2VEmbedError, match="no frame times"):
            out.timestamps(0)


def test_frames_iteration_and_timestamps(outputs):
    _, frames = outputs
    expected = w2v_embed.load(frames, layer=6)
    out = w2v_embed.open(frames, layers=[6])
    seen = dict((name, feats[6]) for name, feats in out)
    assert seen.keys() == expected.keys() and out.layers == [6]
    for name in expected:
        np.testing.assert_array_equal(seen[name], expected[name])
        times = out.timestamps(name)
        assert len(times) == len(expected[name]) and times[0] == 0.0125 and np.allclose(np.diff(times), 0.02)
    with pytest.raises(W2VEmbedError, match="layer 7 is not stored"):
        w2v_embed.open(frames, layers=[7])


def test_pickles_as_its_path_and_reopens(outputs):
    _, frames = outputs
    out = w2v_embed.open(frames)
    first = out[0][12]  # the handle is open in this process now
    clone = pickle.loads(pickle.dumps(out))
    assert clone._file is None
    np.testing.assert_array_equal(clone[0][12], first)


def test_pytorch_dataloader_workers(outputs):
    """docs/output.md's pattern: a Dataset over open(); each worker process opens the file itself."""
    torch = pytest.importorskip("torch")
    _, frames = outputs

    class Frames(torch.utils.data.Dataset):
        def __init__(self, path, layer):
            self.out, self.layer = w2v_embed.open(path, layers=[layer]), layer

        def __len__(self):
            return len(self.out)

        def __getitem__(self, i):
            return self.out.paths[i], torch.from_numpy(self.out[i][self.layer])

    expected = w2v_embed.load(frames, layer=12)
    loader = torch.utils.data.DataLoader(Frames(frames, 12), batch_size=None, num_workers=2)
    got = {name: x.numpy() for name, x in loader}
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])


def test_hugging_face_datasets_map(outputs):
    """docs/output.md's pattern: embeddings added to a `datasets` dataset by looking rows up by path."""
    datasets = pytest.importorskip("datasets")
    pooled, _ = outputs
    paths, x = w2v_embed.load(pooled, layer=12)
    out = w2v_embed.open(pooled, layers=[12])
    ds = datasets.Dataset.from_dict({"path": list(reversed(paths)), "label": list(range(len(paths)))})
    ds = ds.map(lambda row: {"w2v": out[row["path"]][12]})
    for row in ds:
        np.testing.assert_allclose(row["w2v"], x[paths.index(row["path"])], rtol=1e-6)


def test_an_output_pickled_with_a_relative_path_opens_from_another_folder(outputs, tmp_path, monkeypatch):
    import shutil

    shutil.copy(outputs[1], tmp_path / "f.h5")
    monkeypatch.chdir(tmp_path)
    out = w2v_embed.open("f.h5")
    blob = pickle.dumps(out)
    monkeypatch.chdir("/")
    clone = pickle.loads(blob)
    assert clone.paths == out.paths
    np.testing.assert_array_equal(clone[out.paths[0]][12], out[out.paths[0]][12])

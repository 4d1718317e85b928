"""The start-up cache: a second session is served from it, and nothing stale or damaged ever is."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from w2v_embed.runtime import OnnxModel
from w2v_embed.runtime.onnxruntime import OrtRuntime

X = np.random.default_rng(3).standard_normal((1, 20_000)).astype(np.float32)
LENGTHS = np.array([20_000])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("W2V_EMBED_CACHE", str(folder))
    return folder / "onnxruntime"


@pytest.fixture
def loads(monkeypatch):
    """Counts the sessions ONNX Runtime built from the model rather than from the cache."""
    built = []
    original = OrtRuntime._build

    def counting(self, graph, options, entry):
        built.append(graph.outputs)
        return original(self, graph, options, entry)

    monkeypatch.setattr(OrtRuntime, "_build", counting)
    return built


def _run(path, layers=("last",)) -> dict:
    return OnnxModel(path, device="cpu", runtime="onnxruntime").run(X, LENGTHS, list(layers))


def test_second_session_is_served_from_the_cache(onnx_model, cache, loads):
    first = _run(onnx_model("group"))
    (entry,) = cache.glob("*.onnx")
    second = _run(onnx_model("group"))
    assert len(loads) == 1 and list(cache.glob("*.onnx")) == [entry]
    np.testing.assert_array_equal(first["last"], second["last"])
    assert not list(cache.glob(".*")), "no temporary file is left behind"


def test_each_graph_cut_has_its_own_entry(onnx_model, cache, loads):
    model = onnx_model("stable")  # run alone, this exports (and verifies) it here: not what is counted
    shutil.rmtree(cache, ignore_errors=True)
    loads.clear()
    cut, whole = _run(model, [1]), _run(model, [1, "last"])
    assert len(list(cache.glob("*.onnx"))) == 2 and loads == [("hidden_state_0", "hidden_state_1"), None]
    again = OnnxModel(onnx_model("stable"), device="cpu", runtime="onnxruntime")
    np.testing.assert_allclose(again.run(X, LENGTHS, [1])[1], cut[1], atol=1e-6)
    np.testing.assert_allclose(again.run(X, LENGTHS, ["last"])["last"], whole["last"], atol=1e-6)
    assert len(loads) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_entry_is_removed_and_rebuilt(onnx_model, cache, loads, damage):
    expected = _run(onnx_model("group"))["last"]
    (entry,) = cache.glob("*.onnx")
    whole = entry.read_bytes()
    entry.write_bytes(whole[: len(whole) // 2] if damage == "truncate" else b"not a model" * 100)
    got = _run(onnx_model("group"))["last"]
    np.testing.assert_array_equal(got, expected)
    assert len(loads) == 2 and entry.read_bytes() == whole


def test_changed_model_is_not_served_from_the_cache(onnx_model, cache, loads, tmp_path):
    path = tmp_path / "model.onnx"
    shutil.copyfile(onnx_model("group"), path)
    _run(path)
    shutil.copyfile(onnx_model("stable"), path)  # same path, other weights and architecture
    got = _run(path)["last"]
    np.testing.assert_array_equal(got, _run(onnx_model("stable"))["last"])
    assert len(list(cache.glob("*.onnx"))) == 2 and len(loads) == 2


def test_cache_off_or_unwritable_runs_without_it(onnx_model, tmp_path, monkeypatch, loads):
    onnx_model("group")  # run alone, this exports (and verifies) it here: not what is counted
    loads.clear()
    monkeypatch.setenv("W2V_EMBED_CACHE", "off")
    expected = _run(onnx_model("group"))["last"]
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv("W2V_EMBED_CACHE", str(blocked))
    np.testing.assert_array_equal(_run(onnx_model("group"))["last"], expected)
    assert len(loads) == 2 and blocked.read_text().startswith("a file")


def test_least_recently_used_entries_go_beyond_the_budget(tmp_path):
    import os

    from w2v_embed.runtime.cache import evict

    for i, name in enumerate(["old", "mid", "new"]):
        (tmp_path / name).write_bytes(b"x" * 100)
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    evict(tmp_path, keep=tmp_path / "new", budget=250)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mid", "new"]


def test_openvino_compiles_into_its_cache_folder(onnx_model, tmp_path, monkeypatch):
    pytest.importorskip("openvino", reason="needs the openvino extra")
    monkeypatch.setenv("W2V_EMBED_CACHE", str(tmp_path))
    first = OnnxModel(onnx_model("group"), device="cpu", runtime="openvino").run(X, LENGTHS, ["last"])["last"]
    blobs = list((tmp_path / "openvino").rglob("*.blob"))
    assert blobs
    second = OnnxModel(onnx_model("group"), device="cpu", runtime="openvino").run(X, LENGTHS, ["last"])["last"]
    np.testing.assert_array_equal(first, second)
    assert list((tmp_path / "openvino").rglob("*.blob")) == blobs


def test_a_models_sha256_is_remembered_per_file_identity_and_never_stale(tmp_path, monkeypatch):
    """Hashing a model costs ~0.3 s a GB at every start; the digest is kept per (inode, size, mtime, ctime),
    and a rewrite of the same size with the old mtime put back (ctime cannot be) is hashed again."""
    import hashlib
    import os

    from w2v_embed.runtime import cache as runtime_cache

    monkeypatch.setenv("W2V_EMBED_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.onnx"
    model.write_bytes(b"a" * 100_000)
    hashed = []
    original = runtime_cache.hash_files
    monkeypatch.setattr(runtime_cache, "hash_files", lambda files: hashed.append(files) or original(files))
    first = runtime_cache.files_sha256([model])
    assert first == hashlib.sha256(b"a" * 100_000).hexdigest() and len(hashed) == 1
    assert runtime_cache.files_sha256([model]) == first and len(hashed) == 1  # remembered: not read again
    before = os.stat(model)
    model.write_bytes(b"b" * 100_000)
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert runtime_cache.files_sha256([model]) == hashlib.sha256(b"b" * 100_000).hexdigest() and len(hashed) == 2
    monkeypatch.setenv("W2V_EMBED_CACHE", "off")
    assert runtime_cache.files_sha256([model]) == hashlib.sha256(b"b" * 100_000).hexdigest() and len(hashed) == 3

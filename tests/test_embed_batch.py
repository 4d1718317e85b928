"""Embedder.embed_batch (input order) and pickling (model path + options + device; loaded lazily), as HF
datasets' batched, cached `map` uses them (the recipe in docs/frontends.md)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from w2v_embed.embedder import Embedder, EmbedOptions
from w2v_embed.errors import W2VEmbedError

LENGTHS = (9_000, 48_000, 4_000, 20_001, 33_333)


def _signals() -> list[np.ndarray]:
    rng = np.random.default_rng(21)
    return [(0.3 * rng.standard_normal(n)).astype(np.float32) for n in LENGTHS]


def test_embed_batch_returns_input_order_equal_to_each_alone(onnx_model):
    emb = Embedder(onnx_model("group"), device="cpu", options=EmbedOptions("1,last", "mean", batch_size=8))
    signals = _signals()
    got = emb.embed_batch(signals, 16_000)  # batched longest first, returned as given
    assert len(got) == len(signals)
    for x, features in zip(signals, got):
        alone = emb.embed(x, 16_000)
        assert sorted(features, key=str) == sorted(alone, key=str)
        for k in alone:
            np.testing.assert_allclose(features[k], alone[k], atol=1e-5)
    stereo_8k = np.stack([signals[0][:8000], signals[0][:8000]], axis=1)
    np.testing.assert_allclose(emb.embed_batch([stereo_8k], 8_000)[0]["last"], emb.embed(stereo_8k, 8_000)["last"])
    assert emb.embed_batch([], 16_000) == []


def test_an_unpickled_embedder_is_small_loads_on_first_use_and_gives_the_same_features(onnx_model):
    emb = Embedder(onnx_model("stable"), device="cpu", threads=1, options=EmbedOptions("all", "meanstd"))
    x = _signals()[1]
    want = emb.embed(x, 16_000)
    blob = pickle.dumps(emb)
    assert len(blob) < 1_000
    copy = pickle.loads(blob)
    assert "model" not in vars(copy)  # no session until it is used
    assert pickle.dumps(copy) == blob  # and it pickles the same before it is used
    got = copy.embed(x, 16_000)
    assert copy.model.threads == 1 and copy.options == emb.options and copy.model is not emb.model
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-6)
    assert pickle.dumps(copy) == blob
    early = pickle.loads(pickle.dumps(emb.with_options(layers="1", pool="mean")))
    np.testing.assert_allclose(early.embed(x, 16_000)[1], emb.with_options(pool="mean").embed(x, 16_000)[1], atol=1e-6)
    lazy = pickle.loads(blob).with_options(pool="max")  # a clone of a not-yet-loaded one
    np.testing.assert_allclose(lazy.embed(x, 16_000)[2], emb.with_options(pool="max").embed(x, 16_000)[2], atol=1e-6)


def test_an_unpickled_embedder_refuses_another_model_at_its_path(onnx_model, tmp_path):
    import shutil

    path = tmp_path / "m.onnx"
    shutil.copy(onnx_model("group"), path)
    blob = pickle.dumps(Embedder(path, device="cpu"))
    shutil.copy(onnx_model("stable"), path)  # the group and stable checkpoints have different weights
    with pytest.raises(W2VEmbedError, match="another model than the one this Embedder was pickled with"):
        pickle.loads(blob).embed(_signals()[0], 16_000)


def test_an_unpickled_embedder_refuses_the_same_weights_at_another_precision(onnx_model, checkpoint_dir, tmp_path):
    """An int8 export of the same checkpoint at the same path is another model: HF datasets' cache key
    (the pickle) differs, and a copy pickled before the re-export refuses it."""
    import shutil

    from w2v_embed.export import ExportOptions, export_model

    path = tmp_path / "m.onnx"
    shutil.copy(onnx_model("group"), path)
    blob = pickle.dumps(Embedder(path, device="cpu"))
    export_model(str(checkpoint_dir("group")), ExportOptions(output=path, quantize="int8", overwrite=True, verify=False))
    assert pickle.dumps(Embedder(path, device="cpu")) != blob
    with pytest.raises(W2VEmbedError, match="another model than the one this Embedder was pickled with"):
        pickle.loads(blob).embed(_signals()[0], 16_000)


def test_an_embedder_pickled_with_a_relative_path_loads_from_another_folder(onnx_model, tmp_path, monkeypatch):
    import shutil

    shutil.copy(onnx_model("group"), tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    emb = Embedder("m.onnx", device="cpu")
    blob = pickle.dumps(emb)
    monkeypatch.chdir("/")  # a DataLoader worker or a Ray task may start elsewhere
    x = _signals()[0]
    np.testing.assert_array_equal(pickle.loads(blob).embed(x, 16_000)["last"], emb.embed(x, 16_000)["last"])


def test_datasets_batched_map_is_cached_and_in_input_order(onnx_model, tmp_path, monkeypatch):
    """The docs/frontends.md recipe: a batched map, cached by datasets' fingerprint of the function."""
    datasets = pytest.importorskip("datasets")
    from datasets.fingerprint import Hasher

    datasets.enable_caching()
    signals = _signals()
    datasets.Dataset.from_dict({"audio": [x.tolist() for x in signals]}).save_to_disk(tmp_path / "ds")
    ds = datasets.load_from_disk(tmp_path / "ds")  # on disk: map results are cached beside it

    def embedding_of(embedder: Embedder):
        def embed(batch: dict) -> dict:
            features = embedder.embed_batch(batch["audio"], 16_000)
            return {"embedding": [f["last"] for f in features]}

        return embed

    options = EmbedOptions("last", "mean")
    first = embedding_of(Embedder(onnx_model("group"), device="cpu", options=options))
    again = embedding_of(Embedder(onnx_model("group"), device="cpu", options=options))
    assert Hasher.hash(first) == Hasher.hash(again)
    other = embedding_of(Embedder(onnx_model("group"), device="cpu", options=EmbedOptions("last", "max")))
    assert Hasher.hash(other) != Hasher.hash(first)

    mapped = ds.map(first, batched=True, batch_size=2)
    emb = Embedder(onnx_model("group"), device="cpu", options=options)
    for row, x in zip(mapped["embedding"], signals):
        np.testing.assert_allclose(row, emb.embed(x, 16_000)["last"], atol=1e-5)
    calls = []
    monkeypatch.setattr(Embedder, "embed_batch", lambda self, *a: calls.append(a) or [])
    cached = ds.map(again, batched=True, batch_size=2)
    assert calls == [] and cached.cache_files == mapped.cache_files
    np.testing.assert_array_equal(np.array(cached["embedding"]), np.array(mapped["embedding"]))


@pytest.mark.parametrize(("audio", "rate", "message"), [
    ("mono", 0, r"sample_rate 0: expected a positive whole number of Hz"),
    ("mono", [16_000, 16_000], r"sample_rate \[16000, 16000\]: expected a positive whole number of Hz"),
    ("mono", 16_000.5, r"sample_rate 16000.5: expected"),
    ("channels_first", 16_000, r"shape \(2, 16000\) looks channels-first .*audio\.T"),
    ("row", 16_000, r"shape \(1, 16000\) looks channels-first"),
])
def test_a_bad_rate_or_channels_first_audio_is_one_error_not_garbage(onnx_model, audio, rate, message):
    """torchaudio returns (channels, samples): averaged as (samples, channels) it gave 'too short: 2
    samples', or with >= 400 channels garbage; a list of rates or 0 Hz raised soxr's own errors."""
    emb = Embedder(onnx_model("group"), device="cpu")
    x = _signals()[1][:16_000]
    signal = {"mono": x, "channels_first": np.stack([x, x]), "row": x[None]}[audio]
    with pytest.raises(W2VEmbedError, match=message):
        emb.embed_batch([signal], rate)


def test_a_torch_tensor_and_a_whole_float_rate_are_taken(onnx_model):
    torch = pytest.importorskip("torch")
    emb = Embedder(onnx_model("group"), device="cpu")
    x = _signals()[1]
    want = emb.embed(x, 16_000)["last"]
    tensor = torch.from_numpy(x.copy()).requires_grad_(True)  # as a model's output would be: np.asarray fails on it
    np.testing.assert_array_equal(emb.embed(tensor, 16_000.0)["last"], want)

"""w2v_embed.lhotse: lhotse computes, stores and validates w2v-embed features of a CutSet."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from audio_utils import noise, write_audio

lhotse = pytest.importorskip("lhotse")


@pytest.fixture(scope="module")
def cuts(tmp_path_factory):
    root = tmp_path_factory.mktemp("lhotse")
    recordings = []
    # 16000 samples: the model gives 49 frames, lhotse counts 50; 23456: both 73; 8 kHz is resampled first
    for i, (samples, rate) in enumerate([(16000, 16000), (16160, 16000), (23456, 16000), (12000, 8000)]):
        path = write_audio(root / f"r{i}.wav", noise(samples / rate, rate, seed=i), rate)
        recordings.append(lhotse.Recording.from_file(path, recording_id=f"r{i}"))
    cutset = lhotse.CutSet.from_manifests(recordings=lhotse.RecordingSet.from_recordings(recordings))
    return cutset, root


def extractor(onnx_model, layer="last"):
    from w2v_embed.lhotse import W2VEmbed, W2VEmbedConfig

    return W2VEmbed(W2VEmbedConfig(model=str(onnx_model("group")), layer=layer, device="cpu"))


def test_compute_and_store_features_then_validate(cuts, onnx_model, tmp_path):
    from lhotse.features.io import NumpyHdf5Writer
    from lhotse.utils import compute_num_frames

    import w2v_embed

    cutset, _ = cuts
    ex = extractor(onnx_model, layer=1)
    # one cut that starts inside its recording, as trimmed supervisions do
    cutset = lhotse.CutSet.from_cuts([*cutset, cutset[2].truncate(offset=0.3, duration=0.9).with_id("r2-part")])
    stored = cutset.compute_and_store_features(ex, tmp_path / "feats", storage_type=NumpyHdf5Writer, num_jobs=1)
    lhotse.qa.validate(stored, read_data=True)
    reference = w2v_embed.Embedder(onnx_model("group"), options=w2v_embed.EmbedOptions(layers="1", pool="none"))
    for cut in stored:
        feats = cut.load_features()
        assert feats.shape == (compute_num_frames(cut.duration, 0.02, cut.sampling_rate), 32)
        assert cut.features.type == "w2v-embed" and cut.features.frame_shift == 0.02
        frames = reference.embed(cut.load_audio().T, cut.sampling_rate)[1]
        assert len(feats) - len(frames) in (0, 1)
        np.testing.assert_allclose(feats[: len(frames)], frames, atol=1e-6)
        np.testing.assert_array_equal(feats[len(frames) :], np.repeat(frames[-1:], len(feats) - len(frames), axis=0))
    assert {len(c.load_features()) - len(reference.embed(c.load_audio().T, c.sampling_rate)[1]) for c in stored} == {0, 1}


def test_registered_by_name_and_round_trips(onnx_model, tmp_path):
    from lhotse.features.base import FeatureExtractor, get_extractor_type

    import w2v_embed.lhotse as adapter

    assert get_extractor_type("w2v-embed") is adapter.W2VEmbed
    ex = extractor(onnx_model, layer=2)
    ex.to_yaml(tmp_path / "ex.yaml")
    again = FeatureExtractor.from_yaml(tmp_path / "ex.yaml")
    assert isinstance(again, adapter.W2VEmbed) and again.config == ex.config
    signal = noise(1.0, 16000, seed=3)[:, 0]
    first = ex.extract(signal, 16000)
    clone = pickle.loads(pickle.dumps(ex))  # what lhotse's worker processes receive: no model inside
    assert clone._embedder is None
    np.testing.assert_array_equal(clone.extract(signal, 16000), first)
    assert ex.feature_dim(16000) == 32 and first.shape == (50, 32)


def test_one_layer_only(onnx_model):
    from w2v_embed.errors import UsageError

    with pytest.raises(UsageError, match="one layer"):
        extractor(onnx_model, layer="1,2").extract(np.zeros(16000, np.float32), 16000)

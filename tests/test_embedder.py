"""The in-memory engine against the reference model: parity, batching exactness, early exit, chunking."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr

from conftest import VARIANTS, make_checkpoint, reference_states
from w2v_embed.embedder import EmbedOptions, Embedder
from w2v_embed.layers import parse_layers
from w2v_embed.errors import UsageError, W2VEmbedError


def _reference_input(checkpoint: str, x: np.ndarray) -> np.ndarray:
    """What transformers' own feature extractor feeds the model (do_normalize from the checkpoint)."""
    from transformers import Wav2Vec2FeatureExtractor

    extractor = Wav2Vec2FeatureExtractor.from_pretrained(checkpoint)
    return extractor(x, sampling_rate=16_000, return_tensors="np").input_values[0]


@pytest.mark.parametrize("variant", VARIANTS)
def test_unchunked_frames_equal_reference(variant, onnx_model, checkpoint_dir, reference_model):
    rng = np.random.default_rng(5)
    x = (0.3 * rng.standard_normal(40_000) + 0.1).astype(np.float32)
    emb = Embedder(onnx_model(variant), device="cpu", options=EmbedOptions("all", "none", chunk_seconds=0))
    got = emb.embed(x, 16_000)
    ref = reference_states(reference_model(variant), _reference_input(str(checkpoint_dir(variant)), x))
    assert sorted(got) == list(range(len(ref)))
    for k, frames in got.items():
        assert frames.shape == ref[k].shape
        assert np.abs(frames - ref[k]).max() <= 1e-4, k
    pooled = emb.with_options(pool="meanstd").embed(x, 16_000)
    for k in got:
        np.testing.assert_allclose(pooled[k], np.concatenate([ref[k].mean(0), ref[k].std(0)]), atol=1e-4)


def test_same_file_alone_or_in_a_mixed_batch(onnx_model):
    rng = np.random.default_rng(6)
    signals = {f"f{i}": rng.standard_normal(n).astype(np.float32) for i, n in enumerate([9_000, 48_000, 400, 20_001, 33_333])}
    emb = Embedder(onnx_model("group"), device="cpu", options=EmbedOptions("all", "none", batch_size=8))
    together = dict(emb.embed_stream(signals.items()))
    assert sorted(together) == sorted(signals)
    for key, x in signals.items():
        alone = emb.embed(x, 16_000)
        for k in alone:
            assert np.abs(together[key][k] - alone[k]).max() <= 1e-4


def test_early_exit_equals_full_graph(onnx_model):
    x = np.random.default_rng(7).standard_normal(30_000).astype(np.float32)
    full = Embedder(onnx_model("stable"), device="cpu", options=EmbedOptions("all", "none"))
    early = full.with_options(layers="1")
    assert early.layers == (1,)
    np.testing.assert_allclose(early.embed(x, 16_000)[1], full.embed(x, 16_000)[1], atol=1e-6)
    assert 1 in full.model.sessions and full.model.sessions[1] is not full.model.sessions[3]


def test_chunked_long_signal_keeps_frame_count_and_is_close(onnx_model):
    x = np.random.default_rng(8).standard_normal(16_000 * 50 + 123).astype(np.float32)
    whole = Embedder(onnx_model("stable"), device="cpu", options=EmbedOptions("all", "none", chunk_seconds=0))
    chunked = whole.with_options(chunk_seconds=10, context_seconds=2)
    a, b = whole.embed(x, 16_000), chunked.embed(x, 16_000)
    assert a[0].shape[0] == (len(x) - 400) // 320 + 1
    for k in a:
        assert a[k].shape == b[k].shape
    # Layer 0 frames away from chunk edges only see the positional conv window (64 frames).
    np.testing.assert_allclose(a[0][100:400], b[0][100:400], atol=1e-4)


def test_resampling_and_stereo_inputs(onnx_model):
    rng = np.random.default_rng(9)
    x8k = rng.standard_normal(8_000 * 3).astype(np.float32)
    emb = Embedder(onnx_model("group"), device="cpu")
    direct = emb.embed(soxr.resample(x8k, 8_000, 16_000, quality="HQ"), 16_000)
    np.testing.assert_array_equal(emb.embed(x8k, 8_000)["last"], direct["last"])
    stereo = np.stack([x8k, x8k], axis=1)
    np.testing.assert_allclose(emb.embed(stereo, 8_000)["last"], direct["last"], atol=1e-5)


def test_bad_signals_are_per_file_errors(onnx_model):
    emb = Embedder(onnx_model("group"), device="cpu")
    nan = np.ones(16_000, np.float32)
    nan[5] = np.nan
    results = dict(emb.embed_stream([("short", np.ones(399, np.float32)), ("nan", nan), ("ok", np.ones(16_000, np.float32))]))
    assert isinstance(results["short"], W2VEmbedError) and "too short" in str(results["short"])
    assert isinstance(results["nan"], W2VEmbedError) and "NaN" in str(results["nan"])
    assert results["ok"]["last"].shape == (32,)


def test_parse_layers():
    assert parse_layers("last", 12) == ("last",)
    assert parse_layers("all", 2) == (0, 1, 2)
    assert parse_layers("12, 6,6", 12) == (6, 12)
    assert parse_layers("last,2,all", 2) == (0, 1, 2, "last")
    assert parse_layers([-1, "last"], 12) == (12, "last")
    for bad in ("13", "x", "", "last6"):
        with pytest.raises(UsageError):
            parse_layers(bad, 12)


def test_features_that_are_not_finite_fail_that_file(onnx_model, monkeypatch):
    emb = Embedder(onnx_model("group"), device="cpu", options=EmbedOptions("1,2", "mean"))
    run = emb.model.run

    def overflowing(batch, lengths, layers):  # what an overflowing input or a corrupted weight gives
        outputs = run(batch, lengths, layers)
        outputs[2][lengths == 9_000, 3] = np.nan
        return outputs

    monkeypatch.setattr(emb.model, "run", overflowing)
    signals = [("bad", np.ones(9_000, np.float32)), ("good", np.ones(12_000, np.float32))]
    results = dict(emb.embed_stream((k, s.copy()) for k, s in signals))
    assert isinstance(results["bad"], W2VEmbedError)
    assert str(results["bad"]) == "the model's output is not finite (NaN or infinite values in layer 2)"
    assert np.isfinite(results["good"][2]).all()


@pytest.mark.parametrize(
    "change, option",
    [
        *[(dict(chunk_seconds=v), "--chunk-seconds") for v in (float("nan"), float("inf"), -1.0, 0.01)],
        *[(dict(context_seconds=v), "--context-seconds") for v in (float("nan"), float("inf"), -0.5)],
        *[(dict(max_batch_seconds=v), "--max-batch-seconds") for v in (float("nan"), float("inf"), 0.0, -3.0)],
        *[(dict(batch_size=v), "--batch-size") for v in (0, -1)],
    ],
)
def test_bad_option_values_are_usage_errors_naming_the_option(onnx_model, change, option):
    emb = Embedder(onnx_model("group"), device="cpu")
    with pytest.raises(UsageError, match=f"^{option} "):
        emb.with_options(**change)


def test_long_frame_level_files_are_streamed_and_equal_held_ones(onnx_model, tmp_path, monkeypatch):
    """Frames of a file over STREAM_FRAMES_BYTES go to the writer chunk by chunk: same output, bit for bit."""
    import w2v_embed
    import w2v_embed.embedder as embedder_module
    from w2v_embed.discover import discover
    from w2v_embed.extract import ExtractOptions, extract

    rng = np.random.default_rng(12)
    for i, seconds in enumerate((23.0, 7.0)):
        sf.write(tmp_path / f"a{i}.wav", rng.uniform(-0.5, 0.5, int(16_000 * seconds)).astype(np.float32), 16_000)
    emb = Embedder(onnx_model("group"), device="cpu", options=EmbedOptions("all", "none", chunk_seconds=5))
    files = discover([str(tmp_path / "a0.wav"), str(tmp_path / "a1.wav")])
    extract(files, tmp_path / "held.h5", emb, ExtractOptions())
    written = []
    monkeypatch.setattr(embedder_module, "STREAM_FRAMES_BYTES", 0)
    from w2v_embed.store import writer as writer_module

    original = writer_module.FeatureWriter.write_frames
    monkeypatch.setattr(writer_module.FeatureWriter, "write_frames",
                        lambda self, name, layer, start, frames, n: (written.append(len(frames)), original(self, name, layer, start, frames, n)))
    extract(files, tmp_path / "streamed.h5", emb, ExtractOptions())
    assert written and max(written) < 23 * 50  # chunks, not whole files
    held, streamed = w2v_embed.load(tmp_path / "held.h5", layer=2), w2v_embed.load(tmp_path / "streamed.h5", layer=2)
    assert held.keys() == streamed.keys()
    for name in held:
        np.testing.assert_array_equal(held[name], streamed[name])


def test_default_context_covers_the_positional_conv(tmp_path):
    """wav2vec2's positional conv spans 128 frames (±1.28 s): the default 1.5 s of context gives every
    kept frame its whole window, so layer 0 of a layer-norm model is exact at chunk edges too (1 s is not)."""
    from w2v_embed.export import ExportOptions, export_model  # imports torch: only this test needs it

    checkpoint = make_checkpoint(tmp_path / "ckpt", "stable", num_conv_pos_embeddings=128)
    model = export_model(str(checkpoint), ExportOptions(output=tmp_path / "pos128.onnx")).path
    x = np.random.default_rng(12).standard_normal(16_000 * 45).astype(np.float32)
    whole = Embedder(model, device="cpu", options=EmbedOptions((0,), "none", chunk_seconds=0)).embed(x, 16_000)[0]
    default = Embedder(model, device="cpu", options=EmbedOptions((0,), "none"))
    np.testing.assert_allclose(default.embed(x, 16_000)[0], whole, atol=1e-4)
    short = default.with_options(context_seconds=1.0).embed(x, 16_000)[0]
    assert np.abs(short - whole).max() > 1e-3  # the premise: a shorter context does change edge frames

"""w2v-BERT 2.0 (wav2vec2-bert): export a tiny random-weight Wav2Vec2BertForCTC, then extract through the
numpy fbank front end; every result is checked against transformers' SeamlessM4TFeatureExtractor +
Wav2Vec2BertModel on each clip alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import w2v_embed
from w2v_embed.embedder import Embedder, EmbedOptions
from w2v_embed.errors import W2VEmbedError

TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, output_hidden_size=32,
            left_max_position_embeddings=8, right_max_position_embeddings=4, conv_depthwise_kernel_size=5, vocab_size=12)


def make_w2v_bert_checkpoint(folder: Path, **overrides: object) -> Path:
    """Saved as fine-tunes are (ForCTC, lm_head included), LayerNorms away from identity, and the
    published preprocessor config (SeamlessM4TFeatureExtractor, padding_value 1)."""
    import torch
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertForCTC

    torch.manual_seed(0)
    model = Wav2Vec2BertForCTC(Wav2Vec2BertConfig(**{**TINY, **overrides})).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
    model.save_pretrained(folder)
    SeamlessM4TFeatureExtractor(padding_value=1.0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """(checkpoint folder, exported model path); the export verifies against transformers itself."""
    from w2v_embed.export import ExportOptions, export_model

    folder = make_w2v_bert_checkpoint(tmp_path_factory.mktemp("w2v-bert"))
    result = export_model(str(folder), ExportOptions(output=folder.parent / "w2v-bert.onnx"))
    assert result.report.ok and result.info.frontend == "fbank" and result.info.model_type == "wav2vec2-bert"
    return folder, result.path


@pytest.fixture(scope="module")
def reference(bert):
    """clip -> {layer: frames} from transformers' own pipeline on that clip alone."""
    import torch
    from transformers import AutoFeatureExtractor, AutoModel

    extractor = AutoFeatureExtractor.from_pretrained(bert[0])
    model = AutoModel.from_pretrained(bert[0]).eval()
    assert type(model).__name__ == "Wav2Vec2BertModel"

    def states(x: np.ndarray) -> dict:
        inputs = extractor(x, sampling_rate=16_000, return_tensors="pt")
        valid = int(inputs["attention_mask"].sum())
        with torch.no_grad():
            out = model(**inputs, output_hidden_states=True)
        got = {k: h[0, :valid].numpy() for k, h in enumerate(out.hidden_states)}
        return {**got, "last": out.last_hidden_state[0, :valid].numpy()}

    return states


def _clips() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [(0.3 * rng.standard_normal(n) + 0.05).astype(np.float32) for n in (23_456, 40_000)]


def test_two_clips_in_one_padded_batch_equal_transformers_on_each_alone(bert, reference, monkeypatch):
    emb = Embedder(bert[1], device="cpu", options=EmbedOptions("all", "none", chunk_seconds=0))
    assert emb.frontend.name == "fbank" and emb.layers == (0, 1, 2, 3)
    batches = []
    run = emb.model.run
    monkeypatch.setattr(emb.model, "run", lambda x, n, layers: batches.append((x.shape, list(n))) or run(x, n, layers))
    clips = _clips()
    got = emb.embed_batch(clips, 16_000)
    assert batches == [((2, 124, 160), [124, 72])]  # one padded batch of stacked fbank rows, longest first
    last = emb.with_options(layers="last").embed_batch(clips, 16_000)
    for clip, ours, ours_last in zip(clips, got, last):
        ref = reference(clip)
        for k in range(4):
            assert ours[k].shape == ref[k].shape
            assert np.abs(ours[k] - ref[k]).max() <= 1e-4, k
        assert np.abs(ours_last["last"] - ref["last"]).max() <= 1e-4


def test_pooling_and_windows_equal_pooled_reference_frames(bert, reference):
    clip = _clips()[0]
    ref = reference(clip)["last"]
    emb = Embedder(bert[1], device="cpu", options=EmbedOptions("last", "meanstd"))
    np.testing.assert_allclose(emb.embed(clip, 16_000)["last"], np.concatenate([ref.mean(0), ref.std(0)]), atol=1e-4)
    windows = emb.with_options(pool="mean", window_seconds=0.5, hop_seconds=0.25).embed(clip, 16_000)["last"]
    centres = 0.0175 + np.arange(len(ref)) * 0.02  # stacked row j covers samples [320 j, 320 j + 560)
    starts = np.arange(0.0, centres[-1] + 1e-9, 0.25)
    want = [ref[(centres >= s - 1e-9) & (centres < s + 0.5 - 1e-9)].mean(0) for s in starts]
    np.testing.assert_allclose(windows, np.stack(want), atol=1e-4)


def test_chunked_long_file_uses_the_whole_files_statistics(bert, reference):
    """Chunks cut the whole file's normalised rows (test_frontends checks the rows), so hidden state 0 is
    the unchunked one and only the encoder's attention context differs deeper (as for waveform models)."""
    x = (0.3 * np.random.default_rng(12).standard_normal(16_000 * 6)).astype(np.float32)
    emb = Embedder(bert[1], device="cpu", options=EmbedOptions("all", "none", chunk_seconds=0))
    whole = emb.embed(x, 16_000)
    chunked = emb.with_options(chunk_seconds=1.0, context_seconds=1.0).embed(x, 16_000)
    ref = reference(x)
    for k in whole:
        assert chunked[k].shape == whole[k].shape == ref[k].shape
        assert np.abs(whole[k] - ref[k]).max() <= 1e-4
    assert np.abs(chunked[0] - whole[0]).max() <= 1e-5
    cos = (chunked[3] * whole[3]).sum(1) / np.linalg.norm(chunked[3], axis=1) / np.linalg.norm(whole[3], axis=1)
    assert cos.min() > 0.99


def test_a_file_shorter_than_one_row_fails_clearly(bert):
    emb = Embedder(bert[1], device="cpu")
    with pytest.raises(W2VEmbedError, match="too short: 559 samples.*at least 560"):
        emb.embed(np.zeros(559, np.float32), 16_000)
    with pytest.raises(W2VEmbedError, match="signal 1: too short"):
        emb.embed_batch([np.zeros(1000, np.float32), np.zeros(100, np.float32)], 16_000)


def test_cli_extract_of_segments_equals_each_segment_alone_and_never_imports_torch(bert, reference, tmp_path):
    x = (0.3 * np.random.default_rng(13).standard_normal(16_000 * 4)).astype(np.float32)
    wav = tmp_path / "rec.wav"
    sf.write(wav, x, 16_000, subtype="FLOAT")
    (tmp_path / "s.tsv").write_text(f"path\tstart\tend\tid\n{wav}\t0.5\t2.25\ta\n{wav}\t1\t4\tb\n")
    code = ("import runpy, sys; sys.argv = ['w2v-embed', 'extract', '-m', sys.argv[1], '--segments', sys.argv[2], "
            "'-o', sys.argv[3]]\ntry:\n    runpy.run_module('w2v_embed', run_name='__main__')\nexcept SystemExit as e:\n"
            "    print('exit', e.code, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(bert[1]), str(tmp_path / "s.tsv"), str(tmp_path / "o.h5")],
                          capture_output=True, text=True)
    assert "exit 0 False" in proc.stdout, proc.stderr
    names, got = w2v_embed.load(tmp_path / "o.h5")
    for name, (start, end) in (("a", (0.5, 2.25)), ("b", (1.0, 4.0))):
        ref = reference(x[int(start * 16_000) : int(end * 16_000)])["last"].mean(0)
        np.testing.assert_allclose(got[names.index(name)], ref, atol=1e-4)


def test_an_adapter_is_refused_by_name(tmp_path):
    from w2v_embed.export import ExportOptions, export_model

    folder = make_w2v_bert_checkpoint(tmp_path / "ck", add_adapter=True, num_adapter_layers=1)
    with pytest.raises(W2VEmbedError, match="adapter"):
        export_model(str(folder), ExportOptions(output=tmp_path / "m.onnx"))


@pytest.mark.parametrize(("field", "value"), [("num_mel_bins", 128), ("stride", 3), ("sampling_rate", 8000)])
def test_a_feature_extractor_unlike_the_fbank_front_end_is_refused(tmp_path, field, value):
    """The front end computes SeamlessM4TFeatureExtractor's defaults; a checkpoint whose own feature
    extractor differs would be verified against the defaults and fed the wrong features."""
    import json

    from w2v_embed.export import ExportOptions, export_model

    folder = make_w2v_bert_checkpoint(tmp_path / "ck")
    config = folder / "preprocessor_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), field: value}))
    with pytest.raises(W2VEmbedError, match=rf"preprocessor_config\.json: {field} {value}, but w2v-embed feeds"):
        export_model(str(folder), ExportOptions(output=tmp_path / "m.onnx", verify=False))

"""HuBERT, WavLM and data2vec-audio: the same contract as wav2vec2, exact to transformers' own models.

Each family and variant is a tiny random-weight checkpoint with the real architecture, saved as
training scripts save it (ForCTC heads for HuBERT and data2vec-audio, bare for WavLM) and loaded by
transformers itself as the reference (HubertModel, WavLMModel, Data2VecAudioModel).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import FAMILY_VARIANTS
from w2v_embed.batching import pad_batch
from w2v_embed.embedder import EmbedOptions, Embedder
from w2v_embed.export import ExportOptions, export_model
from w2v_embed.export.verify import cosine_rows
from w2v_embed.runtime import OnnxModel


def _reference(model, x: np.ndarray) -> dict:
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(x[None]), output_hidden_states=True)
    return {**{k: h[0].numpy() for k, h in enumerate(out.hidden_states)}, "last": out.last_hidden_state[0].numpy()}


@pytest.mark.parametrize("family,variant", FAMILY_VARIANTS)
def test_every_layer_matches_the_reference_alone_and_padded(family, variant, onnx_model, reference_model):
    model = OnnxModel(onnx_model(variant, family), device="cpu")
    info = model.info
    assert info.model_type == family and info.grid.hop == 320 and info.grid.receptive_field == 400
    layers = [*range(info.num_layers + 1), "last"]
    rng = np.random.default_rng(21)
    signals = [rng.standard_normal(n).astype(np.float32) for n in (30_000, 7_777, 16_000)]
    batch, lengths = pad_batch(signals)
    together = model.run(batch, lengths, layers)
    worst = 0.0
    for i, x in enumerate(signals):
        ref = _reference(reference_model(variant, family), x)
        assert len(ref) == len(layers)  # transformers' numbering: L + 1 hidden states, then last
        alone = model.run(x[None], [len(x)], layers)
        for k in layers:
            frames = ref[k].shape[0]
            worst = max(worst, np.abs(alone[k][0] - ref[k]).max(), np.abs(together[k][i, :frames] - ref[k]).max())
    assert worst <= 1e-4, worst


@pytest.mark.parametrize("family,variant", FAMILY_VARIANTS)
def test_export_verifies_and_records_the_family(family, variant, checkpoint_dir, tmp_path):
    result = export_model(str(checkpoint_dir(variant, family)), ExportOptions(output=tmp_path / "m.onnx"))
    assert result.report.ok and result.report.max_abs_diff <= 1e-4
    assert [r.layer for r in result.report.layers][-1] == "last"
    assert result.info.model_type == family
    assert result.info.do_stable_layer_norm == (variant == "stable")
    assert result.info.feat_extract_norm == ("group" if variant == "group" else "layer")


@pytest.mark.parametrize("family", ["hubert", "wavlm", "data2vec-audio"])
def test_early_exit_chunking_and_pooling(family, onnx_model):
    variant = dict(FAMILY_VARIANTS)[family] if family == "data2vec-audio" else "group"
    path = onnx_model(variant, family)
    x = np.random.default_rng(22).standard_normal(16_000 * 9 + 77).astype(np.float32)
    whole = Embedder(path, device="cpu", options=EmbedOptions("all", "none", chunk_seconds=0)).embed(x, 16_000)
    early = Embedder(path, device="cpu", options=EmbedOptions((1,), "none", chunk_seconds=0)).embed(x, 16_000)
    np.testing.assert_allclose(early[1], whole[1], atol=1e-5)
    chunked = Embedder(path, device="cpu", options=EmbedOptions("all", "none", chunk_seconds=3, context_seconds=1))
    frames = chunked.embed(x, 16_000)
    for k in whole:
        assert frames[k].shape == whole[k].shape
        assert cosine_rows(frames[k], whole[k]).mean() > 0.99
    for pool, reduce in (("mean", lambda a: a.mean(0)), ("max", lambda a: a.max(0)),
                         ("meanstd", lambda a: np.concatenate([a.mean(0), a.std(0)]))):
        pooled = Embedder(path, device="cpu", options=EmbedOptions("all", pool, chunk_seconds=0)).embed(x, 16_000)
        for k in whole:
            np.testing.assert_allclose(pooled[k], reduce(whole[k]), atol=1e-5)


@pytest.mark.parametrize("family,quantize", [("hubert", "int8"), ("wavlm", "fp16"), ("data2vec-audio", "int8"),
                                             ("wavlm", "int8")])
def test_reduced_precision(family, quantize, checkpoint_dir, tmp_path):
    variant = "layer" if family == "data2vec-audio" else "stable"
    result = export_model(str(checkpoint_dir(variant, family)),
                          ExportOptions(output=tmp_path / "q.onnx", quantize=quantize, min_cosine=0.99))
    assert result.quantization.ok and result.info.model_type == family


@pytest.mark.parametrize("family,variant", [("wavlm", "stable"), ("data2vec-audio", "layer")])
def test_cli_export_then_extract(family, variant, checkpoint_dir, reference_model, tmp_path):
    import w2v_embed

    model = tmp_path / "m.onnx"
    run = [sys.executable, "-m", "w2v_embed"]
    proc = subprocess.run([*run, "export", str(checkpoint_dir(variant, family)), "-o", str(model)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    x = np.random.default_rng(23).uniform(-0.5, 0.5, 24_000).astype(np.float32)
    sf.write(tmp_path / "a.wav", x, 16_000, subtype="FLOAT")
    proc = subprocess.run([*run, "extract", str(tmp_path / "a.wav"), "-o", str(tmp_path / "f.h5"), "-m", str(model),
                           "--layers", "1,last"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    info = OnnxModel(model, device="cpu").info
    signal = (x - x.mean()) / np.sqrt(x.var() + 1e-7) if info.do_normalize else x
    ref = _reference(reference_model(variant, family), signal.astype(np.float32))
    for layer in (1, "last"):
        _, pooled = w2v_embed.load(tmp_path / "f.h5", layer=layer)
        np.testing.assert_allclose(pooled[0], ref[layer].mean(0), atol=1e-4)

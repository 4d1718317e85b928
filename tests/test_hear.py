"""w2v_embed.hear: the HEAR 2021 API, checked by hear-validator itself (in a subprocess, as CI runs
it) and by the API's contract directly."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("hearvalidator") is None, reason="hear-validator is not installed")
def test_hear_validator_passes(onnx_model):
    paths = [str(ROOT / "src")]
    if importlib.util.find_spec("tensorflow") is None:  # hear-validator imports it; our model is a torch Module
        paths.append(str(ROOT / "tests" / "stubs"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "hearvalidator.validate", "w2v_embed.hear", "--model", str(onnx_model("group")), "--device", "cpu"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Looks good!" in result.stdout


def test_api_contract(onnx_model, monkeypatch):
    import w2v_embed
    from w2v_embed import hear

    monkeypatch.setenv("W2V_EMBED_LAYER", "2")
    model = hear.load_model(str(onnx_model("group")))
    assert isinstance(model, torch.nn.Module)
    assert (model.sample_rate, model.scene_embedding_size, model.timestamp_embedding_size) == (16000, 32, 32)
    audio = torch.rand((3, 16000)) * 2 - 1
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    assert emb.dtype == torch.float32 and emb.shape == (3, 49, 32) and ts.shape == (3, 49)
    np.testing.assert_allclose(ts[0].numpy(), 12.5 + 20.0 * np.arange(49))  # frame centres, ms
    reference = w2v_embed.Embedder(onnx_model("group"), options=w2v_embed.EmbedOptions(layers="2", pool="none"))
    for i in range(3):  # each sound as if embedded alone: batching changes nothing
        np.testing.assert_allclose(emb[i].numpy(), reference.embed(audio[i].numpy(), 16000)[2], atol=1e-5)
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.dtype == torch.float32 and scene.shape == (3, 32)
    np.testing.assert_allclose(scene.numpy(), emb.numpy().mean(axis=1), atol=1e-6)
    last = hear.load_model(str(onnx_model("group")), layer="last")
    np.testing.assert_allclose(
        hear.get_timestamp_embeddings(audio[:1], last)[0][0].numpy(), reference.with_options(layers="last").embed(audio[0].numpy(), 16000)["last"], atol=1e-5
    )


def test_import_does_not_import_torch():
    code = "import sys, w2v_embed.hear; assert 'torch' not in sys.modules, 'torch imported'"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)

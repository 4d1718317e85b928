"""Shared fixtures: tiny random-weight checkpoints with the real architecture, exported once per session."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("group", "stable")
# (family, variant) of the other families, each as its published checkpoints are built.
FAMILY_VARIANTS = [("hubert", "group"), ("hubert", "stable"), ("wavlm", "group"), ("wavlm", "stable"),
                   ("data2vec-audio", "layer")]
# Families and variants of issue 20, each saved with its real class and heads, away from identity
# (scripts/make_tiny_checkpoint.py): MMS adapters, mHuBERT 25 Hz, conformers, UniSpeech(-SAT).
MORE_FAMILY_VARIANTS = [("wav2vec2", "mms"), ("hubert", "25hz"), ("wav2vec2-conformer", "relative"),
                        ("wav2vec2-conformer", "rotary"), ("unispeech-sat", "group"), ("unispeech-sat", "stable"),
                        ("unispeech", "stable")]


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


make_checkpoint = _load_script("make_tiny_checkpoint").make_checkpoint


@pytest.fixture(scope="session", autouse=True)
def runtime_cache(tmp_path_factory):
    """Runtimes cache compiled graphs (runtime/cache.py): the tests' go to a folder of their own, not ~/.cache."""
    patch = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("runtime-cache")
    patch.setenv("W2V_EMBED_CACHE", str(folder))
    yield folder
    patch.undo()


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory):
    """variant[, family] -> folder of a tiny checkpoint (safetensors); wav2vec2: Wav2Vec2ForPreTraining."""
    cache: dict[tuple[str, str], Path] = {}

    def get(variant: str, family: str = "wav2vec2") -> Path:
        if (variant, family) not in cache:
            folder = tmp_path_factory.mktemp(f"ckpt-{family}-{variant}")
            cache[variant, family] = make_checkpoint(folder, variant, family=family)
        return cache[variant, family]

    return get


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory, checkpoint_dir):
    """variant[, family] -> exported (and verified) ONNX model path."""
    from w2v_embed.export import ExportOptions, export_model

    cache: dict[tuple[str, str], Path] = {}

    def get(variant: str, family: str = "wav2vec2") -> Path:
        if (variant, family) not in cache:
            out = tmp_path_factory.mktemp(f"onnx-{family}-{variant}") / f"tiny-{family}-{variant}.onnx"
            cache[variant, family] = export_model(str(checkpoint_dir(variant, family)), ExportOptions(output=out)).path
        return cache[variant, family]

    return get


@pytest.fixture(scope="session")
def reference_model(checkpoint_dir):
    """variant[, family] -> the transformers base model (Wav2Vec2Model, HubertModel …, the reference
    implementation), loaded by transformers itself from the same checkpoint."""
    from transformers import AutoModel

    cache = {}

    def get(variant: str, family: str = "wav2vec2"):
        if (variant, family) not in cache:
            cache[variant, family] = AutoModel.from_pretrained(checkpoint_dir(variant, family)).eval()
        return cache[variant, family]

    return get


def reference_states(model, samples: np.ndarray) -> list[np.ndarray]:
    """transformers' hidden states of one unpadded signal: list of [frames, hidden]."""
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(np.asarray(samples, np.float32)[None]), output_hidden_states=True)
    return [h[0].numpy() for h in out.hidden_states]

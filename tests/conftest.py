"""Shared fixtures: tiny random-weight checkpoints with the real architecture, exported once per session."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("group", "stable")


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


make_checkpoint = _load_script("make_tiny_checkpoint").make_checkpoint


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory):
    """variant -> folder of a tiny Wav2Vec2ForPreTraining checkpoint (safetensors)."""
    cache: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in cache:
            cache[variant] = make_checkpoint(tmp_path_factory.mktemp(f"ckpt-{variant}"), variant)
        return cache[variant]

    return get


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory, checkpoint_dir):
    """variant -> exported (and verified) ONNX model path."""
    from w2v_embed.export import ExportOptions, export_model

    cache: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in cache:
            out = tmp_path_factory.mktemp(f"onnx-{variant}") / f"tiny-{variant}.onnx"
            cache[variant] = export_model(str(checkpoint_dir(variant)), ExportOptions(output=out)).path
        return cache[variant]

    return get


@pytest.fixture(scope="session")
def reference_model(checkpoint_dir):
    """variant -> transformers Wav2Vec2Model (the reference implementation) with the same weights."""
    from transformers import Wav2Vec2Model

    cache = {}

    def get(variant: str):
        if variant not in cache:
            cache[variant] = Wav2Vec2Model.from_pretrained(checkpoint_dir(variant)).eval()
        return cache[variant]

    return get


def reference_states(model, samples: np.ndarray) -> list[np.ndarray]:
    """transformers' hidden states of one unpadded signal: list of [frames, hidden]."""
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(np.asarray(samples, np.float32)[None]), output_hidden_states=True)
    return [h[0].numpy() for h in out.hidden_states]

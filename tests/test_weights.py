"""Weights readers: every format written by the real implementations reads back to the reference state dict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining, Wav2Vec2Model

from conftest import ROOT, make_checkpoint
from w2v_embed.errors import W2VEmbedError
from w2v_embed.weights import find_weights, read_state_dict

FIXTURES = ROOT / "tests" / "fixtures" / "checkpoints"
OPTIONAL = {"masked_spec_embed"}


def _expected(folder: Path) -> dict[str, np.ndarray]:
    model = Wav2Vec2ForPreTraining.from_pretrained(folder).wav2vec2
    return {k: v.numpy() for k, v in model.state_dict().items()}


def _assert_same(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert set(expected) - set(got) <= OPTIONAL
    assert set(got) <= set(expected)
    for key, value in got.items():
        assert value.dtype == np.float32 and value.shape == expected[key].shape, key
        np.testing.assert_array_equal(value, expected[key], err_msg=key)


@pytest.mark.parametrize("variant", ["group", "stable"])
def test_safetensors_from_pretraining_checkpoint(checkpoint_dir, variant):
    folder = checkpoint_dir(variant)
    _assert_same(read_state_dict(find_weights(folder)), _expected(folder))


def test_pytorch_bin_with_old_weight_norm_names(tmp_path):
    folder = make_checkpoint(tmp_path / "ck", "group", fmt="bin")
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    renamed = {}
    for key, value in state.items():
        key = key.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v")
        key = key.replace("layer_norm.weight", "layer_norm.gamma").replace("layer_norm.bias", "layer_norm.beta")
        renamed[key] = value
    torch.save(renamed, folder / "pytorch_model.bin")
    got = read_state_dict(find_weights(folder))
    reference = {k.removeprefix("wav2vec2."): v.numpy() for k, v in state.items() if k.startswith("wav2vec2.")}
    _assert_same(got, reference)


def test_sharded_safetensors(tmp_path):
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    torch.manual_seed(0)
    model = Wav2Vec2Model(config)
    model.save_pretrained(tmp_path, max_shard_size="30KB")
    files = find_weights(tmp_path)
    assert len(files) > 1 and (tmp_path / "model.safetensors.index.json").exists()
    _assert_same(read_state_dict(files), {k: v.numpy() for k, v in model.state_dict().items()})
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    missing = sorted(set(index["weight_map"].values()))[-1]
    (tmp_path / missing).unlink()
    with pytest.raises(W2VEmbedError, match=missing):
        find_weights(tmp_path)


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin", "flax_model.msgpack", "tf_model.h5"])
def test_truncated_file_names_the_file(tmp_path, name):
    source = {
        "model.safetensors": None,
        "pytorch_model.bin": None,
        "flax_model.msgpack": FIXTURES / "stable-flax" / "flax_model.msgpack",
        "tf_model.h5": FIXTURES / "group-tf" / "tf_model.h5",
    }[name]
    if source is None:
        folder = make_checkpoint(tmp_path / "ck", "group", fmt="bin" if name.endswith(".bin") else "safetensors")
        source = folder / name
    data = source.read_bytes()
    broken = tmp_path / "broken" / name
    broken.parent.mkdir()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(W2VEmbedError) as info:
        read_state_dict([broken])
    assert name in str(info.value) and "\n" not in str(info.value)


def test_folder_without_weights(tmp_path):
    with pytest.raises(W2VEmbedError, match="no weights found"):
        find_weights(tmp_path)


@pytest.mark.parametrize("fixture", ["stable-flax", "stable-nobias-flax", "group-tf", "stable-tf"])
def test_real_flax_and_tf_files_read_like_transformers_converted_them(fixture):
    folder = FIXTURES / fixture
    expected = dict(np.load(folder / "expected_state_dict.npz"))
    got = read_state_dict(find_weights(folder))
    config = Wav2Vec2Config.from_pretrained(folder)
    keys = set(Wav2Vec2Model(config).state_dict())
    assert keys - set(got) <= OPTIONAL and set(got) <= keys
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-7, err_msg=key)
    assert set(expected) - OPTIONAL == set(got) - OPTIONAL

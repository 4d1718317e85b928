"""Weights readers: every format written by the real implementations reads back to the reference state dict.

The Flax and TF files under tests/fixtures/checkpoints were written by transformers 4.x's own Flax/TF
models (scripts/make_format_fixtures.py); their expected state dicts are what transformers 4.x made of
them with from_flax/from_tf. PyTorch formats are written here by transformers 5 itself.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining, Wav2Vec2Model

from conftest import ROOT
from w2v_embed.errors import W2VEmbedError
from w2v_embed.export.weights import WEIGHT_FILES, find_weights, read_state_dict

FIXTURES = ROOT / "tests" / "fixtures" / "checkpoints"
OPTIONAL = {"masked_spec_embed"}
G = "encoder.pos_conv_embed.conv.parametrizations.weight.original0"
V = "encoder.pos_conv_embed.conv.parametrizations.weight.original1"
# fixture folder -> folder whose expected_state_dict.npz it must read to (other layouts of the same model)
REAL = {
    "stable-flax": "stable-flax",  # FlaxWav2Vec2ForPreTraining: wav2vec2/ prefix + quantizer, project_hid, project_q
    "stable-nobias-flax": "stable-nobias-flax",
    "stable-nobias-flax-sharded": "stable-nobias-flax",
    "stable-nobias-flax-safetensors": "stable-nobias-flax",  # metadata format "flax", dotted Flax names
    "group-tf": "group-tf",  # TFWav2Vec2ForCTC
    "group-tf-sharded": "group-tf",  # shards list datasets in layer_names, no weight_names
    "group-tf-safetensors": "group-tf",  # metadata format "tf", TF names
    "stable-tf": "stable-tf",
}
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)


def _to_5x_names(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """transformers 4.x with an old torch named the weight norm weight_g/weight_v."""
    out = {}
    for key, value in state.items():
        if key.endswith("pos_conv_embed.conv.weight_g"):
            key, value = G, value.reshape(1, 1, -1)
        elif key.endswith("pos_conv_embed.conv.weight_v"):
            key = V
        out[key] = value
    return out


def _assert_same(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], atol: float = 0.0) -> None:
    assert set(expected) - set(got) <= OPTIONAL, set(expected) - set(got)
    assert set(got) <= set(expected), set(got) - set(expected)
    for key, value in got.items():
        assert value.dtype == np.float32 and value.shape == expected[key].shape, key
        assert value.flags.writeable and value.flags.c_contiguous, key  # torch.from_numpy without a copy or warning
        np.testing.assert_allclose(value, expected[key], rtol=0, atol=atol, err_msg=key)


def _assert_loads_into_5x(got: dict[str, np.ndarray], config: Wav2Vec2Config) -> None:
    """The caller loads with strict key/shape checks: same keys as transformers 5's Wav2Vec2Model."""
    model = Wav2Vec2Model(config)
    keys = set(model.state_dict())
    assert keys - set(got) <= OPTIONAL and set(got) <= keys
    result = model.load_state_dict({k: torch.from_numpy(v) for k, v in got.items()}, strict=False)
    assert set(result.missing_keys) <= OPTIONAL and not result.unexpected_keys


def _state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _tiny_pretraining(seed: int = 0, **overrides: object) -> Wav2Vec2ForPreTraining:
    torch.manual_seed(seed)
    config = Wav2Vec2Config(**{**TINY, **overrides}, num_codevectors_per_group=8, codevector_dim=16,
                            proj_codevector_dim=16)
    return Wav2Vec2ForPreTraining(config).eval()


# --- real Flax / TF files --------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", sorted(REAL))
def test_real_flax_and_tf_files_read_like_transformers_converted_them(fixture):
    folder = FIXTURES / fixture
    expected = _to_5x_names(dict(np.load(FIXTURES / REAL[fixture] / "expected_state_dict.npz")))
    got = read_state_dict(find_weights(folder))
    _assert_same(got, expected, atol=1e-6)
    assert set(expected) - OPTIONAL == set(got) - OPTIONAL
    _assert_loads_into_5x(got, Wav2Vec2Config.from_pretrained(folder))


def test_fixture_layouts_are_what_they_claim():
    assert [p.name for p in find_weights(FIXTURES / "stable-flax")] == ["flax_model.msgpack"]
    assert [p.name for p in find_weights(FIXTURES / "group-tf")] == ["tf_model.h5"]
    shards = find_weights(FIXTURES / "group-tf-sharded")
    assert len(shards) > 1 and shards == sorted(shards) and all(p.suffix == ".h5" for p in shards)
    assert len(find_weights(FIXTURES / "stable-nobias-flax-sharded")) > 1


# --- PyTorch formats written by transformers 5 ------------------------------------------------------


@pytest.mark.parametrize("variant", ["group", "stable"])
def test_safetensors_from_pretraining_checkpoint(checkpoint_dir, variant):
    folder = checkpoint_dir(variant)
    assert [p.name for p in find_weights(folder)] == ["model.safetensors"]
    got = read_state_dict(find_weights(folder))
    _assert_same(got, _state(Wav2Vec2ForPreTraining.from_pretrained(folder).wav2vec2))
    _assert_loads_into_5x(got, Wav2Vec2Config.from_pretrained(folder))


def test_pytorch_bin_of_pretraining_model(tmp_path):
    model = _tiny_pretraining()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    got = read_state_dict(find_weights(tmp_path))
    _assert_same(got, _state(model.wav2vec2))
    _assert_loads_into_5x(got, model.config)


def test_safetensors_wins_over_bin_and_flax(tmp_path):
    model = _tiny_pretraining()
    model.save_pretrained(tmp_path)
    for name in ("pytorch_model.bin", "flax_model.msgpack"):
        (tmp_path / name).write_bytes(b"not read")
    assert [p.name for p in find_weights(tmp_path)] == ["model.safetensors"]


def test_pytorch_bin_with_old_weight_norm_names(tmp_path):
    model = _tiny_pretraining(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
    renamed = {}
    for key, value in model.state_dict().items():
        key = key.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v")
        key = key.replace("layer_norm.weight", "layer_norm.gamma").replace("layer_norm.bias", "layer_norm.beta")
        renamed[key] = value
    assert any(k.endswith("conv.weight_g") for k in renamed) and any(k.endswith(".gamma") for k in renamed)
    torch.save(renamed, tmp_path / "pytorch_model.bin")
    _assert_same(read_state_dict(find_weights(tmp_path)), _state(model.wav2vec2))


def test_pos_conv_weight_without_weight_norm_is_split_into_g_and_v(tmp_path):
    model = Wav2Vec2Model(Wav2Vec2Config(**TINY)).eval()
    state = _state(model)
    effective = model.encoder.pos_conv_embed.conv.weight.detach().numpy()  # g * v / ||v||
    state = {k: v for k, v in state.items() if k not in (G, V)} | {"encoder.pos_conv_embed.conv.weight": effective}
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "pytorch_model.bin")
    got = read_state_dict(find_weights(tmp_path))
    _assert_loads_into_5x(got, model.config)
    fresh = Wav2Vec2Model(model.config)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in got.items()})
    np.testing.assert_allclose(fresh.encoder.pos_conv_embed.conv.weight.detach().numpy(), effective, atol=1e-6)


def test_bfloat16_safetensors_without_torch_path(tmp_path):
    from safetensors.torch import save_file

    model = Wav2Vec2Model(Wav2Vec2Config(**TINY))
    state = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    got = read_state_dict(find_weights(tmp_path))
    _assert_same(got, {k: v.float().numpy() for k, v in state.items()})


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_sharded_pytorch_checkpoints(tmp_path, fmt):
    model = _tiny_pretraining()
    if fmt == "safetensors":
        model.save_pretrained(tmp_path, max_shard_size="20KB")
        index = tmp_path / "model.safetensors.index.json"
    else:  # as transformers 4.x wrote them with safe_serialization=False
        items = list(model.state_dict().items())
        weight_map = {}
        parts = [items[i : i + 20] for i in range(0, len(items), 20)]
        for n, part in enumerate(parts, 1):
            name = f"pytorch_model-{n:05d}-of-{len(parts):05d}.bin"
            torch.save(dict(part), tmp_path / name)
            weight_map |= {k: name for k, _ in part}
        index = tmp_path / "pytorch_model.bin.index.json"
        index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    files = find_weights(tmp_path)
    assert len(files) > 1 and index.is_file() and files == sorted(files)
    _assert_same(read_state_dict(files), _state(model.wav2vec2))
    _assert_same(read_state_dict([index]), _state(model.wav2vec2))  # the index in place of its shards


# --- Flax msgpack details that a tiny model does not show ----------------------------------------------


def _flax_ext(array: np.ndarray, code: int = 1):
    import msgpack

    return msgpack.ExtType(code, msgpack.packb((list(array.shape), array.dtype.name, array.tobytes("C"))))


def test_flax_chunked_arrays_and_scalars(tmp_path):
    """flax.serialization splits arrays over 2**30 bytes into `__msgpack_chunked_array__` dicts."""
    import msgpack

    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((16, 32)).astype(np.float32)  # Dense [in, out]
    flat = kernel.reshape(-1)
    chunked = {"__msgpack_chunked_array__": True, "shape": {"0": 16, "1": 32},
               "chunks": {"0": _flax_ext(flat[:300]), "1": _flax_ext(flat[300:])}}
    tree = {"params": {"feature_projection": {"projection": {"kernel": chunked, "bias": _flax_ext(np.ones(32, np.float32))}},
                       "encoder": {"layer_norm": {"scale": _flax_ext(np.full(32, 2, np.float32))},
                                   "step": _flax_ext(np.array(3, np.int32), code=3)},
                       "note": "text leaves are ignored", "c": msgpack.ExtType(2, msgpack.packb((1.0, 2.0)))}}
    path = tmp_path / "flax_model.msgpack"
    path.write_bytes(msgpack.packb(tree, use_bin_type=True))
    got = read_state_dict([path])
    assert set(got) == {"feature_projection.projection.weight", "feature_projection.projection.bias",
                        "encoder.layer_norm.weight"}
    np.testing.assert_array_equal(got["feature_projection.projection.weight"], kernel.T)
    np.testing.assert_array_equal(got["encoder.layer_norm.weight"], np.full(32, 2, np.float32))


# --- bad input ------------------------------------------------------------------------------------


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(W2VEmbedError) as info:
        find_weights(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and all(name in message for name in WEIGHT_FILES) and "\n" not in message


def _source(name: str, tmp_path: Path) -> Path:
    if name == "flax_model.msgpack":
        return FIXTURES / "stable-flax" / name
    if name == "tf_model.h5":
        return FIXTURES / "group-tf" / name
    model = _tiny_pretraining()
    if name == "model.safetensors":
        model.save_pretrained(tmp_path / "src")
    else:
        (tmp_path / "src").mkdir()
        torch.save(model.state_dict(), tmp_path / "src" / name)
    return tmp_path / "src" / name


@pytest.mark.parametrize("name", WEIGHT_FILES)
@pytest.mark.parametrize("cut", [0.5, 0.02])
def test_truncated_file_names_the_file(tmp_path, name, cut):
    data = _source(name, tmp_path).read_bytes()
    broken = tmp_path / "broken" / name
    broken.parent.mkdir()
    broken.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(W2VEmbedError) as info:
        read_state_dict(find_weights(broken.parent))
    assert str(broken) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("fixture", ["group-tf-sharded", "stable-nobias-flax-sharded", "safetensors"])
def test_missing_shard_names_the_shard(tmp_path, fixture):
    folder = tmp_path / "ck"
    if fixture == "safetensors":
        _tiny_pretraining().save_pretrained(folder, max_shard_size="20KB")
    else:
        shutil.copytree(FIXTURES / fixture, folder)
    index = next(folder.glob("*.index.json"))
    shard = sorted(set(json.loads(index.read_text())["weight_map"].values()))[-1]
    (folder / shard).unlink()
    with pytest.raises(W2VEmbedError, match=shard) as info:
        find_weights(folder)
    assert index.name in str(info.value)
    with pytest.raises(W2VEmbedError, match=shard):
        read_state_dict([index])


def test_corrupt_shard_index(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": ')
    with pytest.raises(W2VEmbedError, match="model.safetensors.index.json"):
        find_weights(tmp_path)


def test_unknown_format_and_no_files(tmp_path):
    odd = tmp_path / "model.ckpt"
    odd.write_bytes(b"\0" * 16)
    with pytest.raises(W2VEmbedError, match="model.ckpt: unknown weights format"):
        read_state_dict([odd])
    with pytest.raises(W2VEmbedError):
        read_state_dict([])


def test_file_without_encoder_weights(tmp_path):
    from safetensors.numpy import save_file

    save_file({"lm_head.weight": np.zeros((4, 4), np.float32)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(W2VEmbedError, match="model.safetensors: no encoder weights"):
        read_state_dict(find_weights(tmp_path))


def test_bin_that_is_not_a_state_dict(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "pytorch_model.bin")
    with pytest.raises(W2VEmbedError, match="pytorch_model.bin"):
        read_state_dict(find_weights(tmp_path))


def test_import_stays_light():
    code = ("import sys, w2v_embed.export.weights; heavy = {'torch', 'msgpack', 'h5py', 'safetensors', 'transformers'};"
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"

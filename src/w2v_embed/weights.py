"""Read a checkpoint's weights, in any of the four formats, as a transformers `Wav2Vec2Model` state dict.

Flax (`flax_model.msgpack`) and TF (`tf_model.h5`) weights are read with msgpack and h5py, so
export never needs JAX, Flax or TensorFlow. Every reader yields PyTorch-style names (the renames
and transposes transformers 4.x applied when it converted between frameworks); `normalize_names`
then keeps the encoder only, in the naming of transformers 5's `Wav2Vec2Model`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import W2VEmbedError

# Search order; each may also be sharded as NAME.index.json + shards.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "flax_model.msgpack", "tf_model.h5")
ENCODER_PREFIXES = ("feature_extractor.", "feature_projection.", "encoder.", "masked_spec_embed")
BASE_PREFIX = "wav2vec2."
POS_CONV = "encoder.pos_conv_embed.conv."


def find_weights(folder: Path) -> list[Path]:
    """The weights file(s) of the first format present (all shards when sharded)."""
    folder = Path(folder)
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
        index = folder / f"{name}.index.json"
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError) as exc:
                raise W2VEmbedError(f"{index}: not a valid shard index ({exc})") from exc
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing:
                raise W2VEmbedError(f"{folder / missing[0]}: shard listed in {index.name} is missing")
            return [folder / s for s in shards]
    raise W2VEmbedError(f"{folder}: no weights found (looked for {', '.join(WEIGHT_FILES)}, sharded or not)")


def read_state_dict(files: list[Path]) -> dict[str, np.ndarray]:
    """float32 arrays named like transformers 5's `Wav2Vec2Model(config).state_dict()`."""
    readers = {".safetensors": _read_safetensors, ".bin": _read_torch, ".msgpack": _read_flax, ".h5": _read_tf}
    raw: dict[str, np.ndarray] = {}
    for path in files:
        reader = readers.get(Path(path).suffix)
        if reader is None:
            raise W2VEmbedError(f"{path}: unknown weights format (expected one of {', '.join(WEIGHT_FILES)})")
        try:
            raw.update(reader(Path(path)))
        except W2VEmbedError:
            raise
        except Exception as exc:  # each library has its own exceptions for a damaged file
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise W2VEmbedError(f"{path}: cannot read weights, the file is damaged or truncated ({reason})") from exc
    state = normalize_names(raw)
    if not state:
        raise W2VEmbedError(f"{files[0]}: no wav2vec2 encoder weights in it")
    return state


def normalize_names(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Strip the base-model prefix, drop heads, use transformers 5's names for the weight-normed pos conv."""
    out = {}
    for name, value in raw.items():
        name = name[len(BASE_PREFIX) :] if name.startswith(BASE_PREFIX) else name
        if not name.startswith(ENCODER_PREFIXES):
            continue  # quantizer, project_hid/q, lm_head, classifier …: not part of the encoder
        if name.endswith(".gamma"):
            name = name[: -len(".gamma")] + ".weight"
        elif name.endswith(".beta"):
            name = name[: -len(".beta")] + ".bias"
        if name == POS_CONV + "weight_g":
            name, value = POS_CONV + "parametrizations.weight.original0", value.reshape(1, 1, -1)
        elif name == POS_CONV + "weight_v":
            name = POS_CONV + "parametrizations.weight.original1"
        out[name] = np.ascontiguousarray(value, dtype=np.float32)
    return out


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except TypeError:  # bfloat16 has no numpy dtype: go through torch
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k).float().numpy() for k in f.keys()}


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    import torch

    state = torch.load(str(path), map_location="cpu", weights_only=True)  # never unpickles code
    if not isinstance(state, dict):
        raise W2VEmbedError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {k: v.float().numpy() for k, v in state.items() if isinstance(v, torch.Tensor)}


def _read_flax(path: Path) -> dict[str, np.ndarray]:
    """flax.serialization's msgpack: nested dicts of ndarrays (ext type 1), large ones chunked."""
    import msgpack

    def ext_hook(code: int, data: bytes) -> object:
        if code in (1, 3):  # ndarray: (shape, dtype, bytes); numpy scalar: (dtype, bytes)
            parts = msgpack.unpackb(data, raw=False)
            shape, dtype, buffer = parts if code == 1 else ((), *parts)
            return _from_buffer(buffer, dtype).reshape(shape)
        raise W2VEmbedError(f"{path}: unsupported msgpack extension type {code}")

    tree = msgpack.unpackb(path.read_bytes(), ext_hook=ext_hook, raw=False, strict_map_key=False)
    if not isinstance(tree, dict):
        raise W2VEmbedError(f"{path}: not a Flax parameter tree")
    tree = tree.get("params", tree)
    return dict(_flax_to_torch(key, value) for key, value in _flatten(tree, ()))


def _from_buffer(buffer: bytes, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":  # the upper half of a float32
        return (np.frombuffer(buffer, np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(buffer, np.dtype(dtype))


def _flatten(tree: dict, prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], np.ndarray]]:
    for key, value in tree.items():
        if isinstance(value, dict) and value.get("__msgpack_chunked_array__"):
            chunks = value["chunks"]
            flat = np.concatenate([chunks[str(i)] for i in range(len(chunks))])
            yield (*prefix, str(key)), flat.reshape(tuple(value["shape"][str(i)] for i in range(len(value["shape"]))))
        elif isinstance(value, dict):
            yield from _flatten(value, (*prefix, str(key)))
        else:
            yield (*prefix, str(key)), np.asarray(value)


def _flax_to_torch(key: tuple[str, ...], value: np.ndarray) -> tuple[str, np.ndarray]:
    """Dense kernel [in, out] and Conv kernel [K, in, out] are the reverse of PyTorch's layout; norms say scale."""
    if key[-1] == "kernel":
        return ".".join((*key[:-1], "weight")), value.T
    if key[-1] == "scale":
        return ".".join((*key[:-1], "weight")), value
    return ".".join(key), value


def _read_tf(path: Path) -> dict[str, np.ndarray]:
    """Keras h5 weights: attrs layer_names → weight_names such as model/wav2vec2/encoder/…/kernel:0."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        if "layer_names" in f.attrs:
            names = [
                (group, w.decode() if isinstance(w, bytes) else w)
                for layer in f.attrs["layer_names"]
                for group in [f[layer.decode() if isinstance(layer, bytes) else layer]]
                for w in group.attrs["weight_names"]
            ]
            items = [(name, group[name][()]) for group, name in names]
        else:  # sharded TF checkpoints store datasets under their full names
            items = []
            f.visititems(lambda name, obj: items.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None)
    for name, value in items:
        torch_name, value = _tf_to_torch(name, np.asarray(value))
        out[torch_name] = value
    return out


def _tf_to_torch(name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    parts = name.replace(":0", "").split("/")
    if parts[0].startswith("tf_"):  # the Keras model's own scope, e.g. tf_wav2_vec2_for_ctc
        parts = parts[1:]
    parts = [p for part in parts for p in part.split("_._")]
    last = parts[-1]
    if last in ("kernel", "gamma"):
        parts[-1] = "weight"
    elif last == "beta":
        parts[-1] = "bias"
    if last == "kernel":  # Dense [in, out] → [out, in]; Conv1D [K, in, out] → [out, in, K]
        value = value.T
    return ".".join(parts), value

"""Flax (`flax_model.msgpack`) and TensorFlow (`tf_model.h5`) weights as PyTorch-named float arrays,
read with msgpack and h5py: export never needs JAX, Flax or TensorFlow.

The renames and transposes are the ones transformers 4.x applied when it converted between
frameworks; `weights.normalize_names` does the rest for every format alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import W2VEmbedError

Raw = dict[str, np.ndarray]


def bfloat16(buffer: bytes | memoryview) -> np.ndarray:
    """bfloat16 is the upper half of a float32."""
    return (np.frombuffer(buffer, "<u2").astype(np.uint32) << 16).view(np.float32)


def read_flax(path: Path) -> Raw:
    """flax.serialization's msgpack: nested dicts of ndarrays (ext type 1), large ones chunked."""
    import msgpack

    def ext_hook(code: int, data: bytes) -> object:
        if code in (1, 3):  # ndarray and numpy scalar: both packed as (shape, dtype name, bytes)
            shape, dtype, buffer = msgpack.unpackb(data, raw=False)
            array = bfloat16(buffer) if dtype == "bfloat16" else np.frombuffer(buffer, np.dtype(dtype))
            return array.reshape(shape)
        if code == 2:  # native complex: (real, imag)
            real, imag = msgpack.unpackb(data, raw=False)
            return complex(real, imag)
        raise W2VEmbedError(f"{path}: unsupported msgpack extension type {code} (not a flax.serialization file?)")

    tree = msgpack.unpackb(path.read_bytes(), ext_hook=ext_hook, raw=False, strict_map_key=False)
    if not isinstance(tree, dict):
        raise W2VEmbedError(f"{path}: not a Flax parameter tree (top level is {type(tree).__name__})")
    if set(tree) == {"params"} and isinstance(tree["params"], dict):  # a {"params": …} variables dict
        tree = tree["params"]
    return dict(flax_to_torch(key, value) for key, value in _flatten(tree, ()))


def _flatten(tree: dict, prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], np.ndarray]]:
    """Numeric leaves of a nested dict with their key paths; flax's chunked arrays joined back."""
    for key, value in tree.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value.get("__msgpack_chunked_array__"):
            chunks, shape = value["chunks"], value["shape"]
            flat = np.concatenate([np.ravel(chunks[str(i)]) for i in range(len(chunks))])
            yield path, flat.reshape(tuple(int(shape[str(i)]) for i in range(len(shape))))
        elif isinstance(value, dict):
            yield from _flatten(value, path)
        elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
            yield path, value


def flax_to_torch(key: tuple[str, ...], value: np.ndarray) -> tuple[str, np.ndarray]:
    """Dense kernel [in, out] and Conv kernel [K, in, out] are the reverse of PyTorch's layout; norms say scale.

    The weight-normed positional conv keeps PyTorch's layout in Flax (weight_v [H, H/groups, K],
    weight_g [1, 1, K]), so it passes through.
    """
    if key and key[0] == "params":
        key = key[1:]
    if key[-1] == "kernel":
        return ".".join((*key[:-1], "weight")), value.T
    if key[-1] == "scale":
        return ".".join((*key[:-1], "weight")), value
    return ".".join(key), value


def read_tf(path: Path) -> Raw:
    """Keras h5 weights: attrs layer_names → weight_names such as model/wav2vec2/encoder/…/kernel:0.

    transformers' sharded TF files instead list the datasets themselves in layer_names, under names
    already stripped of the model's scope (wav2vec2/encoder/…/kernel:0).
    """
    import h5py

    def text(value: bytes | str) -> str:
        return value.decode("utf8") if isinstance(value, bytes) else str(value)

    items: list[tuple[str, np.ndarray]] = []
    with h5py.File(path, "r") as f:
        layer_names = [text(n) for n in f.attrs.get("layer_names", [])]
        if "layer_names" not in f.attrs:  # not a Keras file: take every dataset under its path
            f.visititems(lambda name, obj: items.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None)
        for layer in layer_names:
            obj = f[layer]
            if isinstance(obj, h5py.Dataset):  # sharded layout
                items.append((layer, obj[()]))
                continue
            for weight in (text(w) for w in obj.attrs.get("weight_names", [])):
                parts = weight.split("/")
                if parts[0] != layer and layer in parts:  # drop the model's own scope before the layer's name
                    parts = parts[parts.index(layer) :]
                items.append(("/".join(parts), obj[weight][()]))
    return dict(tf_to_torch(name, np.asarray(value)) for name, value in items)


def tf_to_torch(name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """TF names and layouts → PyTorch: kernel transposed, gamma/beta → weight/bias.

    The weight-normed positional conv already has PyTorch's layout in TF (weight_v [H, H/groups, K];
    weight_g [K, 1, 1], reshaped by `normalize_names`).
    """
    parts = name.removesuffix(":0").split("/")
    if len(parts) > 1 and parts[0].startswith("tf_"):  # the Keras model's own scope, e.g. tf_wav2_vec2_for_ctc
        parts = parts[1:]
    parts = [p for part in parts for p in part.split("_._")]  # older TF list naming: layers_._0
    last = parts[-1]
    if last in ("kernel", "gamma"):
        parts[-1] = "weight"
    elif last == "beta":
        parts[-1] = "bias"
    if last == "kernel":  # Dense [in, out] → [out, in]; Conv1D [K, in, out] → [out, in, K]
        value = value.T
    return ".".join(parts), value

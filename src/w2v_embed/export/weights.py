"""Read a checkpoint's weights, in any of the four formats, as a transformers `Wav2Vec2Model` state dict.

Flax (`flax_model.msgpack`) and TF (`tf_model.h5`) weights are read by `flax_tf`, with msgpack
and h5py, so export never needs JAX, Flax or TensorFlow. Every reader yields PyTorch-style names (the renames
and transposes transformers 4.x applied when it converted between frameworks); `normalize_names`
then keeps the encoder only, in the naming of transformers 5's `Wav2Vec2Model`.

The heavy libraries (torch, safetensors, msgpack, h5py) are imported inside the readers, so
`import w2v_embed` stays light for users who only extract embeddings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import W2VEmbedError
from .flax_tf import Raw, bfloat16, flax_to_torch, read_flax, read_tf, tf_to_torch

# Search order; each may also be sharded as NAME.index.json + shards.
WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin", "flax_model.msgpack", "tf_model.h5")
INDEX_SUFFIX = ".index.json"
ENCODER_PREFIXES = ("feature_extractor.", "feature_projection.", "encoder.", "masked_spec_embed")
# Heads of the transformers task models (…ForPreTraining, ForCTC, ForSequenceClassification,
# ForAudioFrameClassification, ForXVector; UniSpeech's), beside the base model's scope: dropped on purpose.
HEADS = (
    "quantizer.", "project_q.", "project_hid.", "lm_head.", "projector.", "classifier.", "layer_weights",
    "tdnn.", "objective.", "feature_extractor.weight", "feature_extractor.bias",  # XVector's own Linear
    "ctc_proj.", "speaker_proj.", "label_embeddings_concat", "layer_norm_for_extract.",  # UniSpeech(-SAT) pre-training
)
POS_CONV = "encoder.pos_conv_embed.conv."
WEIGHT_G = POS_CONV + "parametrizations.weight.original0"  # transformers 5 / torch parametrize names
WEIGHT_V = POS_CONV + "parametrizations.weight.original1"


def find_weights(folder: Path) -> list[Path]:
    """Weights file(s) of the first format present, in WEIGHT_FILES order (all shards, sorted, when sharded).

    One format only: a folder with both PyTorch and Flax weights is read as PyTorch, like transformers.
    Raises W2VEmbedError naming the folder and the expected file names when none is there.
    """
    folder = Path(folder)
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
        index = folder / f"{name}{INDEX_SUFFIX}"
        if index.is_file():
            return _shards(index)
    expected = ", ".join(f"{n} (or {n}{INDEX_SUFFIX} + shards)" for n in WEIGHT_FILES)
    raise W2VEmbedError(f"{folder}: no weights found; expected one of {expected}")


def read_state_dict(files: list[Path], weight_norm: bool = True) -> dict[str, np.ndarray]:
    """Read the files (one format) as float32 arrays named like transformers 5's `Wav2Vec2Model(config).state_dict()`.

    Known heads (quantizer, lm_head, classifier …, `HEADS`) are dropped and the `wav2vec2.` prefix
    stripped, so any wav2vec2 checkpoint loads into the bare encoder the exporter builds; other names
    are kept, so that export can refuse weights it would not use. A shard index
    (`*.index.json`) may be given in place of its shards. `weight_norm=False`: the model's positional
    conv is a plain conv (HuBERT's conv_pos_batch_norm), so its weight keeps its name.
    """
    paths = [p for f in files for p in (_shards(Path(f)) if str(f).endswith(INDEX_SUFFIX) else [Path(f)])]
    if not paths:
        raise W2VEmbedError("no weights files given")
    readers = [_reader(path) for path in paths]
    if len({r.__name__ for r in readers}) > 1:
        raise W2VEmbedError(f"{paths[0].parent}: weights files of different formats given ({', '.join(p.name for p in paths)})")
    raw: Raw = {}
    for path, reader in zip(paths, readers):
        if not path.is_file():
            raise W2VEmbedError(f"{path}: weights file not found")
        try:
            raw.update(reader(path))
        except W2VEmbedError:
            raise
        except Exception as exc:  # each library has its own exceptions for a damaged file
            text = str(exc).strip()
            reason = text.splitlines()[0] if text else type(exc).__name__
            raise W2VEmbedError(f"{path}: cannot read weights, the file is damaged or truncated ({reason})") from exc
    state = normalize_names(raw, weight_norm)
    if not any(k.startswith("encoder.") for k in state):
        where = str(paths[0]) + (f" (+{len(paths) - 1} more shards)" if len(paths) > 1 else "")
        raise W2VEmbedError(f"{where}: no encoder weights in it ({len(raw)} tensors, none named encoder.*)")
    return state


def normalize_names(raw: Raw, weight_norm: bool = True) -> dict[str, np.ndarray]:
    """Strip the base-model prefix, drop known heads, use transformers 5's names for the weight-normed pos conv."""
    out: dict[str, np.ndarray] = {}
    for name, value in raw.items():
        _, _, rest = name.partition(".")
        if not name.startswith(ENCODER_PREFIXES) and rest.startswith(ENCODER_PREFIXES):
            name = rest  # the base model's scope in a model with heads: wav2vec2., hubert., wavlm., data2vec_audio.
        if name.startswith(HEADS):
            continue  # not part of the encoder; anything else unknown is kept, for export to refuse by name
        if name.endswith(".gamma"):  # old LayerNorm names
            name = name[: -len(".gamma")] + ".weight"
        elif name.endswith(".beta"):
            name = name[: -len(".beta")] + ".bias"
        if name == POS_CONV + "weight_g":  # torch.nn.utils.weight_norm(dim=2): g is [1, 1, K] ([K, 1, 1] in TF)
            name, value = WEIGHT_G, value.reshape(1, 1, -1)
        elif name == POS_CONV + "weight_v":
            name = WEIGHT_V
        array = np.asarray(value, dtype=np.float32, order="C")  # keeps 0-d buffers 0-d (ascontiguousarray: 1-d)
        out[name] = array if array.flags.writeable else array.copy()  # torch.from_numpy wants writable memory
    if weight_norm and POS_CONV + "weight" in out and WEIGHT_G not in out:  # weight norm already folded in: g·v/‖v‖ == w
        weight = out.pop(POS_CONV + "weight")
        out[WEIGHT_G] = np.sqrt((weight.astype(np.float64) ** 2).sum(axis=(0, 1), keepdims=True)).astype(np.float32)
        out[WEIGHT_V] = weight
    return out


def _shards(index: Path) -> list[Path]:
    """The shard files a `*.index.json` names, sorted, each checked to exist."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise W2VEmbedError(f"{index}: not a valid shard index ({type(exc).__name__}: {exc})") from exc
    if not shards:
        raise W2VEmbedError(f"{index}: the shard index lists no files")
    for shard in shards:
        if not (index.parent / shard).is_file():
            raise W2VEmbedError(f"{index.parent / shard}: shard listed in {index.name} is missing")
    return [index.parent / shard for shard in shards]


def _reader(path: Path) -> Callable[[Path], Raw]:
    readers = {".safetensors": _read_safetensors, ".bin": _read_torch, ".msgpack": read_flax, ".h5": read_tf}
    reader = readers.get(path.suffix)
    if reader is None:
        raise W2VEmbedError(f"{path}: unknown weights format (expected one of {', '.join(WEIGHT_FILES)})")
    return reader


def _read_safetensors(path: Path) -> Raw:
    """safetensors as numpy; files written by transformers' TF or Flax models say so in their metadata."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        fmt = (f.metadata() or {}).get("format", "pt")
        keys = list(f.keys())
        try:
            raw = {k: f.get_tensor(k) for k in keys}
        except TypeError:  # bfloat16: numpy has no such dtype
            raw = _read_safetensors_raw(path)
    if fmt == "tf":
        return dict(tf_to_torch(name, value) for name, value in raw.items())
    if fmt in ("flax", "jax"):
        return dict(flax_to_torch(tuple(name.split(".")), value) for name, value in raw.items())
    return raw


def _read_safetensors_raw(path: Path) -> Raw:
    """The safetensors layout by hand (8-byte header size, JSON header, data), for bfloat16 without torch."""
    dtypes = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1"}
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    body = memoryview(data)[8 + size :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        if info["dtype"] == "BF16":
            array = bfloat16(body[start:end])
        elif info["dtype"] in dtypes:
            array = np.frombuffer(body[start:end], dtypes[info["dtype"]])
        else:
            continue  # bool, fp8 …: no wav2vec2 weight is stored so
        out[name] = array.reshape(info["shape"])
    return out


def _read_torch(path: Path) -> Raw:
    import pickle
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)  # never unpickles code
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise
        raise W2VEmbedError(_refused(path, str(exc))) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # training-loop wrappers
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise W2VEmbedError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {k: v.float().numpy() for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}


def _refused(path: Path, message: str) -> str:
    """torch's weights_only loader refused a pickled object: that is a safety refusal, not damage (a
    zip-format file is whole, its members are checksummed; only the pre-1.6 format can mislead)."""
    import zipfile

    found = re.search(r"GLOBAL ([\w.]+)", message)
    what = f" ({found.group(1)})" if found else ""
    truncated = "" if zipfile.is_zipfile(path) else " (or the file is truncated)"
    return (
        f"{path}: holds Python code or objects besides tensors{what}, which are not loaded for safety{truncated}; "
        "if you trust its source, convert it to model.safetensors (torch.load(..., weights_only=False), then "
        "safetensors.torch.save_file; docs/export-checks.md) and export again"
    )

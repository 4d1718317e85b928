"""The checkpoint as transformers' PyTorch model: the reference every export is verified against.

Export-only (torch, transformers): imported by the export, never by `extract`.
"""

from __future__ import annotations

from typing import Any

from ..architecture import config_problem
from ..errors import W2VEmbedError
from . import adapters
from .checkpoint import CONFIG, Checkpoint, require_export_extra
from .weights import WEIGHT_G, read_state_dict


def load_reference_model(checkpoint: Checkpoint) -> Any:
    """The family's transformers PyTorch model (Wav2Vec2Model, HubertModel …) with the checkpoint's
    encoder weights (heads dropped); every other weight of the checkpoint must be one it uses."""
    from .coverage import check_against_model
    from .families import SUPPORTED_MODEL_TYPES, family, front_end

    config_path = checkpoint.folder / CONFIG
    config_dict = checkpoint.config
    model_type = config_dict.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise W2VEmbedError(
            f"{config_path}: model_type {model_type!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    problem = config_problem(config_dict)  # before torch: a 10¹²-wide layer must not reach an allocator
    if problem:
        raise W2VEmbedError(f"{config_path}: {problem}")
    torch = require_export_extra("torch")
    transformers = require_export_extra("transformers")
    # Built without memory or random init, then given the checkpoint's arrays themselves (assign): the
    # weights are held once, which is what lets a 2B model (8.6 GB) export on a 24 GB machine.
    try:
        config = transformers.AutoConfig.from_pretrained(checkpoint.folder)
        with torch.device("meta"):
            model = getattr(transformers, family(model_type).REFERENCE)(config).eval()
    except Exception as exc:  # transformers raises several kinds for a bad config (unknown activation …)
        raise W2VEmbedError(f"{config_path}: cannot build the model it describes ({_reason(exc)})") from exc
    checkpoint.check_feature_extractor(front_end(config)[0])  # before the weights (minutes for a 2B model)
    expected = model.state_dict()
    arrays = read_state_dict(checkpoint.weights, weight_norm=WEIGHT_G in expected)
    if checkpoint.adapter_file is not None:
        adapters.merge(arrays, list(expected), checkpoint.adapter_file)
    computed = _computed_buffers(model, config, arrays)
    persistent = {k: v for k, v in computed.items() if k in expected}  # the others are in no state dict
    check_against_model({**persistent, **arrays}, expected, checkpoint.weights[0].name)
    state = {
        k: torch.from_numpy(arrays[k]).to(t.dtype) if k in arrays
        else computed.get(k, torch.zeros(t.shape, dtype=t.dtype))  # zeros: unused by inference
        for k, t in expected.items()
    }
    model.load_state_dict(state, assign=True)
    for name, tensor in computed.items():  # non-persistent buffers are in no state dict
        owner, _, attr = name.rpartition(".")
        model.get_submodule(owner).register_buffer(attr, tensor, persistent=name in expected)
    return model


def _reason(exc: Exception) -> str:
    """An exception as one line: its type when it says little (KeyError 'gelu_x'), its lines joined."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines)[:300]
    return f"{type(exc).__name__}: {text}" if isinstance(exc, (KeyError, TypeError)) or not text else text


def _computed_buffers(model: Any, config: Any, arrays: dict[str, Any]) -> dict[str, Any]:
    """Buffers the checkpoint does not hold that transformers computes from the config (the conformer's
    sinusoid table, never saved; its rotary frequencies, absent from older checkpoints): each module
    owning one is built again, on the CPU, and its buffers taken. Modules that cannot be built from
    the config alone (a BatchNorm's statistics) are left to the missing-weights check."""
    out = {}
    for prefix, module in model.named_modules():
        names = [n for n, _ in module.named_buffers(recurse=False) if f"{prefix}.{n}".lstrip(".") not in arrays]
        if not names:
            continue
        try:
            fresh = type(module)(config)
        except Exception:  # not a config-built module
            continue
        out.update({f"{prefix}.{n}".lstrip("."): getattr(fresh, n) for n in names})
    return out

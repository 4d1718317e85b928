"""One module per model family: the padding-exact forward pass that is traced to ONNX.

A family is a module here named after its transformers `model_type` (`-` written `_`) with
`REFERENCE`, the transformers class its export is verified against, and `Exportable`, the
nn.Module that restates its forward pass. Adding a family means adding one file.

Optional hooks, for a family whose input is not the waveform (w2v-BERT: fbank features):
`front_end(config)` -> (front end name, frame-grid kernels, strides) recorded in the model's metadata;
`reference_hidden_states(model, samples)` -> transformers' states of one clip, its own feature
extractor included (verify.py's default feeds the samples). `Exportable.input_names` and
`Exportable.example_inputs()` (wav2vec2's: samples) name and shape what the graph is traced with.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(
    sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
)


def family(model_type: str) -> ModuleType:
    """The family module of a supported model_type (imports torch)."""
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise KeyError(model_type)
    return importlib.import_module(f"{__name__}.{model_type.replace('-', '_')}")


def feat_extract_norm(config: object) -> str:
    """'group' (base-style) or 'layer'; configs without the field (data2vec-audio) use layer norm."""
    return getattr(config, "feat_extract_norm", "layer")


def stable_layer_norm(config: object) -> bool:
    """Pre-norm encoder layers with a final LayerNorm (large models); absent = post-norm, except for
    conformers, whose blocks are always pre-norm (their configs lack the field)."""
    return bool(getattr(config, "do_stable_layer_norm", getattr(config, "model_type", "") == "wav2vec2-conformer"))


def front_end(config: object) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """What the model eats and its frame grid: the waveform through the conv stack, unless the family says."""
    module = family(config.model_type)
    if hasattr(module, "front_end"):
        return module.front_end(config)
    return "waveform", tuple(config.conv_kernel), tuple(config.conv_stride)

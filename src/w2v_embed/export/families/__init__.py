"""One module per model family: the padding-exact forward pass that is traced to ONNX.

A family is a module here named after its transformers `model_type` (`-` written `_`) with
`REFERENCE`, the transformers class its export is verified against, and `Exportable`, the
nn.Module that restates its forward pass. Adding a family means adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any

from ...chunking import FrameGrid
from ...errors import W2VEmbedError

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


def exportable(model: Any) -> Any:
    """The family's padding-exact wrapper of `model`, refused when its graph leaves weights unread.

    Why: a weight the graph skips (an adapter, a norm) is otherwise found only as a verification
    mismatch that does not say why; this names it before minutes of export.
    """
    wrapper = family(model.config.model_type).Exportable(model).eval()
    import torch

    if wrapper.dtype == torch.float32:  # the half-precision re-export wraps the same, checked, modules
        unread = unread_weights(wrapper)
        if unread:
            shown = ", ".join(unread[:4]) + (f" and {len(unread) - 4} more" if len(unread) > 4 else "")
            raise W2VEmbedError(
                f"{model.config.model_type}: the exported graph would not use {len(unread)} of the checkpoint's "
                f"weights ({shown}); this model variant is not supported"
            )
    return wrapper


def unread_weights(wrapper: Any) -> list[str]:
    """Parameters of the wrapped model that one forward pass of the wrapper does not reach, except
    those the family declares unread by transformers too (`Exportable.unread`).

    The autograd graph of the outputs is walked back to its leaves; no gradient is computed.
    """
    import torch

    params = dict(wrapper.model.named_parameters())
    flags = {name: p.requires_grad for name, p in params.items()}
    samples = FrameGrid(tuple(wrapper.kernels), tuple(wrapper.strides)).samples_for(8)
    try:
        for p in params.values():
            p.requires_grad_(True)
        with torch.enable_grad():
            outputs = wrapper(torch.zeros(1, samples), torch.tensor([samples]))
            reached = _leaves(outputs)
    finally:
        for name, p in params.items():
            p.requires_grad_(flags[name])
    skip = wrapper.unread()
    return sorted(name for name, p in params.items() if id(p) not in reached and not name.startswith(skip))


def _leaves(outputs: tuple[Any, ...]) -> set[int]:
    """ids of the leaf tensors (parameters) the autograd graph of `outputs` accumulates into."""
    seen, found = set(), set()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            found.add(id(variable))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return found

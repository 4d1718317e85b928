"""Every weight of a checkpoint is used by the exported graph, or is a known head: never a silent drop.

A config.json that asks for fewer layers than the checkpoint has (num_hidden_layers 1 on a 3-layer
checkpoint) would otherwise export one layer, and verification would pass, because the reference
model is built from the same config. Heads (quantizer, lm_head, classifier …) are dropped on purpose
by `weights.normalize_names`; anything else that the graph would not read is refused here, by name.

Imports torch (inside `check_graph_uses`): export only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import W2VEmbedError

# In Wav2Vec2Model (and the other families) but read only by training's span masking; checkpoints may lack it.
OPTIONAL_KEYS = ("masked_spec_embed",)
# BatchNorm's integer step counter: never read in eval, and skipped by the .bin reader (floats only).
OPTIONAL_SUFFIXES = (".num_batches_tracked",)
SHOWN = 3  # names given in an error; the rest are counted


def few(names: list[str]) -> str:
    """'N weights (a, b, c …)': a handful of names and how many there are."""
    more = " …" if len(names) > SHOWN else ""
    return f"{len(names)} weight{'s' if len(names) != 1 else ''} ({', '.join(names[:SHOWN])}{more})"


def check_against_model(arrays: Mapping[str, Any], expected: Mapping[str, Any], weights_name: str) -> None:
    """The checkpoint's encoder arrays and the model config.json builds have the same names and shapes."""
    missing = [k for k in expected if k not in arrays and k not in OPTIONAL_KEYS and not k.endswith(OPTIONAL_SUFFIXES)]
    if missing:
        raise W2VEmbedError(
            f"{weights_name}: {len(missing)} encoder weights missing (e.g. {missing[0]}); "
            "does it belong to this config.json?"
        )
    for key, tensor in expected.items():
        if key in arrays and tuple(arrays[key].shape) != tuple(tensor.shape):
            raise W2VEmbedError(
                f"{weights_name}: {key} has shape {tuple(arrays[key].shape)} but config.json implies "
                f"{tuple(tensor.shape)}"
            )
    unused = [k for k in arrays if k not in expected]
    if unused:
        raise W2VEmbedError(
            f"{weights_name}: {few(unused)} not used by the model config.json describes{_layers_hint(arrays, expected)}; "
            "exporting would drop them silently. Is config.json the one saved with these weights?"
        )


def _layers_hint(arrays: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
    def count(names: Iterator[str]) -> int:
        return len({m.group(1) for m in map(re.compile(r"encoder\.layers\.(\d+)\.").match, names) if m})

    have, want = count(iter(arrays)), count(iter(expected))
    if have == want:
        return ""
    return (
        f" (the checkpoint has {have} encoder layers, config.json's num_hidden_layers is {want}; to embed from "
        "fewer layers, export them all and pass extract --layers N, which stops there)"
    )


def check_graph_uses(reference: Any) -> None:
    """Run the family's exportable forward pass once, on two frames of silence, and refuse if it reads
    none of some checkpoint weights, except those the family declares transformers' own forward ignores
    too (`Exportable.unread`: e.g. the conformer's positional conv)."""
    import torch
    from torch.overrides import TorchFunctionMode

    from .families import family

    seen: set[int] = set()

    class Seen(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            seen.update(id(t) for t in _tensors((args, kwargs)))
            return func(*args, **(kwargs or {}))

    config = reference.config
    wrapper = family(config.model_type).Exportable(reference).eval()
    with torch.no_grad(), Seen():  # the family's own trace inputs: waveform or fbank rows
        wrapper(*wrapper.example_inputs())
    skip = (*OPTIONAL_KEYS, *wrapper.unread())
    unused = [name for name, p in reference.named_parameters() if id(p) not in seen and not name.startswith(skip)]
    if unused:
        raise W2VEmbedError(
            f"{few(unused)} of the checkpoint are not used by the {config.model_type} export; "
            "exporting would drop them silently (a feature of this checkpoint the exporter does not support)"
        )


def _tensors(value: object) -> Iterator[object]:
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)

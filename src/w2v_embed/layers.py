"""Which model outputs a run asks for: numbered hidden states and the final output, `last`.

Numbered layers follow transformers 5's `output_hidden_states`: 0 is the input to the first
transformer layer, k the output of layer k. `last` is `last_hidden_state`, what model cards and most
recipes call the last layer. For post-norm models (wav2vec2-base) it equals layer L; for
stable-layer-norm models (large, XLS-R, the Flax-pretrained ones) transformers 5 applies the
encoder's final LayerNorm only to `last_hidden_state`, so it differs from layer L and is a layer of
its own, stored under a name no numbered layer can have.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from .errors import UsageError

LAST = "last"
Layer = Union[int, str]  # 0..L, or LAST
LayerSpec = Union[str, Sequence[Union[int, str]]]


def parse_layers(spec: LayerSpec, num_layers: int) -> tuple[Layer, ...]:
    """'last' | 'all' | '6,12' | '6,last' | [6, 'last'] → numbered layers sorted, then 'last' when asked.

    'all' means the numbered layers 0..L (transformers' hidden_states); negative numbers count from the end.
    """
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    out: set[Layer] = set()
    for part in parts:
        text = str(part).strip().lower()
        if not text:
            continue
        if text == LAST:
            out.add(LAST)
        elif text == "all":
            out.update(range(num_layers + 1))
        else:
            try:
                value = int(text)
            except ValueError as exc:
                raise UsageError(f"--layers {spec!r}: expected 'last', 'all' or numbers like 6,12") from exc
            layer = value + num_layers + 1 if value < 0 else value
            if not 0 <= layer <= num_layers:
                raise UsageError(f"--layers: layer {value} does not exist (this model has layers 0..{num_layers} and last)")
            out.add(layer)
    if not out:
        raise UsageError("--layers: no layer given")
    return sort_layers(out)


def sort_layers(layers: Sequence[Layer] | set[Layer]) -> tuple[Layer, ...]:
    return tuple(sorted(k for k in layers if k != LAST)) + ((LAST,) if LAST in layers else ())


def depth(layers: Sequence[Layer], num_layers: int) -> int:
    """How many transformer layers must run to compute `layers` (all of them for `last`)."""
    return num_layers if LAST in layers else max(int(k) for k in layers)


def from_text(value: str | int) -> Layer:
    """'6' → 6, 'last' → 'last': layer ids as stored in output attributes."""
    text = value.decode() if isinstance(value, bytes) else str(value)
    return LAST if text == LAST else int(text)


def output_name(layer: Layer) -> str:
    """The ONNX graph output that holds it."""
    return "last_hidden_state" if layer == LAST else f"hidden_state_{layer}"


def dataset_name(layer: Layer) -> str:
    """The HDF5 dataset that holds it."""
    return "last_hidden_state" if layer == LAST else f"layer_{layer}"

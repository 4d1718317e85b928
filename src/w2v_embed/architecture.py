"""The numbers that shape a wav2vec2-family model, and the ranges a real one has them in.

Checked twice: on a checkpoint's config.json before export builds anything (a negative width, zero
heads or a 10¹²-wide layer otherwise surfaces as a tensor-allocation traceback), and on an exported
model's metadata when `extract` or `info` loads it (an edited `.onnx` with zero strides or a million
layers otherwise fails deep in the frame arithmetic). Each problem is one line naming the field.

The bounds are generous: the largest published models (XLS-R 2B: 1920 wide, 48 layers, FFN 7680)
sit far inside them.
"""

from __future__ import annotations

from collections.abc import Mapping

MOST = {
    "hidden_size": 65_536,
    "num_hidden_layers": 1_024,
    "num_layers": 1_024,  # the metadata's name for num_hidden_layers
    "num_attention_heads": 4_096,
    "intermediate_size": 1_048_576,
    "num_conv_pos_embeddings": 65_536,
    "num_conv_pos_embedding_groups": 65_536,
    "conv_pos_kernel_size": 65_536,  # data2vec-audio
    "num_buckets": 65_536,  # WavLM's relative positions
    "max_bucket_distance": 1_048_576,
}
MOST_CONV = 65_536  # any conv_dim / conv_kernel / conv_stride entry
CONV_FIELDS = ("conv_dim", "conv_kernel", "conv_stride")
# The metadata's numbers (least, most); sample rates as audio.py accepts for sources.
RANGES = {"num_layers": (1, MOST["num_layers"]), "hidden_size": (1, MOST["hidden_size"]), "sample_rate": (1_000, 768_000)}
KINDS = {"str": str, "bool": bool}


def integer_problem(name: str, value: object, most: int, least: int = 1) -> str | None:
    """Why `value` is not an integer in least..most (JSON's 1e12 and true are not), or None."""
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        return f"{name} {value!r}: expected an integer from {least} to {most}"
    return None


def conv_problem(layers: Mapping[str, object]) -> str | None:
    """The conv stack's per-layer lists: each non-empty, of positive integers, all of one length."""
    for name, value in layers.items():
        if (
            not isinstance(value, (list, tuple)) or not value
            or any(integer_problem(name, v, MOST_CONV) for v in value)
        ):
            return f"{name} {value!r}: expected a non-empty list of integers from 1 to {MOST_CONV}"
    lengths = [len(v) for v in layers.values()]  # type: ignore[arg-type]
    if len(set(lengths)) > 1:
        counts = ", ".join(f"{name} {n}" for name, n in zip(layers, lengths))
        return f"conv layer lists of different lengths ({counts}): each needs one entry per conv layer"
    return None


def config_problem(config: Mapping[str, object]) -> str | None:
    """What is wrong with a checkpoint's config.json, or None. Absent fields are fine: transformers
    fills in its defaults, which are valid."""
    for name, most in MOST.items():
        if name in config and (problem := integer_problem(name, config[name], most)):
            return problem
    problem = conv_problem({k: config[k] for k in CONV_FIELDS if k in config})
    if problem:
        return problem
    hidden = config.get("hidden_size", 768)
    for name in ("num_attention_heads", "num_conv_pos_embedding_groups"):
        if name in config and hidden % config[name]:
            return f"hidden_size {hidden} is not divisible by {name} {config[name]}"
    return None


def metadata_problem(values: Mapping[str, object], types: Mapping[str, str]) -> str | None:
    """What is wrong with an exported model's metadata (decoded values; `types`: each field's type as
    written in ModelInfo), or None."""
    for name, value in values.items():
        kind = KINDS.get(types.get(name, ""))
        if kind is not None and not isinstance(value, kind):
            return f"{name} {value!r}: expected a {types[name]}"
        if name in RANGES and (problem := integer_problem(name, value, RANGES[name][1], RANGES[name][0])):
            return problem
    return conv_problem({k: values[k] for k in ("conv_kernel", "conv_stride") if k in values})

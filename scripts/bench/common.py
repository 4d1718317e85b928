"""What every case shares: model sizes and FLOPs, random-weight models, generated audio, child processes, rows."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ENTRY = Path(__file__).resolve().parents[1] / "bench.py"
NAN = float("nan")
SIZES = {
    "base": dict(),
    # base's width and depth with large's stable layer norm (no group norm): chunking's effect on the
    # transformer alone (scripts/chunking_report.py).
    "base-stable": dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
    "large": dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
    ),
    # XLS-R 1B / 2B and MMS-1B: over protobuf's 2 GB in float32, so exported with external data.
    "xlsr-1b": dict(
        hidden_size=1280, num_hidden_layers=48, num_attention_heads=16, intermediate_size=5120,
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
    ),
    "xlsr-2b": dict(
        hidden_size=1920, num_hidden_layers=48, num_attention_heads=16, intermediate_size=7680,
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
    ),
    # The other families at base size, as their base checkpoints are configured.
    "hubert-base": dict(model_type="hubert"),
    "wavlm-base": dict(model_type="wavlm"),
    "data2vec-audio-base": dict(model_type="data2vec-audio", conv_bias=True),
    # facebook/wav2vec2-conformer-rel-pos-large and -rope-large (their config.json: swish FFNs, depthwise kernel 31).
    **{f"conformer-{name}-large": dict(
        model_type="wav2vec2-conformer", hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
        intermediate_size=4096, feat_extract_norm="layer", conv_bias=True, hidden_act="swish",
        position_embeddings_type=kind,
    ) for name, kind in (("rel-pos", "relative"), ("rope", "rotary"))},
    # facebook/w2v-bert-2.0: Wav2Vec2BertConfig's defaults are its config.json (24 conformer layers of 1024,
    # relative_key positions 64 left / 8 right, input 160-dim stacked fbank).
    "w2v-bert-2.0": dict(model_type="wav2vec2-bert"),
}
T = TypeVar("T")
CHILDREN: dict[str, object] = {}  # kind -> function(args) -> dict, filled by the case modules


def child(kind: str):
    """Register a measurement that runs in a process of its own (its peak RSS is its own)."""

    def register(function):
        CHILDREN[kind] = function
        return function

    return register


def config(size: str):
    """The transformers config of a size; wav2vec2 unless the size names another model_type."""
    from transformers import AutoConfig

    values = dict(SIZES[size])
    return AutoConfig.for_model(values.pop("model_type", "wav2vec2"), **values)


def flops_per_second_of_audio(size: str, layers: int | None = None, seconds: float = 10.0) -> float:
    """Multiply-adds × 2 of the conv stack, projection and `layers` transformer layers, per audio second
    (wav2vec2 sizes only; NaN for the other families, whose positional conv and attention differ)."""
    c = config(size)
    if c.model_type != "wav2vec2":
        return NAN
    samples = int(seconds * 16_000)
    total, length, channels = 0.0, samples, 1
    for dim, kernel, stride in zip(c.conv_dim, c.conv_kernel, c.conv_stride):
        length = (length - kernel) // stride + 1
        total += 2 * length * dim * channels * kernel
        channels = dim
    frames, h, ff = length, c.hidden_size, c.intermediate_size
    total += 2 * frames * channels * h  # feature projection
    groups, k = c.num_conv_pos_embedding_groups, c.num_conv_pos_embeddings
    total += 2 * frames * h * (h // groups) * k  # positional conv
    n = c.num_hidden_layers if layers is None else layers
    per_layer = 2 * frames * (4 * h * h + 2 * h * ff) + 2 * 2 * frames * frames * h
    return (total + n * per_layer) / seconds


def peak_rss() -> float:
    """This process's peak RSS in MiB (VmHWM: ru_maxrss would include the parent's from before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(kind: str, args: dict, env: dict | None = None) -> dict:
    environment = {**os.environ, "OMP_NUM_THREADS": str(args["threads"]), **(env or {})}
    proc = subprocess.run([sys.executable, str(ENTRY), "--child", kind, json.dumps(args)], capture_output=True,
                          text=True, env=environment)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"# {kind}: {result}", file=sys.stderr, flush=True)
    return result


def run_here(kind: str, args: dict) -> dict:
    """The child side: `bench.py --child KIND JSON`."""
    from . import frames, model, pipeline, runtimes, units  # noqa: F401  (they register their children)

    return CHILDREN[kind]({**args, "kind": kind})


def interleaved(cases: dict[str, Callable[[], T]], rounds: int) -> dict[str, list[T]]:
    """Every case once per round, the order rotated each round (no case always runs first, or always after
    the same one), so all see the same load; each case's results in round order, so ratios pair by index."""
    seen: dict[str, list[T]] = {name: [] for name in cases}
    names = list(cases)
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            seen[name].append(cases[name]())
    return seen


def paired(numerators: list[float], denominators: list[float]) -> str:
    """Per-round ratios as min / median."""
    ratios = [a / b for a, b in zip(numerators, denominators)]
    return f"{min(ratios):.2f} / {statistics.median(ratios):.2f}"


def spread(values: list[float]) -> str:
    """min / median (max−min as % of the median): what every interleaved row reports."""
    median = statistics.median(values)
    return f"{min(values):.2f} / {median:.2f} (±{100 * (max(values) - min(values)) / 2 / median:.0f}%)"


class Table:
    """A markdown table printed one row at a time, as each case finishes."""

    def __init__(self, title: str, columns: list[str]) -> None:
        print(f"\n{title}\n\n| {' | '.join(columns)} |\n|{'---|' * len(columns)}", flush=True)

    def row(self, *cells: object) -> None:
        shown = [f"{c:.1f}" if isinstance(c, float) else str(c) for c in cells]
        print(f"| {' | '.join(shown).replace('nan', '–')} |", flush=True)


def make_model(size: str, workdir: Path, quantize: str | None = None, verify: bool = False) -> tuple[Path, dict]:
    """Random-weight checkpoint and its export, each in a process of its own; returns the export's measurements."""
    checkpoint = workdir / f"{size}-checkpoint"
    if not checkpoint.exists():
        run_child("checkpoint", {"size": size, "checkpoint": str(checkpoint), "threads": 2})
    output = workdir / f"{size}{'-' + quantize if quantize else ''}.onnx"
    if output.exists() and not verify:
        return checkpoint, {"path": str(output)}
    result = run_child("export", {"checkpoint": str(checkpoint), "output": str(output), "verify": verify,
                                  "quantize": quantize, "threads": 2})
    return checkpoint, result


@child("checkpoint")
def make_checkpoint(args: dict) -> dict:
    import torch
    from transformers import AutoModel

    # Weights allocated once and filled in place (a 2B model is 8.6 GB; transformers' own init holds more).
    torch.manual_seed(0)
    with torch.device("meta"):
        model = AutoModel.from_config(config(args["size"]))
    model.to_empty(device="cpu")
    model.init_weights()  # buffers to_empty left as garbage: rotary frequencies, BatchNorm statistics
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 1:  # norms' scales 1, biases 0
                param.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                param.normal_(0.0, 0.02)
    model.save_pretrained(args["checkpoint"])
    if model.config.model_type == "wav2vec2-bert":  # its published preprocessor config
        from transformers import SeamlessM4TFeatureExtractor

        SeamlessM4TFeatureExtractor(padding_value=1.0).save_pretrained(args["checkpoint"])
    return dict(rss=peak_rss())


@child("export")
def export(args: dict) -> dict:
    import time

    from w2v_embed.export import ExportOptions, export_model

    started = time.perf_counter()
    options = ExportOptions(output=Path(args["output"]), verify=args["verify"], quantize=args["quantize"],
                            overwrite=True)
    result = export_model(args["checkpoint"], options)
    worst = result.report.max_abs_diff if result.report else None
    return dict(seconds=time.perf_counter() - started, rss=peak_rss(), bytes=result.size_bytes,
                path=str(result.path), max_abs_diff=worst)

"""Check an exported model against the reference transformers model, layer by layer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..batching import pad_batch
from ..chunking import FrameGrid
from ..errors import W2VEmbedError
from ..frontends import Frontend, frontend_for
from ..layers import LAST, Layer
from ..runtime import ModelInfo, OnnxModel

# Lengths in samples: the shortest the conv layout accepts (its receptive field: 400 for the usual
# seven convs, 720 for mHuBERT's eight), odd, a few seconds; the batch lengths run as one padded batch.
VERIFY_LENGTHS = (4_321, 16_000, 40_000)
BATCH_LENGTHS = (40_000, 9_999, 23_456)


def probe_lengths(grid: FrameGrid) -> tuple[int, ...]:
    """The receptive field, then VERIFY_LENGTHS longer than it."""
    return (grid.receptive_field, *(n for n in VERIFY_LENGTHS if n > grid.receptive_field))


@dataclass(frozen=True)
class LayerReport:
    layer: Layer
    max_abs_diff: float
    min_cosine: float


@dataclass(frozen=True)
class VerificationReport:
    """Per-layer agreement; `ok` when within the max |diff| tolerance and/or above the cosine floor."""

    layers: list[LayerReport]
    tolerance: float | None = None
    min_cosine: float | None = None

    @property
    def max_abs_diff(self) -> float:
        return max(r.max_abs_diff for r in self.layers)

    @property
    def worst_cosine(self) -> float:
        return min(r.min_cosine for r in self.layers)

    @property
    def ok(self) -> bool:
        close = self.tolerance is None or self.max_abs_diff <= self.tolerance
        return close and (self.min_cosine is None or self.worst_cosine >= self.min_cosine)

    def describe(self) -> str:
        if self.tolerance is not None and self.max_abs_diff > self.tolerance:
            worst = max(self.layers, key=lambda r: r.max_abs_diff)
            return f"layer {worst.layer} differs by {worst.max_abs_diff:.2e} (tolerance {self.tolerance:.0e})"
        worst = min(self.layers, key=lambda r: r.min_cosine)
        return f"layer {worst.layer} has cosine {worst.min_cosine:.4f} (needs >= {self.min_cosine})"


class VerificationError(W2VEmbedError):
    """The exported model does not match its reference; carries the per-layer report."""

    def __init__(self, report: VerificationReport, what: str = "verification") -> None:
        super().__init__(f"{what} failed: {report.describe()}; the model was not written")
        self.report = report


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of two [frames, dim] arrays."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    denom = np.linalg.norm(a64, axis=-1) * np.linalg.norm(b64, axis=-1)
    return (a64 * b64).sum(-1) / np.maximum(denom, 1e-30)


def reference_hidden_states(model: Any, samples: np.ndarray) -> dict[Layer, np.ndarray]:
    """transformers' own outputs for one unpadded row: {k: hidden_states[k], 'last': last_hidden_state}, [frames, hidden]."""
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(samples[None].astype(np.float32)), output_hidden_states=True)
    states: dict[Layer, np.ndarray] = {k: h[0].numpy() for k, h in enumerate(out.hidden_states)}
    states[LAST] = out.last_hidden_state[0].numpy()
    return states


def onnx_input(info: ModelInfo) -> Frontend:
    """What the graph is fed for a raw signal. The references take raw signals too, so the waveform
    front end's normalisation is left out on both sides; fbank features are computed as `extract` does
    (and, in the reference, by transformers' own feature extractor)."""
    return frontend_for(info.frontend, info.sample_rate, info.grid, do_normalize=False)


def compare(
    reference: Callable[[np.ndarray], dict[Layer, np.ndarray]],
    onnx_path: Path,
    tolerance: float | None = None,
    min_cosine: float | None = None,
    seed: int = 0,
) -> VerificationReport:
    """Each row alone through `reference` vs. rows alone and in one padded batch through ONNX Runtime."""
    rng = np.random.default_rng(seed)
    onnx_model = OnnxModel(onnx_path, device="cpu")
    layers: list[Layer] = [*range(onnx_model.info.num_layers + 1), LAST]
    worst = {k: (0.0, 1.0) for k in layers}

    def record(got: dict[Layer, np.ndarray], row: int, ref: dict[Layer, np.ndarray]) -> None:
        frames = ref[0].shape[0]
        for k in layers:
            ours = got[k][row, :frames]
            diff = float(np.abs(ours - ref[k]).max())
            cos = float(cosine_rows(ours, ref[k]).min())
            worst[k] = (max(worst[k][0], diff), min(worst[k][1], cos))

    front = onnx_input(onnx_model.info)
    alone = probe_lengths(onnx_model.info.grid)
    signals = {n: rng.standard_normal(n).astype(np.float32) for n in sorted({*alone, *BATCH_LENGTHS})}
    refs = {n: reference(x) for n, x in signals.items()}
    inputs = {n: front.prepare(x) for n, x in signals.items()}
    for n in alone:
        record(onnx_model.run(inputs[n][None], np.array([len(inputs[n])]), layers), 0, refs[n])
    batch, lengths = pad_batch([inputs[n] for n in BATCH_LENGTHS])
    got = onnx_model.run(batch, lengths, layers)
    for row, n in enumerate(BATCH_LENGTHS):
        record(got, row, refs[n])
    return VerificationReport([LayerReport(k, *worst[k]) for k in layers], tolerance, min_cosine)


def verify(reference: Any, onnx_path: Path, tolerance: float = 1e-4) -> VerificationReport:
    """The exported model against transformers' PyTorch model (the reference implementation); a family
    whose input is not the waveform feeds the reference through its own hook (w2v-BERT: fbank)."""
    from .families import family

    states = getattr(family(reference.config.model_type), "reference_hidden_states", reference_hidden_states)
    return compare(lambda x: states(reference, x), onnx_path, tolerance=tolerance)


def verify_quantized(fp32_path: Path, candidate: Path, min_cosine: float) -> VerificationReport:
    """A reduced-precision model against the verified float32 one: cosine per layer, not max |diff|."""
    fp32 = OnnxModel(fp32_path, device="cpu")
    layers: list[Layer] = [*range(fp32.info.num_layers + 1), LAST]
    front = onnx_input(fp32.info)

    def reference(x: np.ndarray) -> dict[Layer, np.ndarray]:
        inputs = front.prepare(x)
        out = fp32.run(inputs[None], np.array([len(inputs)]), layers)
        return {k: out[k][0] for k in layers}

    return compare(reference, candidate, min_cosine=min_cosine)

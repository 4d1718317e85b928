"""Check an exported model against the reference transformers model, layer by layer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import W2VEmbedError
from .runtime import OnnxModel

# Lengths in samples: short, odd, a few seconds; the last three also run as one padded batch.
VERIFY_LENGTHS = (400, 4_321, 16_000, 40_000)
BATCH_LENGTHS = (40_000, 9_999, 23_456)


@dataclass(frozen=True)
class LayerReport:
    layer: int
    max_abs_diff: float
    min_cosine: float


@dataclass(frozen=True)
class VerificationReport:
    layers: list[LayerReport]
    tolerance: float

    @property
    def max_abs_diff(self) -> float:
        return max(r.max_abs_diff for r in self.layers)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


class VerificationError(W2VEmbedError):
    """The exported model does not match the reference; carries the per-layer report."""

    def __init__(self, report: VerificationReport) -> None:
        worst = max(report.layers, key=lambda r: r.max_abs_diff)
        super().__init__(
            f"verification failed: layer {worst.layer} differs from the reference by "
            f"{worst.max_abs_diff:.2e} (tolerance {report.tolerance:.0e}); the model was not written"
        )
        self.report = report


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of two [frames, dim] arrays."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    denom = np.linalg.norm(a64, axis=-1) * np.linalg.norm(b64, axis=-1)
    return (a64 * b64).sum(-1) / np.maximum(denom, 1e-30)


def reference_hidden_states(model: Any, samples: np.ndarray) -> list[np.ndarray]:
    """transformers' own hidden states for one unpadded row: a list of [frames, hidden]."""
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(samples[None].astype(np.float32)), output_hidden_states=True)
    return [h[0].numpy() for h in out.hidden_states]


def verify(reference: Any, onnx_path: Path, tolerance: float = 1e-4, seed: int = 0) -> VerificationReport:
    """Each row alone through the reference vs. rows alone and in a padded batch through ONNX Runtime."""
    rng = np.random.default_rng(seed)
    onnx_model = OnnxModel(onnx_path, device="cpu")
    layers = list(range(onnx_model.info.num_layers + 1))
    worst = {k: (0.0, 1.0) for k in layers}

    def compare(got: dict[int, np.ndarray], row: int, ref: list[np.ndarray]) -> None:
        frames = ref[0].shape[0]
        for k in layers:
            ours = got[k][row, :frames]
            diff = float(np.abs(ours - ref[k]).max())
            cos = float(cosine_rows(ours, ref[k]).min())
            worst[k] = (max(worst[k][0], diff), min(worst[k][1], cos))

    signals = {n: rng.standard_normal(n).astype(np.float32) for n in sorted(set(VERIFY_LENGTHS + BATCH_LENGTHS))}
    refs = {n: reference_hidden_states(reference, x) for n, x in signals.items()}
    for n in VERIFY_LENGTHS:
        got = onnx_model.run(signals[n][None], np.array([n]), layers)
        compare(got, 0, refs[n])
    batch = np.zeros((len(BATCH_LENGTHS), max(BATCH_LENGTHS)), np.float32)
    for row, n in enumerate(BATCH_LENGTHS):
        batch[row, :n] = signals[n]
    got = onnx_model.run(batch, np.array(BATCH_LENGTHS), layers)
    for row, n in enumerate(BATCH_LENGTHS):
        compare(got, row, refs[n])
    return VerificationReport([LayerReport(k, *worst[k]) for k in layers], tolerance)

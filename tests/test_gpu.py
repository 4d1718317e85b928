"""The CUDA path against the CPU one. Runs only where onnxruntime-gpu sees a GPU (never in CI)."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

from w2v_embed.batching import pad_batch
from w2v_embed.embedder import EmbedOptions, Embedder
from w2v_embed.export import ExportOptions, export_model
from w2v_embed.runtime import OnnxModel
from w2v_embed.export.verify import cosine_rows

pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" not in onnxruntime.get_available_providers(), reason="needs onnxruntime-gpu and a GPU"
)


def _batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return pad_batch([rng.standard_normal(n) for n in (40_000, 9_999, 23_456)])


def _assert_close(got: dict[int, np.ndarray], want: dict[int, np.ndarray], lengths: np.ndarray, grid, min_cos: float) -> None:
    for k in want:
        for row, n in enumerate(lengths):
            frames = grid.num_frames(int(n))
            assert np.isfinite(got[k][row, :frames]).all()
            assert cosine_rows(got[k][row, :frames], want[k][row, :frames]).min() >= min_cos, (k, row)


@pytest.mark.parametrize("variant", ["group", "stable"])
def test_cuda_float32_matches_cpu(onnx_model, variant):
    batch, lengths = _batch()
    cpu, gpu = OnnxModel(onnx_model(variant), device="cpu"), OnnxModel(onnx_model(variant), device="cuda")
    layers = list(range(cpu.info.num_layers + 1))
    assert gpu.device == "cuda"
    want, got = cpu.run(batch, lengths, layers), gpu.run(batch, lengths, layers)
    _assert_close(got, want, lengths, cpu.info.grid, 0.9999)  # TF32 matmuls on recent GPUs: not bit-equal
    for k in layers:
        assert np.abs(got[k] - want[k]).max() < 1e-2


def test_cuda_float16_is_close_to_float32(checkpoint_dir, onnx_model, tmp_path):
    half = export_model(str(checkpoint_dir("group")), ExportOptions(output=tmp_path / "half.onnx", quantize="fp16")).path
    batch, lengths = _batch()
    cpu, gpu = OnnxModel(onnx_model("group"), device="cpu"), OnnxModel(half, device="cuda")
    layers = list(range(cpu.info.num_layers + 1))
    _assert_close(gpu.run(batch, lengths, layers), cpu.run(batch, lengths, layers), lengths, cpu.info.grid, 0.995)


def test_embedder_on_cuda_batches_big_and_matches_cpu(onnx_model):
    rng = np.random.default_rng(1)
    signals = [(i, rng.standard_normal(n).astype(np.float32)) for i, n in enumerate([16_000, 50_000, 7_777, 400_000])]
    options = EmbedOptions("all", "mean")
    gpu = Embedder(onnx_model("group"), device="cuda", options=options)
    cpu = Embedder(onnx_model("group"), device="cpu", options=options)
    assert gpu.batch_rows == 32 and cpu.batch_rows == 4
    want = dict(cpu.embed_stream(signals))
    for key, features in gpu.embed_stream(signals):
        for layer, vector in features.items():
            assert cosine_rows(vector[None], want[key][layer][None]).min() >= 0.9999

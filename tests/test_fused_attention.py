"""scripts/bench/attention.py's hand-fused attention (measured, not built): the fused graph computes what
the export does, padded rows included, so its timings compare like with like."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench.attention import fuse_attention  # noqa: E402

onnx = pytest.importorskip("onnx")


@pytest.mark.parametrize("variant", ["group", "stable"])
def test_fused_graph_equals_the_export_on_a_padded_batch(onnx_model, tmp_path, variant):
    import onnxruntime as ort

    model = onnx_model(variant)
    fused = tmp_path / "fused.onnx"
    count = fuse_attention(model, fused)
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (model, fused)]
    assert count == sum(1 for o in sessions[0].get_outputs() if o.name.startswith("hidden_state_")) - 1
    assert not any(n.op_type == "Softmax" for n in onnx.load(str(fused)).graph.node)
    x = np.random.default_rng(0).standard_normal((2, 16_000 * 3)).astype(np.float32)
    lengths = np.array([16_000 * 3, 16_000 * 2 + 123])
    x[1, lengths[1] :] = 0.0
    feeds = {"input_values": x, "lengths": lengths}
    expected, got = (s.run(None, feeds) for s in sessions)
    valid = [int(n) // 320 - 1 for n in lengths]
    for a, b in zip(expected, got):
        for row, frames in enumerate(valid):
            np.testing.assert_allclose(b[row, :frames], a[row, :frames], atol=1e-5)

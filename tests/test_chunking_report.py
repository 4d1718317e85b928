"""scripts/bench/chunking.py's conv-once prototype: the split graphs compute what the whole graph does."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from w2v_embed.embedder import EmbedOptions, Embedder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench.chunking import ConvOnce, parse_candidate  # noqa: E402

pytest.importorskip("onnx")


@pytest.mark.parametrize("variant", ["group", "stable"])
def test_split_graphs_equal_the_whole_graph(onnx_model, tmp_path, variant):
    """One conv piece (under 20 s) and one chunk: conv graph then transformer graph = the unsplit model."""
    model = onnx_model(variant)
    x = np.random.default_rng(3).standard_normal(16_000 * 7 + 77).astype(np.float32)
    whole = Embedder(model, device="cpu", options=EmbedOptions("all", "none", chunk_seconds=0)).embed(x, 16_000)
    split = ConvOnce(model, tmp_path, threads=1).embed(x, chunk=20.0, context=2.0, pool=False)
    assert len(split) == len([k for k in whole if isinstance(k, int)])
    for k, frames in enumerate(split):
        np.testing.assert_allclose(frames, whole[k], atol=1e-5)


def test_conv_once_chunks_equal_plain_chunks_for_layer_norm_convs(onnx_model, tmp_path):
    """Without group norm the conv features do not depend on the chunking: the same windows give the same frames."""
    model = onnx_model("stable")
    x = np.random.default_rng(4).standard_normal(16_000 * 45).astype(np.float32)
    chunked = Embedder(model, device="cpu", options=EmbedOptions("all", "none", chunk_seconds=10, context_seconds=1))
    plain = chunked.embed(x, 16_000)
    split = ConvOnce(model, tmp_path, threads=1).embed(x, chunk=10.0, context=1.0, pool=False)
    for k, frames in enumerate(split):
        np.testing.assert_allclose(frames, plain[k], atol=1e-5)


def test_candidates_parse():
    c = parse_candidate("20:1.5:conv")
    assert (c.chunk, c.context, c.conv_once) == (20.0, 1.5, True)
    assert not parse_candidate("30:2").conv_once

"""The exportable graph's own pieces against torch/numpy references."""

from __future__ import annotations

import numpy as np
import torch

from w2v_embed.chunking import FrameGrid
from w2v_embed.graph import conv_output_lengths, masked_instance_norm


def test_masked_instance_norm_equals_group_norm_on_valid_frames():
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(8, 8, affine=True).eval()
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    lengths = torch.tensor([50, 17, 2])
    x = torch.randn(3, 8, 50) * 3 + 2
    mask = (torch.arange(50)[None] < lengths[:, None]).float()
    with torch.no_grad():
        out = masked_instance_norm(x, mask, norm.weight, norm.bias, norm.eps)
        for row, n in enumerate(lengths.tolist()):
            alone = norm(x[row : row + 1, :, :n])
            np.testing.assert_allclose(out[row : row + 1, :, :n].numpy(), alone.numpy(), atol=1e-5)


def test_conv_output_lengths_match_the_frame_grid():
    grid = FrameGrid((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))
    samples = torch.tensor([0, 9, 10, 399, 400, 720, 16_000, 123_457])
    last = conv_output_lengths(samples, list(grid.conv_kernel), list(grid.conv_stride))[-1]
    assert last.tolist() == [grid.num_frames(int(n)) for n in samples]

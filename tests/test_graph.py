"""The exportable graph's own pieces against torch/numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from w2v_embed.chunking import FrameGrid
from w2v_embed.export.families.wav2vec2 import conv_output_lengths, normalized_first_conv


@pytest.mark.parametrize("bias", [False, True])
def test_normalized_first_conv_equals_conv_then_group_norm_on_valid_frames(bias):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(1, 8, kernel_size=10, stride=5, bias=bias)
    norm = torch.nn.GroupNorm(8, 8, affine=True).eval()
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    samples = torch.tensor([400, 87, 15])  # 79, 16 and 2 valid frames
    x = torch.randn(3, 400) * 3 + 0.5
    x = x * (torch.arange(400)[None] < samples[:, None])  # zero padding, as a batch has it
    frames = conv_output_lengths(samples, [10], [5])[0]
    with torch.no_grad():
        out = normalized_first_conv(x, frames, conv, norm)
        assert out.shape == (3, 8, 79)
        for row, (n, t) in enumerate(zip(samples.tolist(), frames.tolist())):
            alone = norm(conv(x[row : row + 1, None, :n]))
            assert alone.shape[2] == t
            np.testing.assert_allclose(out[row : row + 1, :, :t].numpy(), alone.numpy(), atol=2e-5)


@pytest.mark.parametrize("signal", ["sine", "lowpass", "silence"])
def test_normalized_first_conv_is_as_accurate_as_the_reference_on_band_limited_audio(signal):
    """A sine or low-passed noise makes the patch covariance nearly singular; high-pass filters then
    have a tiny variance that the folded statistics must still get right (float64 truth). Silence
    has none at all."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(1, 32, kernel_size=10, stride=5, bias=False)
    with torch.no_grad():
        conv.weight[:8, 0] = torch.tensor([0.5, -0.5] * 5)  # high-pass
    norm = torch.nn.GroupNorm(32, 32).eval()
    n = 160_000
    if signal == "sine":
        x = torch.sin(2 * np.pi * 220 * torch.arange(n) / 16_000)
    elif signal == "lowpass":
        x = torch.nn.functional.avg_pool1d(torch.randn(1, 1, n + 15), 16, 1)[0, 0]
    else:
        x = torch.zeros(n)  # digital silence: zero variance, so the output is the norm bias
    x = (x if signal == "silence" else (x - x.mean()) / x.std()).float()[None]
    frames = conv_output_lengths(torch.tensor([n]), [10], [5])[0]
    with torch.no_grad():
        ours = normalized_first_conv(x, frames, conv, norm).double()
        reference = norm(conv(x[:, None])).double()
        truth = torch.nn.functional.group_norm(
            torch.nn.functional.conv1d(x[:, None].double(), conv.weight.double(), stride=5),
            32, norm.weight.double(), norm.bias.double(), norm.eps,
        )
    reference_error = (reference - truth).abs().max().item()
    assert (ours - truth).abs().max().item() <= 2 * reference_error + 1e-6


def test_conv_output_lengths_match_the_frame_grid():
    grid = FrameGrid((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))
    samples = torch.tensor([0, 9, 10, 399, 400, 720, 16_000, 123_457])
    last = conv_output_lengths(samples, list(grid.conv_kernel), list(grid.conv_stride))[-1]
    assert last.tolist() == [grid.num_frames(int(n)) for n in samples]

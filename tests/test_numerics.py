"""Pure numerics against numpy references: frame grid, chunk plans, stitching, pooling, batching."""

from __future__ import annotations

import numpy as np
import pytest

from w2v_embed.batching import make_batches, pad_batch
from w2v_embed.chunking import FrameGrid, plan_chunks, seconds_to_frames
from w2v_embed.pooling import Pooler, pool

GRID = FrameGrid((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))


def test_grid_matches_closed_form():
    assert GRID.hop == 320 and GRID.receptive_field == 400
    for n in [0, 1, 399, 400, 401, 719, 720, 721, 16_000, 123_457, 16_000 * 3600]:
        expected = max((n - 400) // 320 + 1, 0) if n >= 400 else 0
        assert GRID.num_frames(n) == expected, n
        if expected:
            assert GRID.num_frames(GRID.samples_for(expected)) == expected
            assert GRID.num_frames(GRID.samples_for(expected) - 1) == expected - 1


def _frame_features(signal: np.ndarray, start_frame: int = 0) -> np.ndarray:
    """A stand-in model whose frame i depends only on its receptive field (plus its absolute index)."""
    n = GRID.num_frames(len(signal))
    idx = np.arange(n)[:, None] * GRID.hop + np.arange(GRID.receptive_field)[None]
    windows = signal[idx]
    return np.stack([windows.sum(1), windows.max(1), np.arange(n) + start_frame], axis=1)


@pytest.mark.parametrize("n", [400, 5_000, 160_000, 160_000 + 319, 1_000_003])
@pytest.mark.parametrize("chunk,context", [(0, 0), (50, 0), (100, 10), (1500, 150), (7, 3)])
def test_chunks_cover_every_frame_once_on_the_grid(n, chunk, context):
    rng = np.random.default_rng(n)
    signal = rng.standard_normal(n)
    chunks = plan_chunks(n, GRID, chunk, context)
    whole = _frame_features(signal)
    stitched = np.full_like(whole, np.nan)
    expected_start = 0
    for c in chunks:
        assert c.start % GRID.hop == 0 and 0 <= c.start < c.stop <= n
        assert c.frame_start == expected_start
        local = _frame_features(signal[c.start : c.stop], c.start // GRID.hop)
        assert c.keep_stop <= len(local)
        stitched[c.frame_start : c.frame_start + c.num_kept] = local[c.keep_start : c.keep_stop]
        expected_start += c.num_kept
    assert expected_start == len(whole)
    np.testing.assert_array_equal(stitched, whole)


def test_context_frames_surround_each_core():
    chunks = plan_chunks(16_000 * 100, GRID, 1500, 150)
    assert len(chunks) == 4
    inner = chunks[1]
    assert inner.keep_start == 150 and inner.num_kept == 1500
    assert GRID.num_frames(inner.stop - inner.start) == 1500 + 300
    assert plan_chunks(399, GRID, 1500, 150) == []
    assert len(plan_chunks(16_000 * 32, GRID, 1500, 150)) == 1  # fits within chunk + context: no split
    assert seconds_to_frames(30, GRID, 16_000) == 1500


@pytest.mark.parametrize("mode", ["mean", "max", "meanstd", "none"])
def test_incremental_pooling_equals_numpy(mode):
    rng = np.random.default_rng(3)
    pieces = [rng.standard_normal((n, 8)).astype(np.float32) * 5 + 3 for n in (7, 1, 30, 12)]
    frames = np.concatenate(pieces)
    starts = np.cumsum([0] + [len(p) for p in pieces])
    pooler = Pooler(mode, len(frames))
    for index in [2, 0, 3, 1]:  # out of order, as batches finish
        pooler.add(int(starts[index]), pieces[index])
    expected = {
        "mean": frames.mean(0),
        "max": frames.max(0),
        "meanstd": np.concatenate([frames.mean(0), frames.std(0)]),
        "none": frames,
    }[mode]
    result = pooler.result()
    assert result.dtype == np.float32 and result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pool(frames, mode), expected, rtol=1e-5, atol=1e-5)


def test_pooling_rejects_unknown_mode_empty_and_missing_or_stray_frames():
    with pytest.raises(ValueError):
        Pooler("median", 1)
    with pytest.raises(ValueError):
        Pooler("mean", 1).result()
    frames = Pooler("none", 10)
    frames.add(0, np.zeros((6, 4), np.float32))
    with pytest.raises(ValueError, match="6 of 10 frames"):
        frames.result()
    with pytest.raises(ValueError, match="outside"):
        frames.add(6, np.zeros((5, 4), np.float32))


def test_batches_respect_limits_and_group_by_length():
    rng = np.random.default_rng(4)
    lengths = list(rng.integers(1_000, 100_000, size=50)) + [500_000]
    batches = make_batches(lengths, max_rows=8, max_samples=400_000)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert len(b) <= 8
        assert len(b) == 1 or len(b) * longest <= 400_000
    assert batches[0] == [50]  # a too-long chunk runs alone
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)


def test_pad_batch():
    batch, lengths = pad_batch([np.ones(3, np.float32), np.full(5, 2, np.float32)])
    assert batch.shape == (2, 5) and batch.dtype == np.float32
    np.testing.assert_array_equal(lengths, [3, 5])
    np.testing.assert_array_equal(batch[0], [1, 1, 1, 0, 0])
    wide, lengths = pad_batch([np.ones(3, np.float32)], multiple=4)
    assert wide.shape == (1, 4) and lengths.tolist() == [3]

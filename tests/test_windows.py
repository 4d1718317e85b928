"""--window/--hop: one pooled row per window, frames assigned by their centre time, HEAR-style times."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
import soundfile as sf

import w2v_embed
from w2v_embed.embedder import EmbedOptions, Embedder
from w2v_embed.errors import UsageError
from w2v_embed.pooling import WindowPooler, pool, window_ranges, window_times


def _brute_force(num_frames, rate, offset, window, hop):
    centres = offset + np.arange(num_frames) / rate
    out, start = [], 0.0
    while start <= centres[-1] + 1e-12:
        inside = np.flatnonzero((centres >= start - 1e-12) & (centres < start + window - 1e-12))
        out.append((inside[0], inside[-1] + 1))
        start += hop
    return np.array(out)


@pytest.mark.parametrize("window,hop", [(0.5, 0.25), (1.0, 1.0), (0.96, 0.48), (0.02, 0.02), (3.0, 0.7)])
def test_ranges_hold_the_frames_whose_centre_is_inside(window, hop):
    for frames in (1, 37, 100, 251):
        got = window_ranges(frames, 50.0, 0.0125, window, hop)
        np.testing.assert_array_equal(got, _brute_force(frames, 50.0, 0.0125, window, hop))
        assert (got[:, 1] > got[:, 0]).all()  # no empty window


def test_times_flag_the_partial_last_windows():
    starts, ends, partial = window_times(4, 1.0, 0.5, duration=2.2)
    np.testing.assert_allclose(starts, [0, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(ends, [1, 1.5, 2.0, 2.5])
    assert partial.tolist() == [False, False, False, True]


@pytest.mark.parametrize("mode", ["mean", "max", "meanstd"])
def test_window_pooler_equals_pooling_each_range_with_chunks_in_any_order(mode):
    rng = np.random.default_rng(3)
    frames = rng.standard_normal((250, 8)).astype(np.float32)
    ranges = window_ranges(len(frames), 50.0, 0.0125, 0.5, 0.2)
    pooler = WindowPooler(mode, ranges)
    cuts = [0, 33, 90, 91, 180, 250]
    for a, b in sorted(zip(cuts[:-1], cuts[1:]), key=lambda _: rng.random()):
        pooler.add(a, frames[a:b])
    assert not pooler.open  # every window finished and dropped
    expected = np.stack([pool(frames[a:b], mode) for a, b in ranges])
    np.testing.assert_allclose(pooler.result(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("pool_mode", ["mean", "meanstd"])
def test_embedder_windows_equal_pooling_the_frame_level_output(onnx_model, pool_mode):
    x = np.random.default_rng(4).standard_normal(16_000 * 31 + 555).astype(np.float32)
    model = onnx_model("stable")
    common = dict(chunk_seconds=10, context_seconds=2)  # windows across chunk edges
    frames = Embedder(model, device="cpu", options=EmbedOptions("1,last", "none", **common)).embed(x, 16_000)
    windows = Embedder(model, device="cpu", options=EmbedOptions(
        "1,last", pool_mode, window_seconds=1.0, hop_seconds=0.5, **common)).embed(x, 16_000)
    info = Embedder(model, device="cpu").info
    ranges = window_ranges(len(frames[1]), info.frame_rate, info.frame_center_offset, 1.0, 0.5)
    assert len(ranges) == 63  # starts 0, 0.5 … 31.0 s: the last frame is centred at 31.0125 s
    for layer in (1, "last"):
        expected = np.stack([pool(frames[layer][a:b], pool_mode) for a, b in ranges])
        np.testing.assert_allclose(windows[layer], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(window_seconds=1.0, pool="none"), "--window pools"), (dict(window_seconds=0.01), "--window 0.01"),
    (dict(window_seconds=1.0, hop_seconds=0.0), "--hop 0"), (dict(hop_seconds=0.5), "--hop needs --window"),
    (dict(window_seconds=float("nan")), "--window nan"),
    (dict(window_seconds=1.0, hop_seconds=1e-6), r"--hop 1e-06: expected at least 0.02 s \(one frame\)"),
    (dict(window_seconds=1.0, hop_seconds=0.019), "--hop 0.019"),
])
def test_bad_window_options(onnx_model, kwargs, needle):
    with pytest.raises(UsageError, match=needle):
        Embedder(onnx_model("group"), device="cpu", options=EmbedOptions(**{"pool": "mean", **kwargs}))


def test_cli_layout_load_and_open(onnx_model, tmp_path):
    for i, seconds in enumerate((3.3, 1.0)):
        sf.write(tmp_path / f"a{i}.wav", np.random.default_rng(i).uniform(-0.5, 0.5, int(16_000 * seconds)), 16_000)
    out = tmp_path / "w.h5"
    run = [sys.executable, "-m", "w2v_embed", "extract", str(tmp_path / "a0.wav"), str(tmp_path / "a1.wav"),
           "-o", str(out), "-m", str(onnx_model("group")), "--window", "1", "--hop", "0.5", "--quiet"]
    assert subprocess.run(run, capture_output=True, text=True).returncode == 0
    with h5py.File(out) as f:
        assert f.attrs["window_seconds"] == 1.0 and f.attrs["hop_seconds"] == 0.5
        offsets = f["offsets"][()]
        assert offsets.tolist() == [0, 7, 9]  # 3.3 s: windows at 0 … 3.0 s; 1.0 s: at 0 and 0.5 s
        assert f["last_hidden_state"].shape == (9, 32)
        np.testing.assert_allclose(f["window_start"][()], [0, .5, 1, 1.5, 2, 2.5, 3, 0, .5])
        assert f["window_partial"][()].tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 1]
    rows = w2v_embed.load(out)
    assert {k: v.shape for k, v in rows.items()} == {str(tmp_path / "a0.wav"): (7, 32), str(tmp_path / "a1.wav"): (2, 32)}
    times = w2v_embed.open(out).timestamps(1)
    np.testing.assert_allclose(times, [[0, 1], [0.5, 1.5]])
    # Resuming with another hop would mix rows: refused.
    proc = subprocess.run(run[:-5] + ["--window", "1", "--hop", "0.25", "--resume"], capture_output=True, text=True)
    assert proc.returncode != 0 and "hop" in proc.stderr

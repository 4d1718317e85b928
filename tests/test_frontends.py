"""Front ends against transformers' feature extractors: the waveform normalisation and w2v-BERT's fbank."""

from __future__ import annotations

import numpy as np
import pytest
from audio_utils import noise, sine

from w2v_embed.chunking import plan_chunks
from w2v_embed.errors import W2VEmbedError
from w2v_embed.frontends import fbank, frontend_for, waveform
from w2v_embed.frontends.fbank import GRID, Fbank, fbank_features
from w2v_embed.frontends.waveform import normalize

# --- waveform: normalize -------------------------------------------------------------------------


def _norm_reference(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return ((x64 - x64.mean()) / np.sqrt(x64.var() + 1e-7)).astype(np.float32)


@pytest.mark.parametrize("block", [7, 1 << 20])
def test_normalize_matches_float64_reference(monkeypatch, block):
    monkeypatch.setattr(waveform, "_NORM_BLOCK", block)
    x = (noise(3.0, 16000, amplitude=0.2, seed=3)[:, 0] + np.float32(0.05)).astype(np.float32)
    got = normalize(x)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, _norm_reference(x), rtol=0, atol=1e-6)
    assert abs(float(got.astype(np.float64).mean())) < 1e-6
    assert abs(float(got.astype(np.float64).std()) - 1) < 1e-5


def test_normalize_matches_transformers_formula_in_float32():
    x = noise(2.0, 16000, seed=4)[:, 0]
    hf = (x - x.mean()) / np.sqrt(x.var() + 1e-7)  # zero_mean_unit_var_norm, float32 numpy
    np.testing.assert_allclose(normalize(x), hf, rtol=0, atol=1e-5)


def test_normalize_constant_and_empty():
    np.testing.assert_array_equal(normalize(np.full(100, 0.3, np.float32)), np.zeros(100, np.float32))
    assert normalize(np.zeros(0, np.float32)).shape == (0,)


def test_normalize_in_place_overwrites_and_matches():
    x = np.random.default_rng(3).standard_normal(50_000).astype(np.float32) * 3 + 1
    expected = normalize(x.copy())
    out = normalize(x, inplace=True)
    assert out is x or np.shares_memory(out, x)
    np.testing.assert_array_equal(out, expected)


def test_waveform_front_end_normalises_only_when_the_checkpoint_asks():
    x = noise(1.0, 16000, seed=5)[:, 0] + np.float32(0.2)
    np.testing.assert_array_equal(frontend_for("waveform", 16000, GRID, True).prepare(x), normalize(x))
    assert frontend_for("waveform", 16000, GRID, False).prepare(x) is x


# --- fbank: SeamlessM4TFeatureExtractor -----------------------------------------------------------


def _seamless(x: np.ndarray) -> np.ndarray:
    """transformers' features of one clip, the frames its attention mask marks valid."""
    from transformers import SeamlessM4TFeatureExtractor

    out = SeamlessM4TFeatureExtractor()(x, sampling_rate=16_000, return_tensors="np")
    return out["input_features"][0, : int(out["attention_mask"].sum())]


@pytest.mark.parametrize("samples,tolerance", [(560, 1e-3), (879, 1e-3), (880, 1e-4), (4_321, 1e-4),
                                               (16_000, 1e-4), (40_000, 1e-4)])
def test_fbank_equals_seamless_m4t_feature_extractor(samples, tolerance):
    """Within 1e-4; with 2 fbank frames (560 samples: one row) each bin's variance is that of 2 values,
    close ones, and transformers' float32 statistics of them are ~3e-4 off (ours are float64)."""
    x = (0.2 * np.random.default_rng(samples).standard_normal(samples)).astype(np.float32)
    got = fbank_features(x)
    assert got.dtype == np.float32 and got.shape == (GRID.num_frames(samples), 160)
    assert np.abs(got - _seamless(x)).max() <= tolerance


def test_fbank_of_a_tone_with_a_dc_offset_equals_transformers():
    """A steady tone leaves some mel bins nearly constant: normalising them divides by a small deviation,
    which amplifies any rounding (with a float64 spectrum instead of transformers' complex64 this
    differed by 1.5e-4; the statistics are float64, transformers' float32: 6e-5 apart here)."""
    x = (sine(3.0, 16000, freq=220.0)[:, 0] + 0.3 * noise(3.0, 16000, seed=2)[:, 0] + 0.1).astype(np.float32)
    assert np.abs(fbank_features(x) - _seamless(x)).max() <= 1e-4


def test_fbank_blocks_do_not_change_the_features(monkeypatch):
    x = noise(2.0, 16000, seed=6)[:, 0]
    whole = fbank_features(x)
    monkeypatch.setattr(fbank, "_BLOCK", 7)
    np.testing.assert_allclose(fbank_features(x), whole, rtol=0, atol=1e-6)


def test_fbank_of_silence_is_finite_zeros():
    np.testing.assert_array_equal(fbank_features(np.zeros(8000, np.float32)), np.zeros((24, 160), np.float32))


def test_fbank_chunks_are_rows_of_the_whole_file():
    """Chunks start on the 320-sample grid: each chunk's input is the whole file's rows, normalised with the
    whole file's statistics (what transformers computes on the unchunked file)."""
    x = noise(7.3, 16000, seed=8)[:, 0]
    front = Fbank(16000, GRID)
    whole = front.prepare(x)
    chunks = plan_chunks(len(x), GRID, chunk_frames=100, context_frames=25)
    assert len(chunks) > 2
    for chunk in chunks:
        first = chunk.start // GRID.hop
        part = front.cut(whole, chunk)
        assert len(part) == GRID.num_frames(chunk.stop - chunk.start) and chunk.keep_stop <= len(part)
        np.testing.assert_array_equal(part, whole[first : first + len(part)])
    assert np.abs(whole - _seamless(x)).max() <= 1e-4


def test_an_unknown_front_end_is_one_clear_error():
    with pytest.raises(W2VEmbedError, match="front end 'cqt'.*upgrade"):
        frontend_for("cqt", 16000, GRID, True)

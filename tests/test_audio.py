"""Decoding and resampling: every format and rate equals the whole-signal soxr reference."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import soxr
from audio_utils import can_write, has_ffmpeg, noise, read_back, sine, write_audio, write_with_ffmpeg

from w2v_embed import audio, ffmpeg, resample
from w2v_embed.audio import TARGET_SAMPLE_RATE, AudioError, Decoded, decode, ffmpeg_executable
from w2v_embed.errors import W2VEmbedError

TOL = 1e-5
needs_ffmpeg = pytest.mark.skipif(not has_ffmpeg(), reason="ffmpeg not installed (apt-get install ffmpeg)")


def reference(data: np.ndarray, rate: int, channel: int | None = None) -> np.ndarray:
    """What decode must return: the whole signal downmixed, then resampled in one call."""
    mono = data[:, channel] if channel is not None else data.mean(axis=1, dtype=np.float32)
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    return mono if rate == TARGET_SAMPLE_RATE else soxr.resample(mono, rate, TARGET_SAMPLE_RATE, quality="HQ")


def assert_matches(got: Decoded, want: np.ndarray) -> None:
    assert got.samples.dtype == np.float32 and got.samples.ndim == 1
    assert got.samples.shape == want.shape
    assert np.abs(got.samples - want).max(initial=0.0) <= TOL


# --- formats ----------------------------------------------------------------------------------


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_wav_subtypes(tmp_path, subtype):
    data = noise(1.5, 44100, channels=2, amplitude=0.9)
    path = write_audio(tmp_path / f"{subtype}.wav", data, 44100, subtype=subtype)
    got = decode(path)
    assert (got.source_sample_rate, got.source_channels) == (44100, 2)
    assert_matches(got, reference(read_back(path)[0], 44100))
    quantum = {"PCM_16": 2**-15, "PCM_24": 2**-23, "PCM_32": 2**-31}.get(subtype, 1e-7)
    assert np.abs(read_back(path)[0] - data).max() <= quantum  # the file really holds `data`


def test_int16_full_scale_maps_to_unit_range(tmp_path):
    ints = np.array([-32768, -16384, 0, 16384, 32767] * 100, dtype=np.int16)
    path = tmp_path / "full.wav"
    sf.write(str(path), ints, 16000, subtype="PCM_16")
    got = decode(path).samples
    np.testing.assert_array_equal(got, ints.astype(np.float32) / 32768)
    assert got.min() == -1.0 and got.max() < 1.0


@pytest.mark.parametrize(
    "name, subtype, rate",
    [
        ("a.flac", "PCM_16", 44100),
        ("a.flac", "PCM_24", 96000),
        ("a.ogg", "VORBIS", 44100),
        ("a.opus", "OPUS", 48000),
        ("a.mp3", "MPEG_LAYER_III", 44100),
        ("a.aiff", "PCM_16", 22050),
        ("a.au", "FLOAT", 8000),
    ],
)
def test_container_formats(tmp_path, name, subtype, rate):
    fmt = {"opus": "OGG", "mp3": "MP3", "aiff": "AIFF", "au": "AU"}.get(name.rsplit(".", 1)[1], None)
    if not can_write(fmt or name.rsplit(".", 1)[1].upper(), subtype):
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {name} {subtype}")
    path = write_audio(tmp_path / name, sine(1.0, rate, channels=2), rate, subtype=subtype, fmt=fmt)
    data, file_rate = read_back(path)  # lossy codecs: compare with what libsndfile decodes
    got = decode(path)
    assert (got.source_sample_rate, got.source_channels) == (file_rate, 2)
    assert_matches(got, reference(data, file_rate))


def test_misnamed_file_is_read_by_content(tmp_path):
    data = sine(0.5, 16000)
    path = write_audio(tmp_path / "really-a-wav.m4a", data, 16000, subtype="FLOAT", fmt="WAV")
    np.testing.assert_array_equal(decode(path).samples, data[:, 0])


# --- channels and rates -----------------------------------------------------------------------


def test_stereo_is_mean_of_channels(tmp_path):
    data = noise(1.0, 16000, channels=2)
    path = write_audio(tmp_path / "st.wav", data, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(decode(path).samples, (data[:, 0] + data[:, 1]) / np.float32(2))


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_channel_pick(tmp_path, channel):
    data = noise(1.0, 16000, channels=3, seed=channel)
    path = write_audio(tmp_path / "three.wav", data, 16000, subtype="FLOAT")
    got = decode(path, channel=channel)
    np.testing.assert_array_equal(got.samples, data[:, channel])
    assert got.source_channels == 3


def test_channel_pick_with_resampling(tmp_path):
    data = noise(1.0, 44100, channels=2)
    path = write_audio(tmp_path / "st.wav", data, 44100, subtype="FLOAT")
    assert_matches(decode(path, channel=1), reference(data, 44100, channel=1))


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_resampling_equals_whole_signal_soxr(tmp_path, rate, channels):
    data = noise(2.3, rate, channels=channels)
    path = write_audio(tmp_path / "x.wav", data, rate, subtype="FLOAT")
    got = decode(path)
    assert got.source_sample_rate == rate
    assert abs(len(got.samples) - len(data) * TARGET_SAMPLE_RATE / rate) <= 1
    assert_matches(got, reference(data, rate))


def test_16k_passes_through_exactly(tmp_path, monkeypatch):
    data = noise(3.0, 16000)
    path = write_audio(tmp_path / "x.wav", data, 16000, subtype="FLOAT")
    monkeypatch.setattr(resample.soxr, "ResampleStream", None)  # would fail if soxr were used
    np.testing.assert_array_equal(decode(path).samples, data[:, 0])


def test_other_target_rate(tmp_path):
    data = noise(1.0, 44100, channels=2)
    path = write_audio(tmp_path / "x.wav", data, 44100, subtype="FLOAT")
    want = soxr.resample(data.mean(axis=1, dtype=np.float32), 44100, 8000, quality="HQ")
    got = decode(path, target_rate=8000).samples
    assert got.shape == want.shape and np.abs(got - want).max() <= TOL


@pytest.mark.parametrize("block_seconds", [0.0123, 0.5, 7.0, 1000.0])
def test_block_size_does_not_change_the_result(tmp_path, monkeypatch, block_seconds):
    data = noise(20.0, 44100, channels=2, seed=7)
    path = write_audio(tmp_path / "long.flac", data, 44100, subtype="PCM_24")
    want = reference(read_back(path)[0], 44100)
    monkeypatch.setattr(audio, "BLOCK_SECONDS", block_seconds)
    assert_matches(decode(path), want)


def test_output_grows_when_frame_count_is_unknown(tmp_path):
    data = noise(3.0, 22050)
    blocks = (data[i : i + 1000] for i in range(0, len(data), 1000))
    got = resample.resample_blocks(resample.Source(tmp_path / "x", blocks, 22050), TARGET_SAMPLE_RATE, None)
    want = reference(data, 22050)
    assert got.shape == want.shape and np.abs(got - want).max() <= TOL


# --- errors -----------------------------------------------------------------------------------


def _error(path, **kwargs) -> str:
    with pytest.raises(AudioError) as info:
        decode(path, **kwargs)
    message = str(info.value)
    assert isinstance(info.value, W2VEmbedError)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_file(tmp_path):
    assert "no such file" in _error(tmp_path / "nope.wav")


def test_broken_symlink(tmp_path):
    link = tmp_path / "dangling.wav"
    link.symlink_to(tmp_path / "gone.wav")
    assert "broken symlink" in _error(link)


def test_directory(tmp_path):
    assert "is a directory" in _error(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    assert "empty file" in _error(path)


def test_zero_frames(tmp_path):
    path = write_audio(tmp_path / "silent.wav", np.zeros((0, 2), np.float32), 44100, subtype="PCM_16")
    assert "0 frames" in _error(path)


@pytest.mark.parametrize("with_ffmpeg", [False, pytest.param(True, marks=needs_ffmpeg)])
def test_corrupt_file(tmp_path, monkeypatch, with_ffmpeg):
    if not with_ffmpeg:
        monkeypatch.setattr(ffmpeg, "ffmpeg_executable", lambda: None)
    path = tmp_path / "garbage.wav"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    message = _error(path)
    assert "not recognised" in message.lower() or "invalid data" in message.lower()


def test_truncated_flac(tmp_path):
    path = write_audio(tmp_path / "t.flac", noise(5.0, 44100), 44100)
    path.write_bytes(path.read_bytes()[:2000])  # header intact, most frames gone
    try:
        got = decode(path)  # libsndfile may return the frames it could read …
    except AudioError as exc:  # … or fail: either way, no crash and a one-line message
        assert "\n" not in str(exc)
    else:
        assert 0 < len(got.samples) < 5 * 16000


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path, bad):
    data = noise(1.0, 22050, channels=2)
    data[12345, 1] = bad
    path = write_audio(tmp_path / "bad.wav", data, 22050, subtype="FLOAT")
    assert "NaN or infinite" in _error(path)


@pytest.mark.parametrize("channel", [2, 5, -1])
def test_channel_out_of_range(tmp_path, channel):
    path = write_audio(tmp_path / "st.wav", noise(0.5, 16000, channels=2), 16000)
    message = _error(path, channel=channel)
    assert f"channel {channel} does not exist" in message and "2 channels" in message


# --- ffmpeg -----------------------------------------------------------------------------------


def _ffmpeg_reference(path, channel=None) -> tuple[np.ndarray, int, int]:
    """The whole file decoded by ffmpeg in one go (rate and channels from ffprobe)."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate,channels",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    rate, channels = (int(v) for v in probe.split(","))
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le", "pipe:1"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    data = np.frombuffer(raw, "<f4").reshape(-1, channels)
    return reference(data, rate, channel), rate, channels


@needs_ffmpeg
@pytest.mark.parametrize("channel", [None, 1])
def test_m4a_through_ffmpeg(tmp_path, channel):
    data = sine(2.0, 44100, channels=2, freq=300.0)
    path = write_with_ffmpeg(tmp_path / "speech.m4a", data, 44100, "-c:a", "aac", "-b:a", "128k")
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(path))  # really a format libsndfile cannot read
    want, rate, channels = _ffmpeg_reference(path, channel)
    got = decode(path, channel=channel)
    assert (got.source_sample_rate, got.source_channels) == (rate, channels) == (44100, 2)
    assert_matches(got, want)
    assert abs(len(got.samples) - 2 * TARGET_SAMPLE_RATE) < 0.05 * TARGET_SAMPLE_RATE
    clean = reference(data, 44100, channel)  # and it sounds like what was encoded
    n = min(len(clean), len(got.samples))
    assert np.corrcoef(clean[:n], got.samples[:n])[0, 1] > 0.95


@needs_ffmpeg
def test_ffmpeg_path_equals_libsndfile_path(tmp_path, monkeypatch):
    """Multichannel (WAVE_FORMAT_EXTENSIBLE header) and block-split PCM through the ffmpeg pipe."""
    monkeypatch.setattr(audio, "BLOCK_SECONDS", 0.0371)
    data = noise(2.0, 48000, channels=6, seed=11)
    path = write_audio(tmp_path / "six.wav", data, 48000, subtype="FLOAT")
    for channel in (None, 4):
        via_sf = decode(path, channel=channel)
        via_ffmpeg = audio._decode_with_ffmpeg(path, channel, TARGET_SAMPLE_RATE, "unused")
        assert (via_ffmpeg.source_sample_rate, via_ffmpeg.source_channels) == (48000, 6)
        np.testing.assert_array_equal(via_ffmpeg.samples, via_sf.samples)


@needs_ffmpeg
def test_ffmpeg_errors_are_one_line(tmp_path):
    data = sine(0.5, 16000, channels=2)
    path = write_with_ffmpeg(tmp_path / "a.m4a", data, 16000, "-c:a", "aac")
    assert "channel 3 does not exist" in _error(path, channel=3)
    video_only = tmp_path / "bad.m4a"
    video_only.write_bytes(path.read_bytes()[:300])  # container header without the audio
    _error(video_only)


def test_clear_error_without_ffmpeg(tmp_path, monkeypatch):
    monkeypatch.setattr(ffmpeg, "ffmpeg_executable", lambda: None)
    path = tmp_path / "voice.m4a"
    if has_ffmpeg():
        write_with_ffmpeg(path, sine(0.5, 16000), 16000, "-c:a", "aac")
    else:
        path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    message = _error(path)
    assert "libsndfile does not read this format" in message
    assert "apt-get install ffmpeg" in message and "w2v-embed[ffmpeg]" in message


def test_ffmpeg_executable_lookup(monkeypatch):
    monkeypatch.setattr(ffmpeg.shutil, "which", lambda name: "/opt/bin/ffmpeg" if name == "ffmpeg" else None)
    assert ffmpeg_executable() == "/opt/bin/ffmpeg"
    monkeypatch.setattr(ffmpeg.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # not installed
    assert ffmpeg_executable() is None
    fake = types.SimpleNamespace(get_ffmpeg_exe=lambda: "/site/imageio_ffmpeg/ffmpeg")
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", fake)
    assert ffmpeg_executable() == "/site/imageio_ffmpeg/ffmpeg"

    def missing_binary():
        raise RuntimeError("no ffmpeg exe could be found")

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", types.SimpleNamespace(get_ffmpeg_exe=missing_binary))
    assert ffmpeg_executable() is None


def test_unrunnable_ffmpeg_is_an_audio_error(tmp_path, monkeypatch):
    fake = tmp_path / "ffmpeg"
    fake.write_text("not a program")
    os.chmod(fake, 0o644)
    monkeypatch.setattr(ffmpeg, "ffmpeg_executable", lambda: str(fake))
    path = tmp_path / "x.m4a"
    path.write_bytes(bytes(100))
    assert "cannot run" in _error(path)


def test_a_named_pipe_fails_with_a_reason_without_being_opened(tmp_path):
    import threading

    import bad_inputs

    pipe = bad_inputs.fifo(tmp_path / "pipe.wav")
    outcome: list[str] = []
    reader = threading.Thread(target=lambda: outcome.append(_error(pipe)), daemon=True)
    reader.start()
    reader.join(timeout=20)  # opening a FIFO for reading blocks until a writer comes: forever
    assert outcome == [f"cannot decode {pipe}: not a regular file (a named pipe)"]

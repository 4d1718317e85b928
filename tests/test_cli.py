"""End to end through the command line, on generated audio in several formats, rates and channel counts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf

from conftest import _load_script, reference_states
from w2v_embed.runtime import OnnxModel
from w2v_embed.export.verify import cosine_rows

make_corpus = _load_script("make_example_audio").make_corpus


def cli(*args: str, cwd: Path | None = None, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "w2v_embed", *args], input=stdin, capture_output=True, text=True, timeout=600,
        cwd=cwd, env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "corpus"
    make_corpus(root)
    (root / ".hidden.wav").write_bytes(b"ignored")
    return root


def test_version_and_help():
    assert cli("--version").stdout.strip().startswith("w2v-embed ")
    for command in ("export", "extract", "merge", "info"):
        proc = cli(command, "--help")
        assert proc.returncode == 0 and "Examples" in proc.stdout, command
    assert "Exit codes" in cli("extract", "--help").stdout


def test_folder_to_pooled_h5(corpus, onnx_model, tmp_path):
    out = tmp_path / "feats.h5"
    proc = cli("extract", str(corpus), "-o", str(out), "-m", str(onnx_model("group")), "--layers", "1,3",
               "--pool", "mean", "--json-summary", "--chunk-seconds", "20", "--context-seconds", "2")
    assert proc.returncode == 1, proc.stderr  # one corrupt file
    summary = json.loads(proc.stdout)
    assert summary["ok"] == 5 and summary["failed"] == 1
    with h5py.File(out) as f:
        assert f.attrs["format"] == "w2v-embed/2" and f.attrs["pooling"] == "mean"
        assert list(f.attrs["layers"]) == ["1", "3"]
        assert f.attrs["sample_rate"] == 16000 and f.attrs["frame_rate"] == 50.0
        assert abs(f.attrs["frame_center_offset"] - 0.0125) < 1e-12
        paths = [p.decode() if isinstance(p, bytes) else p for p in f["paths"][()]]
        assert sorted(paths) == sorted(f"{corpus}/{n}" for n in
                                       ["speaker1/utt1.wav", "speaker1/utt2.flac", "speaker2/utt1.ogg",
                                        "speaker2/utt2.wav", "long/lecture.flac"])
        assert f["layer_1"].shape == (5, 32) and f["layer_3"].shape == (5, 32)
        assert np.isfinite(f["layer_3"][()]).all()
        rates = dict(zip(paths, f["source_sample_rate"][()]))
        assert rates[f"{corpus}/speaker1/utt2.flac"] == 44_100
        samples = dict(zip(paths, f["num_samples"][()]))
        assert samples[f"{corpus}/speaker2/utt2.wav"] == 8 * 16_000
        failed = [p.decode() if isinstance(p, bytes) else p for p in f["failed/paths"][()]]
        assert failed == [f"{corpus}/speaker2/corrupt.wav"] and len(f["failed/errors"]) == 1
    info = cli("info", str(out))
    assert info.returncode == 0 and "corrupt.wav" in info.stdout


def test_features_equal_reference_on_the_same_16k_signal(corpus, onnx_model, checkpoint_dir, reference_model, tmp_path):
    from transformers import Wav2Vec2FeatureExtractor

    wav = corpus / "speaker1" / "utt1.wav"  # 16 kHz mono: no resampling in between
    out = tmp_path / "one.h5"
    proc = cli("extract", str(wav), "-o", str(out), "-m", str(onnx_model("group")), "--layers", "all", "--pool", "none")
    assert proc.returncode == 0, proc.stderr
    x, rate = sf.read(wav, dtype="float32")
    assert rate == 16_000
    inputs = Wav2Vec2FeatureExtractor.from_pretrained(checkpoint_dir("group"))(x, sampling_rate=16_000, return_tensors="np")
    ref = reference_states(reference_model("group"), inputs.input_values[0])
    with h5py.File(out) as f:
        offsets = f["offsets"][()]
        assert list(offsets) == [0, (len(x) - 400) // 320 + 1]
        for k in range(4):
            assert np.abs(f[f"layer_{k}"][()] - ref[k]).max() <= 1e-4, k


def test_files_from_stdin_equals_folder_form(corpus, onnx_model, tmp_path):
    model = str(onnx_model("stable"))
    files = sorted(str(p) for p in corpus.rglob("*.flac"))
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    proc = cli("extract", "--files-from", "-", "-o", str(a), "-m", model, "--pool", "meanstd", stdin="\n".join(files) + "\n")
    assert proc.returncode == 0, proc.stderr
    proc = cli("extract", str(corpus), "--ext", "FLAC", "-o", str(b), "-m", model, "--pool", "meanstd")
    assert proc.returncode == 0, proc.stderr
    import w2v_embed

    paths_a, xa = w2v_embed.load(a)
    paths_b, xb = w2v_embed.load(b)
    assert list(paths_a) == list(paths_b) == files and xa.shape == (2, 64)
    np.testing.assert_allclose(xa, xb, atol=1e-6)


def test_frame_level_offsets_and_float16(corpus, onnx_model, tmp_path):
    out = tmp_path / "frames.h5"
    proc = cli("extract", str(corpus / "speaker1"), "-o", str(out), "-m", str(onnx_model("group")),
               "--pool", "none", "--dtype", "float16", "--quiet")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    info = OnnxModel(onnx_model("group"), device="cpu").info
    with h5py.File(out) as f:
        offsets, samples = f["offsets"][()], f["num_samples"][()]
        assert f["last_hidden_state"].dtype == np.float16
        assert f["last_hidden_state"].shape == (offsets[-1], 32)
        for i, n in enumerate(samples):
            assert offsets[i + 1] - offsets[i] == info.grid.num_frames(int(n))


def test_int8_export_prints_the_cosine_table_and_no_quantizer_noise(checkpoint_dir, tmp_path):
    proc = cli("export", str(checkpoint_dir("group")), "-o", str(tmp_path / "int8.onnx"), "--quantize", "int8")
    assert proc.returncode == 0 and "int8" in proc.stdout, proc.stderr
    assert "quantized vs float32" in proc.stderr and "WARNING" not in proc.stderr, proc.stderr


def test_fp16_export_then_extract_on_cpu_is_close_to_float32(corpus, onnx_model, checkpoint_dir, tmp_path):
    half = tmp_path / "half.onnx"
    proc = cli("export", str(checkpoint_dir("group")), "-o", str(half), "--quantize", "fp16")
    assert proc.returncode == 0 and "float16" in proc.stdout and "cosine" in proc.stderr, proc.stderr
    outputs = {}
    for name, model in (("half", half), ("full", onnx_model("group"))):
        outputs[name] = tmp_path / f"{name}.h5"
        proc = cli("extract", str(corpus / "speaker1"), "-o", str(outputs[name]), "-m", str(model), "--layers", "all")
        assert proc.returncode == 0, proc.stderr
        assert ("float16 models are made for --device cuda" in proc.stderr) == (name == "half")
    import w2v_embed

    for layer in (0, 2):
        _, a = w2v_embed.load(outputs["half"], layer=layer)
        _, b = w2v_embed.load(outputs["full"], layer=layer)
        assert a.shape == b.shape and cosine_rows(a, b).min() >= 0.995


def test_refuses_to_clobber_then_overwrite(corpus, onnx_model, tmp_path):
    out = tmp_path / "x.h5"
    args = ["extract", str(corpus / "speaker1"), "-o", str(out), "-m", str(onnx_model("group"))]
    assert cli(*args).returncode == 0
    proc = cli(*args)
    assert proc.returncode != 0 and "--overwrite" in proc.stderr and "Traceback" not in proc.stderr
    assert cli(*args, "--overwrite").returncode == 0


def test_usage_errors_exit_2(onnx_model, tmp_path):
    model = str(onnx_model("group"))
    assert cli("extract", "-o", str(tmp_path / "a.h5"), "-m", model).returncode == 2
    proc = cli("extract", str(tmp_path), "-o", str(tmp_path / "a.h5"), "-m", model, "--layers", "99")
    assert proc.returncode == 2 and "layer 99" in proc.stderr
    proc = cli("extract", str(tmp_path), "-o", str(tmp_path / "a.h5"), "-m", model, "--pool", "median")
    assert proc.returncode == 2


def test_missing_model_says_how_to_export(corpus, tmp_path):
    proc = cli("extract", str(corpus), "-o", str(tmp_path / "a.h5"), cwd=tmp_path, env={"W2V_EMBED_MODEL": ""})
    assert proc.returncode == 1 and "w2v-embed export" in proc.stderr


def test_cuda_without_gpu_is_a_clear_error(corpus, onnx_model, tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("a CUDA runtime is installed here")
    proc = cli("extract", str(corpus), "-o", str(tmp_path / "a.h5"), "-m", str(onnx_model("group")), "--device", "cuda")
    assert proc.returncode == 1 and "onnxruntime-gpu" in proc.stderr and "Traceback" not in proc.stderr
    assert "CUDA 13" in proc.stderr and "'onnxruntime-gpu<1.27'" in proc.stderr  # as docs/scaling.md says


def test_info_on_model(onnx_model):
    proc = cli("info", str(onnx_model("stable")))
    assert proc.returncode == 0 and "num_layers" in proc.stdout and "receptive_field" in proc.stdout


@pytest.mark.slow
def test_kill_mid_run_then_resume_equals_uninterrupted(onnx_model, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(60):
        sf.write(folder / f"f{i:03d}.wav", 0.1 * rng.standard_normal(int(16_000 * rng.uniform(1, 4))), 16_000)
    model = str(onnx_model("group"))
    full, out = tmp_path / "full.h5", tmp_path / "out.h5"
    assert cli("extract", str(folder), "-o", str(full), "-m", model, "--layers", "all").returncode == 0
    victim = subprocess.Popen([sys.executable, "-m", "w2v_embed", "extract", str(folder), "-o", str(out), "-m", model,
                               "--layers", "all", "--batch-size", "2", "--save-every", "5"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = Path(str(out) + ".parts")
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("seg-*.h5"))) < 2:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not out.exists() and len(list(parts.glob("seg-*.h5"))) >= 2
    proc = cli("extract", str(folder), "-o", str(out), "-m", model, "--layers", "all", "--resume", "--json-summary")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["skipped"] >= 10
    proc = cli("extract", str(folder), "-o", str(out), "-m", model, "--layers", "1", "--resume")
    assert proc.returncode != 0 and "layers" in proc.stderr
    import w2v_embed

    pa, xa = w2v_embed.load(full, layer=3)
    pb, xb = w2v_embed.load(out, layer=3)
    order = {p: i for i, p in enumerate(pb)}
    assert sorted(pa) == sorted(pb) and len(set(pb)) == 60
    np.testing.assert_allclose(xa, xb[[order[p] for p in pa]], atol=1e-6)


def test_m4a_through_ffmpeg(onnx_model, tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    wav = tmp_path / "a.wav"
    sf.write(wav, 0.1 * np.random.default_rng(0).standard_normal(44_100 * 2), 44_100)
    m4a = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    out = tmp_path / "m.h5"
    proc = cli("extract", str(m4a), "-o", str(out), "-m", str(onnx_model("group")))
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        assert abs(int(f["num_samples"][0]) - 32_000) < 2_000 and f["source_sample_rate"][0] == 44_100


def test_default_layer_is_last_hidden_state(onnx_model, reference_model, tmp_path):
    """`last` (the default) stored as /last_hidden_state beside numbered layers, loaded by default, shown by info."""
    import torch

    import w2v_embed

    x = np.random.default_rng(11).uniform(-0.5, 0.5, 20_000).astype(np.float32)
    sf.write(tmp_path / "a.wav", x, 16_000, subtype="FLOAT")
    out = tmp_path / "last.h5"
    proc = cli("extract", str(tmp_path / "a.wav"), "-o", str(out), "-m", str(onnx_model("stable")), "--layers", "2,last")
    assert proc.returncode == 0, proc.stderr
    with torch.no_grad():
        ref = reference_model("stable")(torch.from_numpy(x[None]), output_hidden_states=True)
    paths, pooled = w2v_embed.load(out)  # default: last
    np.testing.assert_allclose(pooled[0], ref.last_hidden_state[0].numpy().mean(0), atol=1e-4)
    _, layer2 = w2v_embed.load(out, layer=2)
    np.testing.assert_allclose(layer2[0], ref.hidden_states[2][0].numpy().mean(0), atol=1e-4)
    assert np.abs(layer2 - pooled).max() > 0.01
    with h5py.File(out) as f:
        assert list(f.attrs["layers"]) == ["2", "last"] and {"layer_2", "last_hidden_state"} <= set(f)
    shown = cli("info", str(out)).stdout
    assert "'2', 'last'" in shown or "2, last" in shown, shown


@pytest.mark.parametrize(
    "option, value",
    [(o, v) for o, values in {
        "--chunk-seconds": ["nan", "0.01"], "--context-seconds": ["inf"], "--max-batch-seconds": ["0", "nan"],
        "--batch-size": ["0"], "--threads": ["0", "-1", "1000"], "--save-every": ["0"], "--device": ["gpu"],
        "--channel": ["-1"],
    }.items() for v in values],
)
def test_every_bad_option_value_is_a_usage_error_naming_the_option(onnx_model, tmp_path, option, value):
    from typer.testing import CliRunner

    from w2v_embed.cli import app

    wav = tmp_path / "a.wav"
    sf.write(str(wav), np.zeros(16_000, np.float32), 16_000)
    out = tmp_path / "o.h5"
    result = CliRunner().invoke(app, ["extract", str(wav), "-o", str(out), "-m", str(onnx_model("group")), option, value])
    assert result.exit_code == 2, result.output
    assert f"error: {option} " in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_info_on_an_unfinished_output_says_what_load_says(tmp_path):
    from typer.testing import CliRunner

    from w2v_embed.cli import app
    from w2v_embed.store import FeatureWriter, RunInfo
    from w2v_embed.store.sink import Row

    out = tmp_path / "x.h5"
    writer = FeatureWriter(out, RunInfo("m", "ab" * 32, (1,), "mean", 4))
    writer.add(Row(0, "a.wav", 400, 16_000, {1: np.zeros(4, np.float32)}))
    writer.abort()  # as after Ctrl-C
    result = CliRunner().invoke(app, ["info", str(out)])
    assert result.exit_code == 1
    assert result.output == f"error: {out} is not finished yet; rerun the extraction with --resume to complete it\n"
    result = CliRunner().invoke(app, ["info", str(tmp_path)])  # not HDF5's errno text
    assert result.output == f"error: {tmp_path} is a folder; give the .h5 file that `w2v-embed extract` wrote\n"


def test_an_input_that_repeats_a_listed_file_is_said_and_counted_and_refused_for_km(corpus, onnx_model, tmp_path):
    """A repeated --files-from line (or a symlink to a listed file) is stored once, under its first name:
    the run says so and counts it; a .km, one line per input by position, is refused before anything runs."""
    model = str(onnx_model("group"))
    first, second = sorted(str(p) for p in corpus.rglob("*.flac"))[:2]
    (tmp_path / "alias.flac").symlink_to(first)
    listing = "\n".join([first, second, first, str(tmp_path / "alias.flac")]) + "\n"
    out = tmp_path / "r.h5"
    proc = cli("extract", "--files-from", "-", "-o", str(out), "-m", model, "--json-summary", stdin=listing)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["ok"], summary["repeated"]) == (2, 2)
    proc = cli("extract", "--files-from", "-", "-o", str(out), "-m", model, "--overwrite", stdin=listing)
    assert proc.returncode == 0, proc.stderr
    assert f"note: 2 inputs name a file listed before and are stored once, under its first name: {first}" in proc.stderr
    assert f"{tmp_path / 'alias.flac'} (= {first})" in proc.stderr
    import w2v_embed

    assert list(w2v_embed.load(out)[0]) == [first, second]
    codebook = tmp_path / "c.npy"
    np.save(codebook, np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32))
    km = tmp_path / "train.km"
    proc = cli("extract", "--files-from", "-", "-o", str(km), "-m", model, "--units", str(codebook), "--layers", "2",
               stdin=listing)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "one line per input" in lines[0], proc.stderr
    assert not km.exists() and not list(tmp_path.glob("train.km*"))
    shard = tmp_path / "units.0.h5"  # shards of units are merged into a .km: refused alike
    proc = cli("extract", "--files-from", "-", "-o", str(shard), "-m", model, "--units", str(codebook), "--layers", "2",
               "--shard", "0/2", stdin=listing)
    assert proc.returncode == 2 and "one line per input" in proc.stderr and not shard.exists(), proc.stderr


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["--files-from", "-"], "\n  \n", "error: --files-from -: lists no files"),
    (["A", "--layers", ""], None, "error: --layers '': expected"),
    (["A", "-o", "-", "--dtype", "float16"], None, "error: --dtype float16"),
    (["A", "--units", "C", "--layers", "2", "--pool", "max"], None, "error: --pool max"),
    (["A", "--ray-timeout", "0"], None, "error: --ray-timeout 0: goes with --ray"),
    (["A", "--ray-actors", "3"], None, "error: --ray-actors 3: goes with --ray"),
])
def test_an_option_that_would_be_ignored_or_an_empty_list_is_one_usage_error(onnx_model, tmp_path, args, stdin, message):
    """Nothing the user asked for is dropped without a word: --pool with --units (units are per frame),
    --dtype with -o - (JSON numbers), an empty --layers, and an empty list is said as such."""
    wav = tmp_path / "a.wav"
    sf.write(str(wav), np.random.default_rng(0).uniform(-0.3, 0.3, 16_000).astype(np.float32), 16_000)
    np.save(tmp_path / "c.npy", np.zeros((4, 32), np.float32))
    args = [str(wav) if a == "A" else str(tmp_path / "c.npy") if a == "C" else a for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "o.h5")]
    proc = cli("extract", *args, "-m", str(onnx_model("group")), stdin=stdin)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[0].startswith(message), proc.stderr
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.parametrize(("command", "shown"), [
    ("extract", "[default: last]"), ("extract", "[default: mean]"), ("convert", "[default: last when stored"),
    ("convert", "[default: the folder holding every name]"), ("kmeans", "[default: 10"), ("probe", "[default: FEATS.probe.png]"),
])
def test_defaults_written_in_help_texts_are_shown_not_eaten_as_markup(command, shown):
    """rich reads '[default: …]' in a help string as a markup tag and drops it; README sends readers to --help."""
    proc = cli(command, "--help", env={"COLUMNS": "400", "TERM": "dumb"})
    assert proc.returncode == 0 and shown in " ".join(proc.stdout.split()), proc.stdout

"""Export: parity with transformers per layer, padded-batch exactness, metadata, bad input, hub cache."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import VARIANTS, make_checkpoint, reference_states
from w2v_embed.batching import pad_batch
from w2v_embed.errors import W2VEmbedError
from w2v_embed.export import ExportOptions, export_model
from w2v_embed.export.verify import cosine_rows
from w2v_embed.runtime import OnnxModel


@pytest.mark.parametrize("variant", VARIANTS)
def test_export_matches_reference_per_layer(variant, onnx_model, reference_model):
    model = OnnxModel(onnx_model(variant), device="cpu")
    rng = np.random.default_rng(1)
    x = rng.standard_normal(12_345).astype(np.float32)
    layers = list(range(model.info.num_layers + 1))
    got = model.run(x[None], np.array([len(x)]), layers)
    ref = reference_states(reference_model(variant), x)
    assert len(ref) == len(layers)
    for k in layers:
        assert got[k][0].shape == ref[k].shape
        assert np.abs(got[k][0] - ref[k]).max() <= 1e-4, f"layer {k}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_padded_batch_rows_equal_rows_alone(variant, onnx_model):
    model = OnnxModel(onnx_model(variant), device="cpu")
    rng = np.random.default_rng(2)
    lengths = rng.integers(400, 30_000, size=5)
    signals = [rng.standard_normal(n).astype(np.float32) * rng.uniform(0.01, 3) for n in lengths]
    batch = np.zeros((len(signals), lengths.max()), np.float32)
    for i, s in enumerate(signals):
        batch[i, : len(s)] = s
    layers = list(range(model.info.num_layers + 1))
    together = model.run(batch, lengths, layers)
    for i, s in enumerate(signals):
        alone = model.run(s[None], np.array([len(s)]), layers)
        frames = model.info.grid.num_frames(len(s))
        for k in layers:
            assert alone[k].shape[1] == frames
            assert np.abs(together[k][i, :frames] - alone[k][0]).max() <= 1e-4, (i, k)


def test_verification_report_and_metadata(checkpoint_dir, tmp_path):
    result = export_model(str(checkpoint_dir("group")), ExportOptions(output=tmp_path / "m.onnx"))
    assert result.report.ok and result.report.max_abs_diff <= 1e-4
    assert [r.layer for r in result.report.layers] == [0, 1, 2, 3, "last"]
    assert all(r.min_cosine > 0.99999 for r in result.report.layers)
    info = OnnxModel(result.path, device="cpu").info
    config = json.loads((checkpoint_dir("group") / "config.json").read_text())
    assert info.num_layers == config["num_hidden_layers"] and info.hidden_size == config["hidden_size"]
    assert info.grid.hop == 320 and info.grid.receptive_field == 400 and info.frame_rate == 50.0
    assert info.do_normalize is True and info.feat_extract_norm == "group"
    assert info.source == str(checkpoint_dir("group")) and len(info.weights_sha256) == 64
    assert not [p for p in tmp_path.iterdir() if p.name != "m.onnx"], "temp files left behind"


def test_stable_variant_metadata(onnx_model):
    info = OnnxModel(onnx_model("stable"), device="cpu").info
    assert info.do_stable_layer_norm and info.feat_extract_norm == "layer" and info.do_normalize is False


def test_pytorch_bin_checkpoint(tmp_path, reference_model):
    folder = make_checkpoint(tmp_path / "ck", "group", fmt="bin")
    result = export_model(str(folder), ExportOptions(output=tmp_path / "bin.onnx"))
    assert result.report.ok


def _expect_error(source: Path, out: Path, *needles: str) -> None:
    with pytest.raises(W2VEmbedError) as info:
        export_model(str(source), ExportOptions(output=out, verify=False))
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))


def test_folder_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    _expect_error(tmp_path / "empty", tmp_path / "x.onnx", "config.json")


def test_truncated_weights(checkpoint_dir, tmp_path):
    folder = tmp_path / "trunc"
    shutil.copytree(checkpoint_dir("group"), folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _expect_error(folder, tmp_path / "x.onnx", "model.safetensors")


def test_config_that_does_not_match_weights(checkpoint_dir, tmp_path):
    folder = tmp_path / "mismatch"
    shutil.copytree(checkpoint_dir("group"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["hidden_size"] = 48
    (folder / "config.json").write_text(json.dumps(config))
    _expect_error(folder, tmp_path / "x.onnx", "model.safetensors", "shape")


@pytest.mark.parametrize("model_type", ["sew", "sew-d", "speecht5"])
def test_unknown_model_type(checkpoint_dir, tmp_path, model_type):
    from w2v_embed.export.families import SUPPORTED_MODEL_TYPES

    folder = tmp_path / model_type
    shutil.copytree(checkpoint_dir("group"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = model_type
    (folder / "config.json").write_text(json.dumps(config))
    _expect_error(folder, tmp_path / "x.onnx", model_type, "not supported",
                  f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    assert {"data2vec-audio", "hubert", "unispeech", "unispeech-sat", "wav2vec2", "wav2vec2-bert", "wav2vec2-conformer",
            "wavlm"} <= set(SUPPORTED_MODEL_TYPES)


def _hub_cache(root: Path, repo_id: str, checkpoint: Path, commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """The on-disk layout huggingface_hub reads in offline mode: refs/main -> snapshots/<commit>/files."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(checkpoint, repo / "snapshots" / commit)
    return root


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "w2v_embed", *args], env={**os.environ, **env}, cwd=cwd,
        capture_output=True, text=True, timeout=300,
    )


def test_hub_id_from_local_cache_offline(checkpoint_dir, tmp_path):
    cache = _hub_cache(tmp_path / "hub", "someone/tiny-w2v", checkpoint_dir("stable"))
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "home")}
    proc = _cli("export", "someone/tiny-w2v", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    model = OnnxModel(tmp_path / "models" / "tiny-w2v.onnx", device="cpu")
    assert model.info.source == "someone/tiny-w2v"
    assert model.info.revision == "0123456789abcdef0123456789abcdef01234567"


def test_hub_unreachable_is_one_clear_line(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache"), "HF_HOME": str(tmp_path / "home")}
    proc = _cli("export", "flax-community/wav2vec2-german", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "local cache" in proc.stderr and "folder" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_int8_export_reports_cosine_and_marks_precision(checkpoint_dir, tmp_path):
    out = tmp_path / "int8.onnx"
    result = export_model(str(checkpoint_dir("stable")), ExportOptions(output=out, quantize="int8", min_cosine=0.99))
    assert result.quantization is not None and result.quantization.ok
    assert all(r.min_cosine >= 0.99 for r in result.quantization.layers)
    assert result.info.precision == "int8" and OnnxModel(out, device="cpu").info.precision == "int8"


def test_int8_weights_fit_7_bits_so_cpus_without_vnni_do_not_saturate(checkpoint_dir, tmp_path):
    """u8 activations × s8 weights run through VPMADDUBSW on AVX2 CPUs without VNNI, whose int16 pair sums
    saturate once 2·255·|w| > 32767: full-range weights gave cosine 0.97 on a Zen 3 where a Zen 5 gave 0.9999.
    Weights within ±64 cannot saturate on any x86 CPU, so an int8 model exported on one CPU holds on every other."""
    import onnx
    from onnx import numpy_helper

    out = tmp_path / "int8.onnx"
    export_model(str(checkpoint_dir("group")), ExportOptions(output=out, quantize="int8"))
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer
               if t.data_type == onnx.TensorProto.INT8]
    assert weights and max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64
    assert 2 * 255 * 64 <= 32767


@pytest.mark.parametrize("variant", ["group", "stable"])
def test_fp16_export_keeps_float32_io_and_cosine(checkpoint_dir, onnx_model, tmp_path, variant):
    import onnx

    out = tmp_path / "fp16.onnx"
    result = export_model(str(checkpoint_dir(variant)), ExportOptions(output=out, quantize="fp16"))
    assert result.quantization.ok and result.quantization.worst_cosine >= 0.995
    assert result.info.precision == "float16" and OnnxModel(out, device="cpu").info.precision == "float16"
    graph = onnx.load(str(out)).graph
    # Only the first conv block of group-norm models stays float32 (its sums overflow float16).
    weights = [t for t in graph.initializer if len(t.dims) >= 2]
    wide = [t for t in weights if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)]
    assert all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights if t not in wide)
    assert bool(wide) == (variant == "group")
    assert all(np.prod(t.dims) <= 16 * 10 for t in wide)  # first conv: 16 channels × kernel 10
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in [graph.input[0], *graph.output])
    # A 24 s chunk (20 s + 2 × 2 s context): the first block's sums would overflow float16.
    x = np.random.default_rng(0).standard_normal((1, 24 * 16_000)).astype(np.float32)
    half = OnnxModel(out, device="cpu").run(x, [x.shape[1]], [0, 2])
    full = OnnxModel(onnx_model(variant), device="cpu").run(x, [x.shape[1]], [0, 2])
    for k in (0, 2):
        assert np.isfinite(half[k]).all() and cosine_rows(half[k][0], full[k][0]).min() >= 0.995


def test_unknown_quantize_is_refused_before_any_work(tmp_path):
    with pytest.raises(W2VEmbedError, match="expected one of int8, fp16"):
        export_model(str(tmp_path / "nowhere"), ExportOptions(output=tmp_path / "x.onnx", quantize="int4"))


def test_int8_export_that_loses_accuracy_is_refused(checkpoint_dir, tmp_path):
    out = tmp_path / "int8.onnx"
    with pytest.raises(W2VEmbedError, match="int8 accuracy check failed"):
        export_model(str(checkpoint_dir("stable")), ExportOptions(output=out, quantize="int8", min_cosine=1.000001))
    assert not out.exists() and not list(tmp_path.iterdir())


def _reference_last(model, signals: list[np.ndarray]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        return [model(torch.from_numpy(x[None])).last_hidden_state[0].numpy() for x in signals]


@pytest.mark.parametrize("variant", VARIANTS)
def test_last_is_last_hidden_state_alone_and_padded(variant, onnx_model, reference_model):
    model = OnnxModel(onnx_model(variant), device="cpu")
    rng = np.random.default_rng(5)
    signals = [rng.standard_normal(n).astype(np.float32) for n in (24_000, 5_555, 16_000)]
    expected = _reference_last(reference_model(variant), signals)
    batch, lengths = pad_batch(signals)
    together = model.run(batch, lengths, ["last"])["last"]
    top = model.info.num_layers
    for i, (x, ref) in enumerate(zip(signals, expected)):
        alone = model.run(x[None], np.array([len(x)]), [top, "last"])
        assert np.abs(alone["last"][0] - ref).max() <= 1e-4
        assert np.abs(together[i, : len(ref)] - ref).max() <= 1e-4
        gap = np.abs(alone[top][0] - alone["last"][0]).max()
        # Post-norm: layer L is last_hidden_state; stable: L is before the encoder's final LayerNorm.
        assert gap == 0.0 if variant == "group" else gap > 0.1


@pytest.mark.parametrize("variant", VARIANTS)
def test_models_exported_without_last_output(variant, onnx_model, tmp_path):
    """Models from before `last_hidden_state` existed: fine where it equals layer L, else one clear error."""
    from w2v_embed.graphcut import cut_model

    source = onnx_model(variant)
    layers = [f"hidden_state_{k}" for k in range(OnnxModel(source, device="cpu").info.num_layers + 1)]
    old = tmp_path / "old.onnx"
    old.write_bytes(cut_model(source.read_bytes(), layers))
    model = OnnxModel(old, device="cpu")
    x = np.random.default_rng(6).standard_normal((1, 8_000)).astype(np.float32)
    if variant == "group":
        got = model.run(x, [8_000], ["last"])["last"]
        np.testing.assert_array_equal(got, OnnxModel(source, device="cpu").run(x, [8_000], ["last"])["last"])
    else:
        with pytest.raises(W2VEmbedError, match="export it again"):
            model.run(x, [8_000], ["last"])


def test_export_refuses_an_existing_file_or_a_folder_before_working(checkpoint_dir, tmp_path, monkeypatch):
    from w2v_embed.errors import UsageError

    existing = tmp_path / "m.onnx"
    existing.write_bytes(b"an earlier model")
    monkeypatch.setattr("w2v_embed.export.convert.resolve", lambda *a: pytest.fail("refuse before fetching anything"))
    with pytest.raises(UsageError, match=r"m\.onnx exists; pass --overwrite to replace it"):
        export_model(str(checkpoint_dir("group")), ExportOptions(output=existing, verify=False))
    with pytest.raises(UsageError, match=r"is a folder; give a file name, e\.g\. .*model\.onnx"):
        export_model(str(checkpoint_dir("group")), ExportOptions(output=tmp_path, verify=False))
    monkeypatch.undo()
    export_model(str(checkpoint_dir("group")), ExportOptions(output=existing, verify=False, overwrite=True))
    assert OnnxModel(existing, device="cpu").info.num_layers == 3


def test_an_export_onto_a_pipe_is_refused_even_with_overwrite(tmp_path):
    from w2v_embed.errors import UsageError

    fifo = tmp_path / "m.onnx"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match=r"m\.onnx is a named pipe, not a file"):
        export_model(str(tmp_path / "no-checkpoint-needed"), ExportOptions(output=fifo, overwrite=True))
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.parametrize(("field", "value"), [("sampling_rate", 8000), ("feature_size", 2)])
def test_a_feature_extractor_asking_for_other_input_is_refused(checkpoint_dir, tmp_path, field, value):
    """extract feeds 16 kHz audio (or 80-bin fbank pairs): a telephony model's 8 kHz, which transformers'
    feature extractor would insist on, is refused at export instead of fed the wrong audio silently."""
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(checkpoint_dir("stable"), checkpoint)
    config = checkpoint / "preprocessor_config.json"
    base = json.loads(config.read_text()) if config.exists() else {}
    config.write_text(json.dumps({**base, field: value}))
    with pytest.raises(W2VEmbedError, match=rf"preprocessor_config\.json: {field} {value}, but w2v-embed feeds"):
        export_model(str(checkpoint), ExportOptions(output=tmp_path / "m.onnx", verify=False))
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(("opset", "message"), [(11, r"--opset 11: expected 12 or later"),
                                                 (0, r"--opset 0: expected 12 or later"),
                                                 (99, r"--opset 99: .*99")])
def test_an_opset_the_graph_or_the_exporter_cannot_take_is_one_usage_error(checkpoint_dir, tmp_path, opset, message):
    from w2v_embed.errors import UsageError

    with pytest.raises(UsageError, match=message):
        export_model(str(checkpoint_dir("group")), ExportOptions(output=tmp_path / "m.onnx", opset=opset, verify=False))
    assert sorted(os.listdir(tmp_path)) == []  # no temporary folder left


def test_an_output_folder_that_cannot_be_made_is_one_error(checkpoint_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(W2VEmbedError, match=r"^cannot write .*file/sub/m\.onnx: "):
        export_model(str(checkpoint_dir("group")), ExportOptions(output=blocker / "sub" / "m.onnx", verify=False))


def test_an_export_over_its_own_checkpoint_is_refused_even_with_overwrite(checkpoint_dir, tmp_path):
    from w2v_embed.errors import UsageError

    checkpoint = tmp_path / "ck"
    shutil.copytree(checkpoint_dir("group"), checkpoint)
    weights = checkpoint / "model.safetensors"
    before = weights.read_bytes()
    with pytest.raises(UsageError, match=r"model\.safetensors is a file of the checkpoint being exported"):
        export_model(str(checkpoint), ExportOptions(output=weights, overwrite=True, verify=False))
    assert weights.read_bytes() == before


def test_export_to_stdout_is_refused(checkpoint_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "w2v_embed", "export", str(checkpoint_dir("group")), "-o", "-"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and "error: -o -: export writes an ONNX file" in proc.stderr, proc.stderr
    assert os.listdir(tmp_path) == []

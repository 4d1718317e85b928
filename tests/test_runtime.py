"""The runtimes behind the session interface: OpenVINO against ONNX Runtime, and the choice between them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import VARIANTS
from w2v_embed.errors import UsageError
from w2v_embed.runtime import OnnxModel

openvino = pytest.importorskip("openvino", reason="needs the openvino extra")


def _batches() -> list[tuple[np.ndarray, np.ndarray]]:
    """Dynamic shapes: two padded rows of different lengths, then one row of another length."""
    rng = np.random.default_rng(11)
    two = rng.standard_normal((2, 24_000)).astype(np.float32)
    two[1, 17_000:] = 0.0
    return [(two, np.array([24_000, 17_000])), (rng.standard_normal((1, 9_999)).astype(np.float32), np.array([9_999]))]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("layers", [["all"], [1], [0, "last"]], ids=["all", "cut-after-1", "0-and-last"])
def test_openvino_equals_onnxruntime(variant, layers, onnx_model):
    ort = OnnxModel(onnx_model(variant), device="cpu", runtime="onnxruntime")
    ov = OnnxModel(onnx_model(variant), device="cpu", runtime="openvino")
    assert ov.runtime.name == "openvino" and ort.runtime.name == "onnxruntime"
    wanted = list(range(ort.info.num_layers + 1)) + ["last"] if layers == ["all"] else layers
    for x, lengths in _batches():
        a, b = ort.run(x, lengths, wanted), ov.run(x, lengths, wanted)
        for k in wanted:
            assert a[k].shape == b[k].shape
            assert np.abs(a[k] - b[k]).max() <= 1e-4, k
    if layers == [1]:  # early exit: the cut graph, not the whole one, was compiled
        outputs = ov.sessions[1].outputs
        assert sorted(ov.sessions) == [1] and {"hidden_state_0", "hidden_state_1"} <= outputs
        assert "hidden_state_2" not in outputs and "last_hidden_state" not in outputs


def test_openvino_runs_the_int8_export_like_onnxruntime(checkpoint_dir, tmp_path):
    from w2v_embed.export import ExportOptions, export_model

    path = export_model(str(checkpoint_dir("group")), ExportOptions(output=tmp_path / "q.onnx", quantize="int8")).path
    ort = OnnxModel(path, device="cpu", runtime="onnxruntime")
    ov = OnnxModel(path, device="cpu", runtime="openvino")
    for x, lengths in _batches():
        a, b = ort.run(x, lengths, [0, "last"]), ov.run(x, lengths, [0, "last"])
        assert max(np.abs(a[k] - b[k]).max() for k in a) <= 1e-4


def test_outputs_are_not_overwritten_by_the_next_batch(onnx_model):
    ov = OnnxModel(onnx_model("group"), device="cpu", runtime="openvino")
    (x1, l1), (x2, l2) = _batches()
    first = ov.run(x1, l1, ["last"])["last"]
    kept = first.copy()
    ov.run(x1[:, ::-1].copy(), l1, ["last"])
    np.testing.assert_array_equal(first, kept)


@pytest.mark.parametrize("faster", ["onnxruntime", "openvino"])
def test_auto_takes_the_faster_runtime_per_precision(onnx_model, monkeypatch, faster):
    from w2v_embed.runtime import select

    monkeypatch.setitem(select.AUTO_CPU, "float32", faster)
    model = OnnxModel(onnx_model("group"), device="cpu")
    assert model.runtime.name == faster and model.note is None
    assert OnnxModel(onnx_model("group"), device="cpu", runtime="onnxruntime").runtime.name == "onnxruntime"


def test_runtime_choices_refused_by_name(onnx_model):
    with pytest.raises(UsageError, match="--runtime tensorrt: expected one of auto, onnxruntime, openvino"):
        OnnxModel(onnx_model("group"), device="cpu", runtime="tensorrt")
    with pytest.raises(UsageError, match="--runtime openvino runs on the CPU"):
        OnnxModel(onnx_model("group"), device="cuda", runtime="openvino")


def test_without_openvino_falls_back_with_one_note(onnx_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    monkeypatch.delitem(sys.modules, "w2v_embed.runtime.openvino", raising=False)
    asked = OnnxModel(onnx_model("group"), device="cpu", runtime="openvino")
    assert asked.runtime.name == "onnxruntime"
    assert asked.note == "--runtime openvino needs the 'openvino' extra: pip install 'w2v-embed[openvino]'; running on onnxruntime"
    from w2v_embed.runtime import select

    monkeypatch.setitem(select.AUTO_CPU, "float32", "openvino")
    auto = OnnxModel(onnx_model("group"), device="cpu")
    assert auto.runtime.name == "onnxruntime" and auto.note is None


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "w2v_embed", *args], capture_output=True, text=True, timeout=600)


def test_extract_runtime_flag_gives_the_same_features(onnx_model, tmp_path):
    from audio_utils import noise, write_audio
    from w2v_embed.store import load

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seconds in enumerate([0.7, 3.2, 1.5]):
        write_audio(corpus / f"f{i}.wav", noise(seconds, 16_000, seed=i), 16_000)
    rows = {}
    for runtime in ("onnxruntime", "openvino"):
        out = tmp_path / f"{runtime}.h5"
        proc = _cli("extract", str(corpus), "-o", str(out), "-m", str(onnx_model("stable")), "--runtime", runtime,
                    "--layers", "0,last", "--device", "cpu")
        assert proc.returncode == 0 and "note:" not in proc.stderr, proc.stderr
        rows[runtime] = [load(out, layer) for layer in (0, "last")]
    for (paths, a), (same_paths, b) in zip(rows["onnxruntime"], rows["openvino"]):
        assert paths == same_paths and len(paths) == 3
        assert np.abs(a - b).max() <= 1e-4
    proc = _cli("extract", str(corpus), "-o", str(tmp_path / "x.h5"), "-m", str(onnx_model("stable")), "--runtime", "tvm")
    assert proc.returncode == 2 and "--runtime tvm: expected one of auto, onnxruntime, openvino" in proc.stderr

"""Models over protobuf's 2 GB: NAME.onnx + NAME.onnx.data, written and installed as a pair.

A tiny model is forced into external data by lowering the size threshold (a real one is 4 GB).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from w2v_embed.embedder import EmbedOptions, Embedder
from w2v_embed.errors import W2VEmbedError
from w2v_embed.export import ExportOptions, export_model
from w2v_embed.export.verify import VerificationError
from w2v_embed.runtime import OnnxModel

EXTERNAL = dict(external_data_bytes=0)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, checkpoint_dir):
    out = tmp_path_factory.mktemp("pair") / "big.onnx"
    return export_model(str(checkpoint_dir("stable")), ExportOptions(output=out, **EXTERNAL))


def test_export_writes_a_verified_pair(pair):
    folder = pair.path.parent
    assert sorted(p.name for p in folder.iterdir()) == ["big.onnx", "big.onnx.data"]  # no temp files
    assert pair.report.ok and pair.info.external_data == "big.onnx.data" and len(pair.info.external_data_tag) == 32
    data = folder / "big.onnx.data"
    import onnx

    inline = [t.name for t in onnx.load(str(pair.path), load_external_data=False).graph.initializer
              if len(t.raw_data) >= 1024]
    assert inline == []  # every sizeable weight is in the data file
    assert pair.size_bytes == pair.path.stat().st_size + data.stat().st_size
    assert data.read_bytes().endswith(pair.info.external_data_tag.encode())


def test_extract_early_exit_and_last_equal_the_inline_model(pair, onnx_model):
    x = np.random.default_rng(3).standard_normal(40_000).astype(np.float32)
    for layers in ((1,), (0, 3, "last")):  # (1,) runs the graph cut after layer 1, loaded from bytes
        options = EmbedOptions(layers=layers, pool="none")
        got = Embedder(pair.path, device="cpu", options=options).embed(x, 16_000)
        want = Embedder(onnx_model("stable"), device="cpu", options=options).embed(x, 16_000)
        for k in layers:
            np.testing.assert_allclose(got[k], want[k], atol=1e-6)


def test_moving_both_files_together_keeps_it_usable_and_info_works(pair, tmp_path):
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for name in ("big.onnx", "big.onnx.data"):
        shutil.copy(pair.path.parent / name, moved / name)
    model = OnnxModel(moved / "big.onnx", device="cpu")
    assert model.run(np.zeros((1, 8000), np.float32), [8000], [2])[2].shape == (1, 24, 32)
    proc = subprocess.run([sys.executable, "-m", "w2v_embed", "info", str(moved / "big.onnx")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "big.onnx.data" in proc.stdout, proc.stderr


@pytest.mark.parametrize("damage", ["missing", "truncated", "another export's"])
def test_bad_data_file_is_one_clear_error(pair, checkpoint_dir, tmp_path, damage):
    shutil.copy(pair.path, tmp_path / "big.onnx")
    data = tmp_path / "big.onnx.data"
    if damage == "truncated":
        original = (pair.path.parent / "big.onnx.data").read_bytes()
        data.write_bytes(original[: len(original) // 2])
    elif damage == "another export's":
        other = export_model(str(checkpoint_dir("stable")), ExportOptions(output=tmp_path / "o" / "big.onnx",
                                                                         verify=False, **EXTERNAL))
        shutil.copy(other.path.parent / "big.onnx.data", data)  # same size, other tag
    with pytest.raises(W2VEmbedError) as info:
        OnnxModel(tmp_path / "big.onnx", device="cpu")
    message = str(info.value)
    assert "\n" not in message and "big.onnx.data" in message
    assert ("missing" if damage == "missing" else "truncated or belongs to another export") in message
    if damage != "missing":
        proc = subprocess.run([sys.executable, "-m", "w2v_embed", "info", str(tmp_path / "big.onnx")],
                              capture_output=True, text=True)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr and "big.onnx.data" in proc.stderr


@pytest.mark.parametrize("quantize", ["int8", "fp16"])
def test_reduced_precision_pairs(checkpoint_dir, pair, tmp_path, quantize):
    out = tmp_path / f"{quantize}.onnx"
    result = export_model(str(checkpoint_dir("stable")), ExportOptions(output=out, quantize=quantize, **EXTERNAL))
    assert result.quantization.ok and result.info.external_data == f"{quantize}.onnx.data"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{quantize}.onnx", f"{quantize}.onnx.data"]
    x = np.random.default_rng(4).standard_normal((1, 16_000)).astype(np.float32)
    got = OnnxModel(out, device="cpu").run(x, [16_000], ["last"])["last"][0]
    want = OnnxModel(pair.path, device="cpu").run(x, [16_000], ["last"])["last"][0]
    cosine = (got * want).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(want, axis=-1)
    assert cosine.min() >= 0.99


def test_failed_export_leaves_the_old_pair_and_nothing_else(checkpoint_dir, pair, tmp_path):
    target = tmp_path / "big.onnx"
    for name in ("big.onnx", "big.onnx.data"):
        shutil.copy(pair.path.parent / name, tmp_path / name)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(VerificationError):
        export_model(str(checkpoint_dir("group")),
                     ExportOptions(output=target, tolerance=0.0, overwrite=True, **EXTERNAL))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # An inline model exported over a pair removes the stale data file.
    export_model(str(checkpoint_dir("group")), ExportOptions(output=target, verify=False, overwrite=True))
    assert sorted(os.listdir(tmp_path)) == ["big.onnx"] and not OnnxModel(target, device="cpu").info.external_data


def test_interrupted_export_leaves_nothing(checkpoint_dir, tmp_path, monkeypatch):
    import w2v_embed.export.convert as convert

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(convert, "verify", interrupt)
    with pytest.raises(KeyboardInterrupt):
        export_model(str(checkpoint_dir("stable")), ExportOptions(output=tmp_path / "big.onnx", **EXTERNAL))
    assert os.listdir(tmp_path) == []


def test_initializer_bytes_counts_external_tensors_without_a_length(pair):
    """torch's own >2 GB export writes external entries without `length`: they must still count."""
    import onnx

    from w2v_embed.export.onnxfile import initializer_bytes

    proto = onnx.load(str(pair.path), load_external_data=False)
    total = initializer_bytes(proto)
    for tensor in proto.graph.initializer:
        kept = [e for e in tensor.external_data if e.key != "length"]
        del tensor.external_data[:]
        tensor.external_data.extend(kept)
    assert initializer_bytes(proto) == total >= (pair.path.parent / "big.onnx.data").stat().st_size - 32

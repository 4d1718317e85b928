"""Graph cutting and metadata reading without the onnx package, checked with onnx and onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from w2v_embed.graphcut import cut_model, read_metadata


def _chain_model(layers: int = 4) -> onnx.ModelProto:
    """x -> h0 -> h1 … (MatMul + Add per layer) with a side branch that no hidden state needs."""
    rng = np.random.default_rng(0)
    nodes, inits, outputs = [helper.make_node("Identity", ["x"], ["h0"])], [], []
    for k in range(1, layers + 1):
        inits += [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), f"w{k}"),
                  numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), f"b{k}")]
        nodes += [helper.make_node("MatMul", [f"h{k - 1}", f"w{k}"], [f"m{k}"]),
                  helper.make_node("Add", [f"m{k}", f"b{k}"], [f"h{k}"])]
    inits.append(numpy_helper.from_array(np.ones((8, 8), np.float32), "side_w"))
    nodes.append(helper.make_node("MatMul", ["x", "side_w"], ["side"]))
    outputs = [helper.make_tensor_value_info(f"h{k}", TensorProto.FLOAT, ["n", 8]) for k in range(layers + 1)]
    outputs.append(helper.make_tensor_value_info("side", TensorProto.FLOAT, ["n", 8]))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"w2v_embed.num_layers": "4", "other": "kept"})
    return model


def test_cut_keeps_only_what_the_outputs_need(tmp_path):
    model = _chain_model()
    cut = onnx.load_from_string(cut_model(model.SerializeToString(), ["h0", "h1", "h2"]))
    onnx.checker.check_model(cut)
    assert [o.name for o in cut.graph.output] == ["h0", "h1", "h2"]
    assert {i.name for i in cut.graph.initializer} == {"w1", "b1", "w2", "b2"}
    assert len(cut.graph.node) == 5
    assert {p.key: p.value for p in cut.metadata_props} == {"w2v_embed.num_layers": "4", "other": "kept"}
    assert cut.opset_import == model.opset_import and cut.ir_version == model.ir_version
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    full = ort.InferenceSession(model.SerializeToString()).run(["h0", "h1", "h2"], {"x": x})
    part = ort.InferenceSession(cut.SerializeToString()).run(["h0", "h1", "h2"], {"x": x})
    for a, b in zip(full, part):
        np.testing.assert_array_equal(a, b)


def test_cut_rejects_unknown_output():
    with pytest.raises(ValueError, match="h9"):
        cut_model(_chain_model().SerializeToString(), ["h9"])


def test_read_metadata_without_loading_the_graph(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_chain_model(), str(path))
    assert read_metadata(path) == {"w2v_embed.num_layers": "4", "other": "kept"}


def test_cut_exported_wav2vec2(onnx_model):
    path = onnx_model("stable")
    data = path.read_bytes()
    cut = cut_model(data, ["hidden_state_0", "hidden_state_1"])
    assert len(cut) < len(data)
    x = np.random.default_rng(2).standard_normal((2, 9_000)).astype(np.float32)
    feeds = {"input_values": x, "lengths": np.array([9_000, 7_000])}
    full = ort.InferenceSession(str(path)).run(["hidden_state_1"], feeds)[0]
    session = ort.InferenceSession(cut)
    assert [o.name for o in session.get_outputs()] == ["hidden_state_0", "hidden_state_1"]
    np.testing.assert_array_equal(session.run(["hidden_state_1"], feeds)[0], full)
    assert session.get_modelmeta().custom_metadata_map == read_metadata(path)

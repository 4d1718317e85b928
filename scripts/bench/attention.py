"""Fused attention (issue 21, item 4), measured before it is built: the export's attention subgraphs
replaced by ONNX Runtime's contrib `com.microsoft.MultiHeadAttention`, timed against the unfused graph.

ONNX Runtime's own optimizer finds no attention pattern in the export (the TorchScript export spells the
head split as Shape/Gather/Concat/Reshape), so this rewrites it by hand: per Softmax, Q·Kᵀ·scale + the
key-padding bias → softmax → ·V → head merge becomes one MultiHeadAttention(q, k, v) node, with the
padding mask as its `key_padding_mask` (1 for a real frame), or without a mask (all rows full: the
kernel's flash-attention path). wav2vec2-style attention only (WavLM's gated position bias and the
conformers' are left as they are). Model-only, both sessions in one process, alternated every round.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import numpy as np

from .common import Table, spread

# (window seconds, rows; the second row of a 2-row batch is 7 s of padded audio)
SHAPES = [(10.0, 2), (10.0, 1), (24.0, 1), (33.0, 1)]  # 33 s: a 30 s + 1.5 s chunk, the default


def fuse_attention(path: Path, out: Path, mask: bool = True) -> int:
    """Write `path` with its attention subgraphs fused into `out`; returns how many were fused."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}

    def constant(name: str) -> np.ndarray:
        node = producer.get(name)
        return initializers[name] if node is None else numpy_helper.to_array(node.attribute[0].t)

    def projection(transpose) -> str:  # Transpose(Reshape(x, [B, T, heads, dim])) -> x
        return producer[transpose.input[0]].input[0]

    fused, mask_name = [], ""
    for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
        add = producer[softmax.input[0]]
        scale_mul = producer[add.input[0]]
        scores = producer[scale_mul.input[0]]
        q_t, k_t = producer[scores.input[0]], producer[scores.input[1]]
        weighted = consumers[softmax.output[0]][0]
        v_t = producer[weighted.input[1]]
        merge_t = next(c for c in consumers[weighted.output[0]] if c.op_type == "Transpose")
        merged = consumers[merge_t.output[0]][0]
        heads = int(constant(producer[producer[q_t.input[0]].input[1]].input[2]).reshape(-1)[0])
        if mask and not mask_name:  # the bias is (1 - Cast(Less(frame, length))) * -big: the Less is the mask
            node = producer[add.input[1]]
            while node.op_type != "Less":
                node = next(producer[i] for i in node.input if i in producer and producer[i].op_type != "Constant")
            mask_name = "fused_key_padding_mask"
            fused.append(helper.make_node("Cast", [node.output[0]], [mask_name], to=onnx.TensorProto.INT32))
        inputs = [projection(q_t), projection(k_t), projection(v_t), "", mask_name]
        fused.append(helper.make_node("MultiHeadAttention", inputs, [merged.output[0]], domain="com.microsoft",
                                      num_heads=heads, scale=float(constant(scale_mul.input[1]).reshape(-1)[0])))
        graph.node.remove(merged)
    graph.node.extend(fused)
    _keep_live_in_order(graph)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(out))
    return sum(n.op_type == "MultiHeadAttention" for n in fused)


def _keep_live_in_order(graph) -> None:
    """Drop the nodes no output needs any more, and sort the rest topologically."""
    producer = {o: n for n in graph.node for o in n.output}
    live, stack = {}, [o.name for o in graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is not None and id(node) not in live:
            live[id(node)] = node
            stack.extend(i for i in node.input if i)
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(live.values()), []
    while pending:
        waiting = []
        for node in pending:
            if set(node.input) <= ready:
                ordered.append(node)
                ready.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ValueError("fused graph has a cycle")
        pending = waiting
    del graph.node[:]
    graph.node.extend(ordered)


def compare_attention(model: Path, workdir: Path, rounds: int, threads: int, cpu: str) -> None:
    """Rows per window shape: seconds per run of each graph, the fused speed-up per round, max |difference|."""
    import onnxruntime as ort

    variants = {"unfused (export)": model}
    for name, mask in (("fused, key-padding mask", True), ("fused, no mask (flash path; full rows only)", False)):
        out = workdir / f"{model.stem}.mha{'' if mask else '-nomask'}.onnx"
        if not out.exists():
            fuse_attention(model, out, mask)
        variants[name] = out
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    sessions = {k: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for k, p in variants.items()}
    table = Table(f"Fused attention (com.microsoft.MultiHeadAttention) vs the export, model-only, on {cpu}, "
                  f"{rounds} alternated rounds (s per run and speed-up: min / median (±half-spread))",
                  ["window", "graph", "s per run", "speed-up vs unfused, per round", "max |diff| (valid frames)"])
    rng = np.random.default_rng(0)
    for seconds, rows in SHAPES:
        samples = int(seconds * 16_000)
        lengths = np.array([samples, 7 * 16_000][:rows], dtype=np.int64)
        x = rng.standard_normal((rows, samples)).astype(np.float32)
        x[1:, 7 * 16_000 :] = 0.0
        feeds = {"input_values": x, "lengths": lengths}
        reference = sessions["unfused (export)"].run(None, feeds)
        frames = [int(n) // 320 - 1 for n in lengths]  # valid frames per row (enough to skip padding)
        times: dict[str, list[float]] = {k: [] for k in sessions}
        diffs = {}
        for name, session in sessions.items():
            states = session.run(None, feeds)
            diffs[name] = max(float(np.abs(a[r, :f] - b[r, :f]).max()) for a, b in zip(states, reference)
                              for r, f in enumerate(frames))
        for _ in range(rounds):
            for name, session in sessions.items():
                started = time.perf_counter()
                session.run(None, feeds)
                times[name].append(time.perf_counter() - started)
        for name in sessions:
            if name.startswith("fused, no mask") and rows > 1:
                continue  # padded rows need the mask
            speedup = [u / t for u, t in zip(times["unfused (export)"], times[name])]
            table.row(f"{seconds:g} s × {rows}", name, spread(times[name]), spread(speedup), f"{diffs[name]:.1e}")

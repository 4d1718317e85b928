"""The CPU at hand and its ceiling: ONNX Runtime's own MatMul at the model's shapes, numpy's GEMM beside it."""

from __future__ import annotations

import time


def cpu() -> str:
    """Model name and the flags that decide the kernels (avx2, avx512f, VNNI, bf16, AMX)."""
    from w2v_embed.runtime.cache import cpu_description

    return cpu_description()


def numpy_peak(threads: int) -> float:
    """GFLOP/s of a 2048² float32 matmul in numpy (its BLAS with OMP_NUM_THREADS=threads)."""
    import numpy as np

    a = np.random.rand(2048, 2048).astype(np.float32)
    a @ a
    return max(_gflops(lambda: a @ a, 2 * 2048**3) for _ in range(5))


def ort_matmul_peak(threads: int, shapes: tuple[tuple[int, int, int], ...] = ((500, 768, 3072), (500, 3072, 768))) -> float:
    """GFLOP/s of a one-node MatMul model in ONNX Runtime on `threads` threads; default shapes: base's
    feed-forward layers on a 10 s clip (500 frames), the weights an initializer as in the exported model."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    best = 0.0
    for m, k, n in shapes:
        weight = numpy_helper.from_array(np.random.rand(k, n).astype(np.float32), "w")
        graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], [weight])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        x = {"x": np.random.rand(m, k).astype(np.float32)}
        for _ in range(3):
            session.run(None, x)
        best = max(best, max(_gflops(lambda: [session.run(None, x) for _ in range(10)], 20 * m * k * n) for _ in range(5)))
    return best


def _gflops(step, flops: float) -> float:
    started = time.perf_counter()
    step()
    return flops / (time.perf_counter() - started) / 1e9

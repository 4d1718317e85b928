"""Which runtime runs a model: --runtime auto | onnxruntime | openvino.

`auto` takes, per precision, the runtime that measured faster on CPU (`python scripts/bench.py --runtimes`,
docs/performance.md); CUDA is ONNX Runtime's. Measured under load on this 2-core Zen 5, OpenVINO did not
win in float32 and lost clearly in int8 (ONNX Runtime's MatMulInteger kernels use VNNI), so both are
ONNX Runtime until a quiet measurement says otherwise.
"""

from __future__ import annotations

from ..errors import UsageError
from .base import Runtime
from .onnxruntime import OrtRuntime

RUNTIMES = ("auto", "onnxruntime", "openvino")
AUTO_CPU = {"float32": "onnxruntime", "int8": "onnxruntime", "float16": "onnxruntime"}
OPENVINO_HELP = "needs the 'openvino' extra: pip install 'w2v-embed[openvino]'"


def open_runtime(name: str, device: str, precision: str) -> tuple[Runtime, str | None]:
    """The runtime for `name` on `device`, and a note when the one asked for is not available."""
    if name not in RUNTIMES:
        raise UsageError(f"--runtime {name}: expected one of {', '.join(RUNTIMES)}")
    if name == "openvino" and device == "cuda":
        raise UsageError("--runtime openvino runs on the CPU: use --device cpu, or --runtime onnxruntime for CUDA")
    ort = OrtRuntime(device)
    on_cpu = ort.providers == ["CPUExecutionProvider"]
    wanted = AUTO_CPU.get(precision, "onnxruntime") if name == "auto" and on_cpu else name
    if wanted != "openvino":
        return ort, None
    try:
        from .openvino import OpenVinoRuntime

        return OpenVinoRuntime(), None
    except ImportError:
        return ort, None if name == "auto" else f"--runtime openvino {OPENVINO_HELP}; running on onnxruntime"

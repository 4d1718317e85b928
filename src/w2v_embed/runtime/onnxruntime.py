"""ONNX Runtime: the default runtime, CPU or CUDA."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError, W2VEmbedError

CUDA_HELP = (
    "install the GPU runtime instead of the CPU one: pip uninstall -y onnxruntime && pip install onnxruntime-gpu "
    "(needs an NVIDIA driver with CUDA 12 and cuDNN 9)"
)


def select_providers(device: str) -> list[str]:
    """ONNX Runtime execution providers for --device auto|cpu|cuda."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise W2VEmbedError(f"--device cuda: this onnxruntime has no CUDA provider; {CUDA_HELP}")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto":
        return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]
    raise UsageError(f"--device {device}: expected auto, cpu or cuda")


def _check_loadable(path: Path) -> None:
    """Say "truncated or corrupt" for a file that ONNX Runtime cannot parse, rather than "not a w2v-embed model"."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a bad file
        raise W2VEmbedError(
            f"{path}: truncated or corrupt ONNX file ({path.stat().st_size} bytes; {str(exc).splitlines()[0]}); "
            "copy or export it again"
        ) from exc

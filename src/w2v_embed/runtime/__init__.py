"""Run an exported model: its metadata, and one session interface over the runtimes (ONNX Runtime, OpenVINO)."""

from .base import (
    INPUT_NAMES,
    METADATA_PREFIX,
    MODELS_DIR,
    ModelInfo,
    OnnxModel,
    check_external_data,
    default_model_path,
    default_threads,
)
from .onnxruntime import CUDA_HELP, select_providers

__all__ = [
    "CUDA_HELP",
    "INPUT_NAMES",
    "METADATA_PREFIX",
    "MODELS_DIR",
    "ModelInfo",
    "OnnxModel",
    "check_external_data",
    "default_model_path",
    "default_threads",
    "select_providers",
]

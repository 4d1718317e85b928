"""Reduced precision: int8 MatMul weights for CPUs, float16 for CUDA; kept only when close to float32."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..runtime import ModelInfo
from .checkpoint import require_export_extra
from .onnxfile import EXTERNAL_DATA_BYTES, data_path, finalize
from .verify import VerificationError, VerificationReport, verify_quantized

PRECISIONS = {"int8": "int8", "fp16": "float16"}


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of MatMul weights only: convolutions with signed int8 weights ran slower.

    Weights get 7 bits (reduce_range): ONNX Runtime multiplies u8 activations by s8 weights with
    VPMADDUBSW on AVX2 CPUs without VNNI, whose int16 pair sums saturate for full-range weights
    (cosine 0.97 to float32 on a Zen 3, 0.9999 on a Zen 5 with VNNI). With |w| <= 64 no x86 CPU
    saturates, so a model verified on the exporting CPU holds on the one that runs it.
    """
    require_export_extra("onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # It logs advice on the root logger (pre-processing; the float64 statistics MatMuls it rightly
    # leaves alone) that is noise to someone running `export`.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            str(source), str(target), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8, reduce_range=True,
            use_external_data_format=data_path(source).exists(),
        )
    finally:
        root.setLevel(level)


def reduce_precision(
    model: Path,
    precision: str,
    info: ModelInfo,
    trace_half: Callable[[Path], None],
    min_cosine: float,
    threshold: int = EXTERNAL_DATA_BYTES,
) -> tuple[Path, VerificationReport, ModelInfo]:
    """The int8 or float16 form of the verified float32 `model`, written beside it in a folder of its own.

    float16 is a second trace of the reference model cast to half (`trace_half`; the graph keeps its
    own float32 islands, see families/wav2vec2.py): generic ONNX float16 converters round every
    blocked node's output through float16 anyway. Refused (VerificationError) below `min_cosine`.
    """
    raw = model.parent / f"{precision}-raw"
    out = model.parent / precision
    raw.mkdir()
    out.mkdir()
    produced = raw / model.name
    if precision == "fp16":
        trace_half(produced)
    else:
        quantize_int8(model, produced)
    converted = out / model.name
    info = finalize(produced, converted, replace(info, precision=PRECISIONS[precision]), threshold)
    shutil.rmtree(raw)
    report = verify_quantized(model, converted, min_cosine)
    if not report.ok:
        raise VerificationError(report, f"{precision} accuracy check")
    return converted, report, info

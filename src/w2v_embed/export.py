"""Convert a wav2vec2 checkpoint into the ONNX model that `extract` runs, and prove it matches.

The export writes to a temporary file beside the target and renames it only after the metadata is
in and verification passed, so a failed or interrupted export never leaves a half-written model.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from . import __version__
from .checkpoint import Checkpoint, load_reference_model, require_export_extra, resolve
from .errors import UsageError
from .runtime import INPUT_NAMES, MODELS_DIR, ModelInfo, output_name
from .verify import VerificationError, VerificationReport, verify, verify_quantized


@dataclass(frozen=True)
class ExportOptions:
    """How to export; the defaults are what most users want."""

    output: Path | None = None  # default: models/<name>.onnx
    revision: str | None = None
    subfolder: str | None = None
    cache_dir: str | None = None
    opset: int = 17
    verify: bool = True
    tolerance: float = 1e-4
    quantize: str | None = None  # "int8": dynamic int8 MatMuls for CPU; "fp16": half precision for CUDA
    min_cosine: float = 0.995  # a quantized model must keep at least this cosine to float32 on every layer
    overwrite: bool = False  # replace an existing output file


@dataclass(frozen=True)
class ExportResult:
    path: Path
    info: ModelInfo
    report: VerificationReport | None
    seconds: float
    quantization: VerificationReport | None = None

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def default_output(source: str) -> Path:
    """models/<last part of the hub id or folder name>.onnx"""
    name = Path(source.rstrip("/")).name or "model"
    return MODELS_DIR / f"{name}.onnx"


def model_info(checkpoint: Checkpoint, config: object) -> ModelInfo:
    return ModelInfo(
        source=checkpoint.source,
        revision=checkpoint.revision or "",
        model_type=config.model_type,
        num_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        conv_kernel=tuple(config.conv_kernel),
        conv_stride=tuple(config.conv_stride),
        do_normalize=checkpoint.do_normalize,
        feat_extract_norm=config.feat_extract_norm,
        do_stable_layer_norm=bool(config.do_stable_layer_norm),
        exporter_version=__version__,
        weights_sha256=checkpoint.weights_sha256(),
    )


def write_onnx(reference: object, path: Path, opset: int) -> None:
    """TorchScript-based export of the padding-exact wrapper; batch and time axes dynamic."""
    torch = require_export_extra("torch")
    require_export_extra("onnx")
    from .graph import ExportableWav2Vec2

    wrapper = ExportableWav2Vec2(reference).eval()
    num_layers = wrapper.num_layers
    outputs = [output_name(k) for k in range(num_layers + 1)]
    dummy = (torch.zeros(2, 16000), torch.tensor([16000, 12000], dtype=torch.int64))
    axes = {"input_values": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}}
    axes.update({name: {0: "batch", 1: "frames"} for name in outputs})
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            dummy,
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def add_metadata(path: Path, info: ModelInfo) -> None:
    onnx = require_export_extra("onnx")
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in info.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "w2v-embed"
    model.producer_version = __version__
    onnx.save(model, str(path))


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of MatMul weights only: convolutions with signed int8 weights ran slower."""
    require_export_extra("onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # It logs advice on the root logger (pre-processing; the float64 statistics MatMuls it rightly
    # leaves alone) that is noise to someone running `export`.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


PRECISIONS = {"int8": "int8", "fp16": "float16"}


def export_model(source: str, options: ExportOptions = ExportOptions()) -> ExportResult:
    """Checkpoint (folder or hub id) → verified ONNX model at options.output."""
    started = time.perf_counter()
    if options.quantize is not None and options.quantize not in PRECISIONS:
        raise UsageError(f"--quantize {options.quantize}: expected one of {', '.join(PRECISIONS)}")
    target = Path(options.output) if options.output else default_output(source)
    _check_target(target, options.overwrite)
    checkpoint = resolve(source, options.revision, options.subfolder, options.cache_dir)
    reference = load_reference_model(checkpoint)
    info = model_info(checkpoint, reference.config)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        write_onnx(reference, tmp, options.opset)
        add_metadata(tmp, info)
        report = verify(reference, tmp, options.tolerance) if options.verify else None
        if report is not None and not report.ok:
            raise VerificationError(report)
        quantization = None
        if options.quantize:
            quantization, info = _reduce_precision(tmp, reference, info, options)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(target, info, report, time.perf_counter() - started, quantization)


def _check_target(target: Path, overwrite: bool) -> None:
    """Refuse before minutes of export and verification, and never replace a model silently."""
    if target.is_dir():
        raise UsageError(f"{target} is a folder; give a file name, e.g. {target / 'model.onnx'}")
    if target.exists() and not overwrite:
        raise UsageError(f"{target} exists; pass --overwrite to replace it")


def _reduce_precision(
    path: Path, reference: object, info: ModelInfo, options: ExportOptions
) -> tuple[VerificationReport, ModelInfo]:
    """Replace the float32 model at `path` by its int8 or float16 form, if it stays close enough to it.

    float16 is a second export of the reference model cast to half (the graph then keeps its own
    float32 islands, see graph.py); generic ONNX float16 converters round every blocked node's output
    through float16 anyway. Casting `reference` to half in place is fine: it is not used afterwards.
    """
    info = replace(info, precision=PRECISIONS[options.quantize])
    converted = path.with_name(f"{path.name}.{options.quantize}")
    try:
        if options.quantize == "fp16":
            write_onnx(reference.half(), converted, options.opset)
        else:
            quantize_int8(path, converted)
        add_metadata(converted, info)
        report = verify_quantized(path, converted, options.min_cosine)
        if not report.ok:
            raise VerificationError(report, f"{options.quantize} accuracy check")
        os.replace(converted, path)
    finally:
        converted.unlink(missing_ok=True)
    return report, info

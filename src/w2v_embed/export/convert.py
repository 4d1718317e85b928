"""Convert a wav2vec2 checkpoint into the ONNX model that `extract` runs, and prove it matches.

The export writes into a work folder beside the target and moves the model (and its external data
file, for models over 2 GB) into place only after the metadata is in and verification passed, so a
failed or interrupted export never leaves a half-written model or pair.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import UsageError, W2VEmbedError, one_line
from ..layers import LAST, output_name
from ..paths import check_output
from ..runtime import MODELS_DIR, ModelInfo
from .checkpoint import CONFIG, Checkpoint, require_export_extra, resolve
from .reference import load_reference_model
from .coverage import check_graph_uses
from .families import feat_extract_norm, front_end, stable_layer_norm
from .onnxfile import EXTERNAL_DATA_BYTES, finalize, install, model_bytes
from .quantize import PRECISIONS, reduce_precision
from .verify import VerificationError, VerificationReport, verify


MIN_OPSET = 12  # Clip on int64 (the lengths), opset 12's


@dataclass(frozen=True)
class ExportOptions:
    """How to export; the defaults are what most users want."""

    output: Path | None = None  # default: models/<name>.onnx
    revision: str | None = None
    subfolder: str | None = None
    cache_dir: str | None = None
    opset: int = 17  # MIN_OPSET up to what torch's TorchScript exporter takes
    verify: bool = True
    tolerance: float = 1e-4
    quantize: str | None = None  # "int8": dynamic int8 MatMuls for CPU; "fp16": half precision for CUDA
    min_cosine: float = 0.995  # a quantized model must keep at least this cosine to float32 on every layer
    external_data_bytes: int = EXTERNAL_DATA_BYTES  # weights above this go to NAME.onnx.data (protobuf: 2 GB)
    overwrite: bool = False  # replace an existing output file
    adapter: str | None = None  # MMS: the language whose adapter.LANG.safetensors goes into the encoder


@dataclass(frozen=True)
class ExportResult:
    path: Path
    info: ModelInfo
    report: VerificationReport | None
    seconds: float
    quantization: VerificationReport | None = None
    notes: tuple[str, ...] = ()

    @property
    def size_bytes(self) -> int:
        """The .onnx and its external data file, if any."""
        return model_bytes(self.path)


def default_output(source: str) -> Path:
    """models/<last part of the hub id or folder name>.onnx"""
    name = Path(source.rstrip("/")).name or "model"
    return MODELS_DIR / f"{name}.onnx"


def model_info(checkpoint: Checkpoint, config: object) -> ModelInfo:
    frontend, kernels, strides = front_end(config)
    return ModelInfo(
        source=checkpoint.source,
        revision=checkpoint.revision or "",
        subfolder=checkpoint.subfolder,
        model_type=config.model_type,
        num_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        conv_kernel=kernels,
        conv_stride=strides,
        do_normalize=checkpoint.do_normalize,
        feat_extract_norm=feat_extract_norm(config),
        do_stable_layer_norm=stable_layer_norm(config),
        exporter_version=__version__,
        weights_sha256=checkpoint.weights_sha256(),
        adapter=checkpoint.adapter,
        frontend=frontend,
    )


def write_onnx(reference: object, path: Path, opset: int) -> None:
    """TorchScript-based export of the padding-exact wrapper; batch and time axes dynamic."""
    torch = require_export_extra("torch")
    require_export_extra("onnx")
    from .families import family

    wrapper = family(reference.config.model_type).Exportable(reference).eval()
    num_layers = wrapper.num_layers
    outputs = [output_name(k) for k in (*range(num_layers + 1), LAST)]
    names = list(wrapper.input_names)  # input_values [batch, samples], or input_features [batch, frames, 160]
    dummy = wrapper.example_inputs()
    axes = {names[0]: {0: "batch", 1: "time"}, "lengths": {0: "batch"}}
    axes.update({name: {0: "batch", 1: "frames"} for name in outputs})
    try:
        with torch.no_grad():
            torch.onnx.export(
                wrapper,
                dummy,
                str(path),
                input_names=names,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except (RuntimeError, ValueError) as exc:
        if "opset" not in str(exc).lower():
            raise
        raise UsageError(f"--opset {opset}: {one_line(exc)} (torch {torch.__version__}'s exporter)") from None


def export_model(
    source: str, options: ExportOptions = ExportOptions(), notify: Callable[[str], None] | None = None
) -> ExportResult:
    """Checkpoint (folder or hub id) → verified ONNX model at options.output (+ its .data when large).

    `notify` receives one-line notes as soon as they are known (e.g. which sub-folder held the weights).
    """
    started = time.perf_counter()
    if options.quantize is not None and options.quantize not in PRECISIONS:
        raise UsageError(f"--quantize {options.quantize}: expected one of {', '.join(PRECISIONS)}")
    if options.opset < MIN_OPSET:
        raise UsageError(f"--opset {options.opset}: expected {MIN_OPSET} or later (the graph clips int64 lengths)")
    target = Path(options.output) if options.output else default_output(source)
    check_output(target, options.overwrite, example="model.onnx")  # before minutes of export and verification
    checkpoint = resolve(source, options.revision, options.subfolder, options.cache_dir, options.adapter)
    sources = [*checkpoint.weights, checkpoint.folder / CONFIG, checkpoint.preprocessor, checkpoint.adapter_file]
    if target.exists() and any(path is not None and path.exists() and path.samefile(target) for path in sources):
        raise UsageError(f"{target} is a file of the checkpoint being exported; write the model elsewhere")
    for note in checkpoint.notes:
        (notify or (lambda _: None))(note)
    reference = load_reference_model(checkpoint)
    check_graph_uses(reference)
    work = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.mkdir(parents=True)
    except OSError as exc:
        raise W2VEmbedError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        model = work / target.name
        (work / "raw").mkdir()
        write_onnx(reference, work / "raw" / target.name, options.opset)
        info = finalize(work / "raw" / target.name, model, model_info(checkpoint, reference.config),
                        options.external_data_bytes)
        shutil.rmtree(work / "raw")
        report = verify(reference, model, options.tolerance) if options.verify else None
        if report is not None and not report.ok:
            raise VerificationError(report)
        quantization = None
        if options.quantize:
            # Casting `reference` to half in place is fine: it is not used afterwards.
            model, quantization, info = reduce_precision(
                model, options.quantize, info, lambda path: write_onnx(reference.half(), path, options.opset),
                options.min_cosine, options.external_data_bytes,
            )
        install(model, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportResult(target, info, report, time.perf_counter() - started, quantization, checkpoint.notes)



"""`w2v-embed export`: a checkpoint → a verified ONNX model, with the verification table on stderr."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..errors import UsageError
from .console import app, err, fail, out, run, shown


@app.command()
def export(
    source: Annotated[str, typer.Argument(help="Checkpoint folder, or a hub id like flax-community/wav2vec2-german.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Where to write (default: models/NAME.onnx).")] = None,
    revision: Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit).")] = None,
    subfolder: Annotated[Optional[str], typer.Option(help="Subfolder of the repository or folder, inside it (default: the root, or the one sub-folder with weights).")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset: 12 up to what torch's TorchScript exporter takes.")] = 17,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Compare with the reference model.")] = True,
    quantize: Annotated[Optional[str], typer.Option(help="int8: MatMul weights in int8 (CPU); fp16: half precision (CUDA). Checked: cosine >= 0.995 per layer vs float32.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the output file if it exists.")] = False,
    adapter: Annotated[Optional[str], typer.Option(help="MMS models: the language adapter to export, e.g. fra (adapter.fra.safetensors in the repository); without it, the adapters in the main weights file are used.")] = None,
) -> None:
    """Convert a wav2vec2 checkpoint (Flax, TF or PyTorch weights) into a verified ONNX model.

    Examples:

      w2v-embed export flax-community/wav2vec2-german

      w2v-embed export ./my-checkpoint -o models/mine.onnx --no-verify

      w2v-embed export ./my-checkpoint -o models/mine-int8.onnx --quantize int8

      w2v-embed export ./my-checkpoint -o models/mine-fp16.onnx --quantize fp16

      w2v-embed export facebook/mms-1b-all --adapter fra -o models/mms-fra.onnx
    """
    from ..export import ExportOptions

    if output is not None and str(output) == "-":
        fail(UsageError("-o -: export writes an ONNX file (and maybe its .data); give a file name"))
    options = ExportOptions(output, revision, subfolder, opset=opset, verify=verify, quantize=quantize, overwrite=overwrite,
                            adapter=adapter)
    run(_export, source, options)


def _export(source: str, options: object) -> None:
    from ..export import export_model
    from ..export.verify import VerificationError

    err.print(f"exporting {shown(source)} …")
    try:
        result = export_model(source, options, notify=lambda note: err.print(f"[cyan]note:[/] {note}", highlight=False))
    except VerificationError as exc:
        _print_report(exc.report)
        raise
    for report in (result.report, result.quantization):
        if report is not None:
            _print_report(report)
    info = result.info
    data = f" + {info.external_data}" if info.external_data else ""
    out.print(
        f"[green]wrote {shown(result.path)}{data}[/] ({result.size_bytes / 1e6:.1f} MB, {info.num_layers} layers, "
        f"hidden {info.hidden_size}, {info.precision}, {result.seconds:.1f} s)"
    )


def _print_report(report: object) -> None:
    if report.tolerance is not None:
        title = f"verification vs transformers (max |diff| <= {report.tolerance:.0e})"
    else:
        title = f"quantized vs float32 (cosine >= {report.min_cosine})"
    table = Table(title=title)
    table.add_column("layer", justify="right")
    table.add_column("max |diff|", justify="right")
    table.add_column("min cosine", justify="right")
    for row in report.layers:
        bad = (report.tolerance is not None and row.max_abs_diff > report.tolerance) or (
            report.min_cosine is not None and row.min_cosine < report.min_cosine
        )
        style = "red" if bad else ""
        table.add_row(str(row.layer), f"{row.max_abs_diff:.2e}", f"{row.min_cosine:.8f}", style=style)
    err.print(table)

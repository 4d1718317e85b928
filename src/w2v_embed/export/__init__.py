"""Checkpoint → verified ONNX model. Export-only: needs the `export` extra (torch, transformers, onnx).

Parts: `checkpoint` finds the files (local folder or hub id, sub-folders included), `weights` reads
any weights format into arrays, `families/` restate each model family's forward pass padding-exactly,
`onnxfile` writes the model (inline or with external data) and its metadata, `verify` and
`quantize` prove and reduce it, `convert` ties them together atomically.
"""

from .convert import ExportOptions, ExportResult, export_model

__all__ = ["ExportOptions", "ExportResult", "export_model"]

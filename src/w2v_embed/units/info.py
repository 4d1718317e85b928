"""What `w2v-embed info` shows for the units' own files: a KM file, or an `extract --units` HDF5 output."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any


def units_summary(path: str | Path) -> dict[str, Any] | None:
    """The KM file's metadata, or a units output's attributes and counts; None for any other file."""
    path = Path(path)
    if not path.is_file():
        return None
    with path.open("rb") as f:
        magic = f.read(8)
    if magic.startswith(b"PK"):  # an .npz: our KM file
        from .codebook import load_codebook

        codebook = load_codebook(path)
        return {**asdict(codebook.info), "layer": str(codebook.info.layer)} if codebook.info else None
    if magic == b"\x89HDF\r\n\x1a\n":
        import h5py

        from ..store.layout import UNITS_READABLE
        from .sinks import read_units_summary

        with h5py.File(path, "r") as f:
            if f.attrs.get("format") not in UNITS_READABLE:
                return None
        summary = read_units_summary(path)
        summary["failed files"] = len(summary.pop("failed"))
        return summary
    return None

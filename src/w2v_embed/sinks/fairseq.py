"""fairseq's HuBERT k-means layout (examples/hubert/simple_kmeans): the frames of all rows in one
`{split}_{rank}_{nshard}.npy` (float32, rows concatenated), their frame counts one per line in
`.len`, and the audio manifest `{split}.tsv` (first line the root folder, then `relpath<TAB>num_samples`)
in the same order, so learn_kmeans.py and dump_km_label.py read it as their own dump_hubert_feature.py
output and the `.km` lines match the manifest."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from ..errors import UsageError, W2VEmbedError
from ..layers import Layer
from ..store.sink import Row
from .base import StagedSink

_HEADER_BYTES = 128  # .npy header reserved up front and rewritten with the final shape at close


def npy_header(shape: tuple[int, ...]) -> bytes:
    """A version 1.0 .npy header for little-endian float32 C-order data, padded to _HEADER_BYTES."""
    text = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode("latin1")
    body = _HEADER_BYTES - 10
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", body) + text.ljust(body - 1) + b"\n"


class FairseqSink(StagedSink):
    """DEST/{split}_{rank}_{nshard}.npy and .len, and DEST/{split}.tsv.

    `root`: the manifest's first line; relative paths are taken from it. Default: the folder
    that holds all rows' names (names as extract stored them, so relative ones are relative to the
    folder extract ran in). Sample counts are at the model's 16 kHz.
    """

    FORMAT = "fairseq"

    def __init__(self, dest: Path, layer: Layer, split: str = "train", rank: int = 0, nshard: int = 1, root: str | None = None,
                 replace: bool = False) -> None:
        if not 0 <= rank < nshard:
            raise UsageError(f"--rank {rank} --nshard {nshard}: expected 0 <= rank < nshard")
        stem = f"{split}_{rank}_{nshard}"
        super().__init__(dest, [f"{stem}.npy", f"{stem}.len", f"{split}.tsv"], replace)
        self.layer, self.root = layer, root
        self._npy = open(self.staged(f"{stem}.npy"), "wb")  # noqa: SIM115 (closed in _finish)
        self._npy.write(npy_header((0, 0)))
        self._len = open(self.staged(f"{stem}.len"), "w")  # noqa: SIM115
        self._tsv = self.staged(f"{split}.tsv")
        self._manifest: list[tuple[str, int]] = []  # names are held anyway (the reader holds them too)
        self._frames, self._width = 0, None

    def _write(self, row: Row) -> None:
        if any(c in row.name for c in "\t\n\r"):
            raise W2VEmbedError(f"{row.name!r}: a tab or line break in a name would break {self.FORMAT}'s .tsv lines; "
                                "rename the file")
        feats = np.ascontiguousarray(row.features[self.layer], dtype="<f4")
        if feats.ndim != 2:
            raise UsageError("fairseq's k-means layout holds frames: extract with --pool none (or --window)")
        if self._width not in (None, feats.shape[1]):
            raise UsageError(f"{row.name}: {feats.shape[1]} columns after rows of {self._width}")
        self._width = feats.shape[1]
        self._npy.write(feats.tobytes())
        self._len.write(f"{feats.shape[0]}\n")
        self._frames += feats.shape[0]
        self._manifest.append((row.name, row.num_samples))

    def _finish(self) -> None:
        self._npy.seek(0)
        self._npy.write(npy_header((self._frames, self._width or 0)))
        self._npy.close()
        self._len.close()
        names = [name for name, _ in self._manifest]
        root = self.root if self.root is not None else manifest_root(names)
        with open(self._tsv, "w") as f:
            f.write(f"{root}\n")
            f.writelines(f"{os.path.relpath(name, root) if root else name}\t{samples}\n" for name, samples in self._manifest)

    def _discard(self) -> None:
        self._npy.close()
        self._len.close()


def manifest_root(names: list[str]) -> str:
    """The deepest folder holding every name ("." for bare names), as fairseq's manifests start."""
    if not names:
        return "."
    try:
        return os.path.commonpath([os.path.dirname(n) or "." for n in names]) or "."
    except ValueError:
        raise UsageError("the rows' names mix absolute and relative paths: pass --root") from None

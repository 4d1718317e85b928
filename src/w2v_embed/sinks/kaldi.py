"""Kaldi features: `feats.ark` + `feats.scp` written with kaldiio (what ESPnet reads), one matrix per
row (frames or windows, float32) or one vector per row (pooled), keyed by the row's name, plus
Kaldi's `utt2num_frames` and `frame_shift` (seconds) for matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import W2VEmbedError
from ..layers import Layer
from ..store.sink import Row
from . import optional
from .base import StagedSink


class KaldiSink(StagedSink):
    """DEST/feats.ark, feats.scp, and for matrices utt2num_frames and frame_shift.

    The scp names the ark by its absolute path, so it reads from any working directory; rows keep
    input order (run Kaldi's utils/fix_data_dir.sh if a recipe needs them sorted).
    """

    FORMAT = "Kaldi"

    def __init__(self, dest: Path, layer: Layer, frame_shift: float | None, replace: bool = False) -> None:
        super().__init__(dest, ["feats.ark", "feats.scp", *(["utt2num_frames", "frame_shift"] if frame_shift else [])], replace)
        kaldiio = optional("kaldiio")
        self.layer = layer
        self.ark = self.dest.resolve() / "feats.ark"
        self._ark_temp = self.staged("feats.ark")
        self._kaldi_scp = self._ark_temp.with_name(self._ark_temp.name + ".scp")  # kaldiio's: it names the temp ark
        self._scp_temp = self.staged("feats.scp")
        self._writer = kaldiio.WriteHelper(f"ark,scp:{self._ark_temp},{self._kaldi_scp}")
        self._frames = open(self.staged("utt2num_frames"), "w") if frame_shift else None  # noqa: SIM115 (closed in _finish)
        if frame_shift:
            self.staged("frame_shift").write_text(f"{frame_shift:g}\n")

    def _write(self, row: Row) -> None:
        if not row.name or any(c.isspace() for c in row.name):
            raise W2VEmbedError(
                f"{row.name!r}: a Kaldi key cannot be empty or hold whitespace; name the rows by id (--segments with an id column)"
            )
        feats = np.asarray(row.features[self.layer], dtype=np.float32)  # Kaldi has float and double only
        self._writer(row.name, feats)
        if self._frames is not None:
            self._frames.write(f"{row.name} {feats.shape[0]}\n")

    def _finish(self) -> None:
        self._writer.close()
        if self._frames is not None:
            self._frames.close()
        prefix = f"{self._ark_temp}:"
        with open(self._kaldi_scp) as src, open(self._scp_temp, "w") as dst:
            for line in src:
                key, _, where = line.rstrip("\n").partition(" ")
                dst.write(f"{key} {self.ark}:{where.removeprefix(prefix)}\n")
        self._kaldi_scp.unlink()

    def _discard(self) -> None:
        self._writer.close()
        if self._frames is not None:
            self._frames.close()
        self._kaldi_scp.unlink(missing_ok=True)

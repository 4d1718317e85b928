"""What a run records (RunInfo) and compares on resume and merge: the format's attributes, and which
datasets hold a row's data (its columns: one per layer, or a units run's /units and /durations)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import __version__
from ..errors import W2VEmbedError
from ..layers import LAST, Layer, dataset_name, from_text

FORMAT = "w2v-embed/2"  # 2: layers stored as strings ("last"), windows; /1 files are read alike
READABLE_FORMATS = ("w2v-embed/1", FORMAT)
# `extract --units`: the same layout with /units (and /durations) where the layer datasets are; /1 was
# written whole at the end (no /input_index, no run attributes): load_units reads it, resume and merge do not.
UNITS_FORMAT = "w2v-embed-units/2"
UNITS_READABLE = ("w2v-embed-units/1", UNITS_FORMAT)
POOLINGS = ("mean", "max", "meanstd", "none")
DTYPES = ("float32", "float16")

_STR = h5py.string_dtype()

# What must match to continue a run, with the words an error message uses for it.
# Not in files written before they were recorded: "" there means unknown, not a mismatch.
_RECORDED_SINCE_ISSUE_9 = ("model_file_sha256", "precision", "channel", "shard_deal")
RESUME_FIELDS = {
    "model_sha256": "model sha256",
    "hidden_size": "hidden size",
    "layers": "layers",
    "pooling": "pooling",
    "dtype": "dtype",
    "chunk_seconds": "chunk seconds",
    "context_seconds": "context seconds",
    "model_file_sha256": "model file sha256",
    "precision": "model precision",
    "channel": "channel",
    "shard": "shard",
    "shard_deal": "shard deal (the sizes the split was dealt by)",
    "window_seconds": "window",
    "hop_seconds": "hop",
    "segments": "segments",
    "k": "codebook size K",
    "codebook_sha256": "codebook (sha256)",
    "dedup": "--dedup",
}


@dataclass(frozen=True)
class Column:
    """A dataset with an entry per row (pooled) or per frame or window: `Row.features[key]` goes there."""

    name: str
    key: Layer
    dtype: np.dtype
    tail: tuple[int, ...]  # the shape of one entry


@dataclass(frozen=True)
class RunInfo:
    """What a run computes; stored as the file's attributes and compared on resume."""

    model: str
    model_sha256: str
    layers: tuple[Layer, ...]  # numbered layers, then "last" (last_hidden_state)
    pooling: str  # "mean" | "max" | "meanstd" | "none"
    hidden_size: int
    dtype: str = "float32"
    sample_rate: int = 16000
    frame_rate: float = 50.0
    frame_center_offset: float = 0.0125
    chunk_seconds: float = 0.0
    context_seconds: float = 0.0
    # Recorded since issue 9; "" = not recorded (an older file), which resume does not compare.
    model_file_sha256: str = ""  # of the .onnx file itself: an int8/fp16 export or a damaged copy differs
    precision: str = ""  # the model's float32 | int8 | float16
    channel: str = ""  # "mean" of all channels, or the 0-based channel number used
    shard: str = ""  # "I/N" for a job of an array (extract --shard), "" otherwise
    shard_files: int = 0  # files assigned to this shard: stored + failed must reach it before a merge
    total_files: int = 0  # files in the whole list the shards split
    shard_deal: str = ""  # shards.Deal.fingerprint: the jobs of one array must have dealt the same list alike
    window_seconds: float = 0.0  # > 0: one pooled row per window (--window), rows of a file at /offsets
    hop_seconds: float = 0.0
    segments: bool = False  # rows are parts of recordings (--segments): /source_path, /segment_start, /segment_end
    # A units run (extract --units): one unit per frame of the one layer, stored as /units, not features.
    k: int = 0  # the codebook's size; 0: features
    codebook: str = ""  # its file, as given
    codebook_sha256: str = ""  # of its centroids (or of the faiss index file): resume and merge compare it
    dedup: bool = False  # runs collapsed, their lengths in /durations

    @property
    def units(self) -> bool:
        return self.k > 0

    @property
    def units_dtype(self) -> np.dtype:
        """int16 while every unit fits (K <= 32768), else int32."""
        return np.dtype(np.int16 if self.k <= np.iinfo(np.int16).max + 1 else np.int32)

    def columns(self) -> list[Column]:
        """The datasets that hold each row's data: one per layer (features), or /units (+ /durations)."""
        if self.units:
            return [Column("units", "units", self.units_dtype, ())] + (
                [Column("durations", "durations", np.dtype(np.int32), ())] if self.dedup else [])
        return [Column(dataset_name(k), k, np.dtype(self.dtype), (self.width,)) for k in self.layers]

    def checked_features(self, name: str, features: Mapping[Layer, np.ndarray]) -> dict[Layer, np.ndarray]:
        """One row's features for these columns, in the storage dtype, not copied when already in it (a long
        file's frames are big: the writer keeps the arrays until committed, unmodified). Wrong shapes are
        a caller bug that would corrupt the columns."""
        columns = self.columns()
        missing = [c.key for c in columns if c.key not in features]
        if missing:
            what = "units" if self.units else "layers"
            raise W2VEmbedError(f"{name}: features lack {what} {missing}; expected {what} {[c.key for c in columns]}")
        arrays = {c.key: np.asarray(features[c.key], dtype=c.dtype) for c in columns}
        if self.has_offsets:
            lengths = {len(a) if a.ndim else -1 for a in arrays.values()}
            ok = all(a.shape[1:] == c.tail and a.ndim == 1 + len(c.tail) for c, a in zip(columns, arrays.values()))
            ok = ok and len(lengths) == 1
            rows = "frames" if self.frame_level else "windows"
            expected = ("(frames,) in every column, alike" if self.units
                        else f"({rows}, {self.width}) with the same number of {rows} for every layer")
        else:
            ok = all(a.shape == c.tail for c, a in zip(columns, arrays.values()))
            expected = f"({self.width},)"
        if not ok:
            shapes = {k: a.shape for k, a in arrays.items()}
            raise W2VEmbedError(f"{name}: feature shapes {shapes}; expected {expected} for pooling {self.pooling}")
        return arrays

    @property
    def frame_level(self) -> bool:
        return self.pooling == "none"

    @property
    def windowed(self) -> bool:
        return self.window_seconds > 0

    @property
    def has_offsets(self) -> bool:
        """Several rows per file (frames or windows): file i is rows offsets[i]:offsets[i+1]."""
        return self.frame_level or self.windowed

    @property
    def width(self) -> int:
        """Columns of each layer dataset (meanstd stores mean and std side by side)."""
        return 2 * self.hidden_size if self.pooling == "meanstd" else self.hidden_size

    def validate(self) -> None:
        if self.pooling not in POOLINGS:
            raise W2VEmbedError(f"pooling {self.pooling!r}: expected one of {', '.join(POOLINGS)}")
        if self.dtype not in DTYPES:
            raise W2VEmbedError(f"dtype {self.dtype!r}: expected one of {', '.join(DTYPES)}")
        valid = all(k == LAST or (isinstance(k, int) and k >= 0) for k in self.layers)
        if not self.layers or len(set(self.layers)) != len(self.layers) or not valid:
            raise W2VEmbedError(f"layers {list(self.layers)}: expected distinct layer numbers >= 0 or 'last'")
        if self.hidden_size < 1:
            raise W2VEmbedError(f"hidden size {self.hidden_size}: expected a positive number")
        if self.units and (not self.frame_level or self.windowed or len(self.layers) != 1):
            raise W2VEmbedError("units: one layer at frame level (pooling none, no windows)")

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "layers": list(self.layers)}, indent=1)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunInfo:
        """Build from run.json or HDF5 attributes; unknown keys (newer versions) are ignored."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                continue
            if key == "layers":
                kwargs[key] = tuple(from_text(v) for v in np.atleast_1d(value))
            elif isinstance(value, bytes):
                kwargs[key] = value.decode()
            elif isinstance(value, np.generic):
                kwargs[key] = value.item()
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def attrs(self) -> dict[str, Any]:
        if self.units:  # the storage dtype of features does not apply
            units = {"layer": str(self.layers[0]), "k": np.int64(self.k), "codebook": self.codebook,
                     "codebook_sha256": self.codebook_sha256, "dedup": bool(self.dedup)}
            return {**{k: v for k, v in self._attrs().items() if k != "dtype"}, "format": UNITS_FORMAT, **units}
        return self._attrs()

    def _attrs(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "sample_rate": np.int64(self.sample_rate),
            "frame_rate": float(self.frame_rate),
            "frame_center_offset": float(self.frame_center_offset),
            "pooling": self.pooling,
            "layers": np.asarray([str(k) for k in self.layers], dtype=_STR),
            "hidden_size": np.int64(self.hidden_size),
            "w2v_embed_version": __version__,
            "chunk_seconds": float(self.chunk_seconds),
            "context_seconds": float(self.context_seconds),
            "dtype": self.dtype,
            "model_file_sha256": self.model_file_sha256,
            "precision": self.precision,
            "channel": self.channel,
            "shard": self.shard,
            "shard_files": np.int64(self.shard_files),
            "total_files": np.int64(self.total_files),
            "shard_deal": self.shard_deal,
            "window_seconds": float(self.window_seconds),
            "hop_seconds": float(self.hop_seconds),
            "segments": bool(self.segments),
        }


def check_resumable(where: Path, stored: RunInfo, new: RunInfo) -> None:
    for name, words in RESUME_FIELDS.items():
        old, now = getattr(stored, name), getattr(new, name)
        if old != now and not (old == "" and name in _RECORDED_SINCE_ISSUE_9):
            raise W2VEmbedError(
                f"cannot resume: {where} was written with {words} {show_value(old)}, this run asks for {show_value(now)}; "
                "use the same settings, or pass --overwrite to start over"
            )


def show_value(value: Any) -> str:
    if isinstance(value, tuple):
        return str(list(value))
    if isinstance(value, str) and len(value) == 64:  # a sha256
        return value[:12] + "…"
    return str(value)

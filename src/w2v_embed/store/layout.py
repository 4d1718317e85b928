"""The output format ("w2v-embed/2"): what a run records (RunInfo), the HDF5 layout, and opening,
checking and creating its files safely; shared by the writer, the merge and the reader."""

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
from .files import parts_dir

FORMAT = "w2v-embed/2"  # 2: layers stored as strings ("last"), windows; /1 files are read alike
READABLE_FORMATS = ("w2v-embed/1", FORMAT)
POOLINGS = ("mean", "max", "meanstd", "none")
DTYPES = ("float32", "float16")
MODES = ("new", "resume", "overwrite")

_STR = h5py.string_dtype()
REPLACES_MARKER = "replaces-output"  # in OUT.h5.parts/: these parts are an --overwrite run; OUT.h5 is not merged in
_CHUNK_BYTES = 1 << 20  # HDF5 chunk size target: fits the default 1 MiB chunk cache
COPY_BYTES = 64 << 20  # merge copies at most this much at a time
BUFFER_BYTES = 256 << 20  # commit early when buffered features grow past this (long frame-level files)
# What must match to continue a run, with the words an error message uses for it.
# Not in files written before they were recorded: "" there means unknown, not a mismatch.
# One row per stored row of a --segments run: where it was cut from (path, seconds).
SEGMENT_DATASETS = {"source_path": _STR, "segment_start": np.float64, "segment_end": np.float64}
Segment = tuple[str, float, float]
# Seconds a segment was cut short where it ended past its audio (within --max-overshoot); 0 for the others.
TRUNCATED = "segment_truncated"
# Beside the layer datasets of windowed outputs, one value per window.
WINDOW_DATASETS = {"window_start": np.float64, "window_end": np.float64, "window_partial": np.uint8}
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
}


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


_OVERWRITE_HINT = "pass --overwrite to replace it"


def open_output(path: Path, hint: str = _OVERWRITE_HINT) -> h5py.File:
    """Open a w2v-embed file (output or segment) for reading, or say what is wrong with it."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise W2VEmbedError(f"{path}: not a readable HDF5 file ({exc}); {hint}") from exc
    if attr_str(f.attrs.get("format")) not in READABLE_FORMATS:
        f.close()
        raise W2VEmbedError(f"{path}: not a w2v-embed output (format {FORMAT}); {hint}")
    return f


def attr_str(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value if isinstance(value, str) else None


def stored_info(f: h5py.File) -> RunInfo:
    attrs = dict(f.attrs)
    if "hidden_size" not in attrs:  # not written by every producer of the format: infer it
        first = f[dataset_name(from_text(np.atleast_1d(attrs["layers"])[0]))]
        attrs["hidden_size"] = first.shape[1] // (2 if attr_str(attrs.get("pooling")) == "meanstd" else 1)
    try:
        return RunInfo.from_dict(attrs)
    except TypeError as exc:
        raise W2VEmbedError(f"{f.filename}: incomplete attributes ({exc}); pass --overwrite to replace it") from exc


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


def read_strings(dataset: h5py.Dataset) -> list[str]:
    """Back to the str that was stored (a name that is not UTF-8 returns as os.fsdecode gives it)."""
    return [str(s) for s in dataset.asstr(errors="surrogateescape")[()]]


def encode_strings(strings: list[str]) -> np.ndarray:
    """File names as the file system's bytes: UTF-8 for ordinary names, and any other name (e.g. Latin-1
    'caf\\xe9.wav', which Python holds as 'caf\\udce9.wav') byte for byte, where strict UTF-8 would crash."""
    return np.array([s.encode("utf-8", "surrogateescape") for s in strings], dtype=object)


# -- writing the layout ----------------------------------------------------------------------------


def create_layout(
    f: h5py.File, info: RunInfo, rows: int, frames: int, failures: list[tuple[str, str]], resizable: bool
) -> None:
    """All datasets of the format, sized; contiguous for segments. For outputs (`resizable`) the
    per-row datasets are chunked and resizable, and the layer and window datasets, where the bytes
    are, contiguous, placed now and never pre-filled, so that merge copies their bytes straight in
    (store.merge). `frames`: rows of the layer datasets when a file has several (frames, or windows)."""
    f.attrs.update(info.attrs())

    def create(name: str, shape: tuple[int, ...], dtype: Any, bulk: bool = False) -> h5py.Dataset:
        if not resizable:
            return f.create_dataset(name, shape=shape, dtype=dtype)
        if bulk:
            placed = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            placed.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            return f.create_dataset(name, shape=shape, dtype=dtype, dcpl=placed, fill_time="never")
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * (16 if dtype is _STR else np.dtype(dtype).itemsize)
        chunk_rows = max(1, min(shape[0], _CHUNK_BYTES // max(row_bytes, 1)))
        return f.create_dataset(name, shape=shape, dtype=dtype, maxshape=(None, *shape[1:]), chunks=(chunk_rows, *shape[1:]))

    create("paths", (rows,), _STR)
    create("input_index", (rows,), np.int64)
    create("num_samples", (rows,), np.int64)
    create("source_sample_rate", (rows,), np.int64)
    if info.segments:
        for name, dtype in SEGMENT_DATASETS.items():
            create(name, (rows,), dtype)
        create(TRUNCATED, (rows,), np.float64)
    if info.has_offsets:
        create("offsets", (rows + 1,), np.int64)
    for layer in info.layers:
        create(dataset_name(layer), (frames if info.has_offsets else rows, info.width), info.dtype, bulk=True)
    if info.windowed:
        for name, dtype in WINDOW_DATASETS.items():
            create(name, (frames,), dtype, bulk=True)
    names = create("failed/paths", (len(failures),), _STR)
    errors = create("failed/errors", (len(failures),), _STR)
    if failures:
        names[:] = encode_strings([n for n, _ in failures])
        errors[:] = encode_strings([e for _, e in failures])


def check_rows(f: h5py.File, info: RunInfo) -> np.ndarray | None:
    """Check that every dataset has one entry per stored row (the layer datasets: one per frame or
    window, as /offsets say), so that no reader or merge broadcasts, cuts or shifts rows of a damaged
    or hand-edited file; returns /offsets (None for pooled outputs)."""

    def bad(name: str, shape: Any, expected: str) -> W2VEmbedError:
        return W2VEmbedError(f"{f.filename}: /{name} has shape {tuple(shape)}, expected {expected}; "
                             "the file is damaged or was not written by w2v-embed")

    rows = f["paths"].shape[0]
    per_row = ["num_samples", "source_sample_rate", *(["input_index"] if "input_index" in f else []),
               *(SEGMENT_DATASETS if info.segments else ()), *([TRUNCATED] if TRUNCATED in f else [])]
    for name in per_row:
        if name not in f or f[name].shape != (rows,):
            raise bad(name, f[name].shape if name in f else (), f"({rows},), one per path")
    if f["failed/errors"].shape != f["failed/paths"].shape:
        raise bad("failed/errors", f["failed/errors"].shape, f"{f['failed/paths'].shape}, one per failed path")
    offsets = None
    entries = rows
    if info.has_offsets:
        offsets = f["offsets"][()] if "offsets" in f else np.zeros(0, np.int64)
        if offsets.shape != (rows + 1,) or offsets[0] != 0 or (np.diff(offsets) < 0).any():
            raise bad("offsets", offsets.shape, f"({rows + 1},), rising from 0")
        entries = int(offsets[-1])
        for name in WINDOW_DATASETS if info.windowed else ():
            if name not in f or f[name].shape != (entries,):
                raise bad(name, f[name].shape if name in f else (), f"({entries},), one per window")
    for layer in info.layers:
        name = dataset_name(layer)
        if name not in f or f[name].shape != (entries, info.width):
            raise bad(name, f[name].shape if name in f else (), f"({entries}, {info.width})")
    return offsets


def open_finished(path: str | Path) -> h5py.File:
    path = Path(path)
    # The parts folder first: a run that finishes renames OUT.h5 into place, then removes its parts, so
    # parts seen absent before OUT.h5 is looked for mean OUT.h5 is there unless it never was.
    unfinished = parts_dir(path).exists()
    if not path.exists():
        if unfinished:
            raise W2VEmbedError(f"{path} is not finished yet; rerun the extraction with --resume to complete it")
        raise W2VEmbedError(f"{path}: no such file")
    return open_output(path, "give the .h5 file that `w2v-embed extract` wrote")



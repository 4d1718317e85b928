"""The output format ("w2v-embed/2", and "w2v-embed-units/2" for units): the HDF5 layout, and opening,
checking and creating its files safely; shared by the writer, the merge and the reader. What a run
records (RunInfo) is in runinfo.py, re-exported here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import W2VEmbedError
from ..layers import dataset_name, from_text
from .files import parts_dir
from .runinfo import (  # noqa: F401  (re-exported: the format's names in one place)
    DTYPES,
    FORMAT,
    POOLINGS,
    READABLE_FORMATS,
    RESUME_FIELDS,
    UNITS_FORMAT,
    UNITS_READABLE,
    Column,
    RunInfo,
    check_resumable,
    show_value,
)

MODES = ("new", "resume", "overwrite")

_STR = h5py.string_dtype()
REPLACES_MARKER = "replaces-output"  # in OUT.h5.parts/: these parts are an --overwrite run; OUT.h5 is not merged in
_CHUNK_BYTES = 1 << 20  # HDF5 chunk size target: fits the default 1 MiB chunk cache
COPY_BYTES = 64 << 20  # merge copies at most this much at a time
BUFFER_BYTES = 256 << 20  # commit early when buffered features grow past this (long frame-level files)
# One row per stored row of a --segments run: where it was cut from (path, seconds).
SEGMENT_DATASETS = {"source_path": _STR, "segment_start": np.float64, "segment_end": np.float64}
Segment = tuple[str, float, float]
# Seconds a segment was cut short where it ended past its audio (within --max-overshoot); 0 for the others.
TRUNCATED = "segment_truncated"
# Beside the layer datasets of windowed outputs, one value per window.
WINDOW_DATASETS = {"window_start": np.float64, "window_end": np.float64, "window_partial": np.uint8}

_OVERWRITE_HINT = "pass --overwrite to replace it"


def open_output(path: Path, hint: str = _OVERWRITE_HINT, units: bool | None = False) -> h5py.File:
    """Open a w2v-embed file (output or segment) for reading, or say what is wrong with it; `units`:
    whether it must be a units output (True), a features output (False) or either (None)."""
    if Path(path).is_dir():
        raise W2VEmbedError(f"{path} is a folder; {hint}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise W2VEmbedError(f"{path}: not a readable HDF5 file ({exc}); {hint}") from exc
    found = attr_str(f.attrs.get("format"))
    if found not in READABLE_FORMATS and found != UNITS_FORMAT:
        f.close()
        old = " (written whole by an older w2v-embed: load_units reads it, extract --overwrite redoes it)" if found in UNITS_READABLE else ""
        raise W2VEmbedError(f"{path}: not a w2v-embed output (format {FORMAT} or {UNITS_FORMAT}){old}; {hint}")
    if units is not None and (found == UNITS_FORMAT) != units:
        f.close()
        what = "a units output of `extract --units`: read it with w2v_embed.load_units" if not units else "not a units output"
        raise W2VEmbedError(f"{path}: {what}")
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



def read_strings(dataset: h5py.Dataset) -> list[str]:
    """Back to the str that was stored (a name that is not UTF-8 returns as os.fsdecode gives it)."""
    return [str(s) for s in dataset.asstr(errors="surrogateescape")[()]]


def read_failures(f: h5py.File) -> list[tuple[str, str]]:
    """(path, reason) of every failed input, as stored under /failed."""
    return list(zip(read_strings(f["failed/paths"]), read_strings(f["failed/errors"])))


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
    for column in info.columns():
        create(column.name, (frames if info.has_offsets else rows, *column.tail), column.dtype, bulk=True)
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
    for column in info.columns():
        name, shape = column.name, (entries, *column.tail)
        if name not in f or f[name].shape != shape:
            raise bad(name, f[name].shape if name in f else (), str(shape))
    return offsets


def open_finished(path: str | Path, units: bool | None = False) -> h5py.File:
    path = Path(path)
    # The parts folder first: a run that finishes renames OUT.h5 into place, then removes its parts, so
    # parts seen absent before OUT.h5 is looked for mean OUT.h5 is there unless it never was.
    unfinished = parts_dir(path).exists()
    if not path.exists():
        if unfinished:
            raise W2VEmbedError(f"{path} is not finished yet; rerun the extraction with --resume to complete it")
        raise W2VEmbedError(f"{path}: no such file")
    return open_output(path, "give the .h5 file that `w2v-embed extract` wrote", units)



"""Streaming merges: segments (and an earlier OUT.h5) into one output, rows in input order; `join`
uses it for `w2v-embed merge` of shards."""

from __future__ import annotations

import os
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from .files import copy_range, create_h5
from .layout import (
    COPY_BYTES,
    SEGMENT_DATASETS,
    TRUNCATED,
    WINDOW_DATASETS,
    RunInfo,
    check_rows,
    create_layout,
    open_output,
    read_failures,
    read_strings,
)

# -- merging ---------------------------------------------------------------------------------------


@dataclass
class _Source:
    """One input of a merge, with the rows it contributes (duplicates of earlier rows dropped)."""

    path: Path
    keep: np.ndarray  # bool per row
    names: list[str]
    stored_index: np.ndarray | None  # /input_index (None in files written before it was recorded)
    offsets: np.ndarray | None  # frame-level and windowed only


# How a merge orders its rows: by the listing of the run that writes it (name -> input index), by each
# row's stored /input_index (the parts of one sharded list), or inputs one after the other ("given").
Order = Mapping[str, int] | Literal["stored", "given"]


def _plan(paths: list[Path], info: RunInfo) -> tuple[list[_Source], list[tuple[str, str]]]:
    """Reads only names, indices and offsets: which rows survive, and the failures still unresolved."""
    sources: list[_Source] = []
    stored: set[str] = set()
    failures: dict[str, str] = {}  # first-failure order, latest reason
    for path in paths:
        with open_output(path, units=None) as f:
            offsets = check_rows(f, info)
            names = read_strings(f["paths"])
            keep = np.zeros(len(names), dtype=bool)
            for i, name in enumerate(names):
                keep[i] = name not in stored
                stored.add(name)
            index = f["input_index"][()] if "input_index" in f else None
            for name, error in read_failures(f):
                failures[name] = error
        sources.append(_Source(path, keep, names, index, offsets))
    return sources, [(n, e) for n, e in failures.items() if n not in stored]


def _in_order(sources: list[_Source], order: Order) -> tuple[list[tuple[int, int, int]], np.ndarray]:
    """The output's rows as runs (source, first row, stop row) in output order, and its /input_index.
    Rows the order does not place (names outside the listing, files from before /input_index) follow
    the others, as given."""
    source_of, row_of, keys = [], [], []
    for number, source in enumerate(sources):
        rows = np.flatnonzero(source.keep)
        if isinstance(order, Mapping):
            found = [order.get(source.names[r]) for r in rows.tolist()]
            key = np.array([np.inf if k is None else k for k in found], dtype=np.float64)
        elif order == "stored" and source.stored_index is not None:
            key = source.stored_index[rows].astype(np.float64)
        else:
            key = np.full(len(rows), np.inf)
        source_of.append(np.full(len(rows), number, dtype=np.int64))
        row_of.append(rows)
        keys.append(key)
    key = np.concatenate(keys) if keys else np.zeros(0)
    placed = np.isfinite(key)
    after = int(key[placed].max()) + 1 if placed.any() else 0
    key[~placed] = after + np.arange(int((~placed).sum()))
    ranking = np.argsort(key, kind="stable")
    source_of = np.concatenate(source_of)[ranking] if sources else np.zeros(0, np.int64)
    row_of = np.concatenate(row_of)[ranking] if sources else np.zeros(0, np.int64)
    breaks = np.flatnonzero((np.diff(source_of) != 0) | (np.diff(row_of) != 1)) + 1
    starts, stops = np.concatenate([[0], breaks]), np.concatenate([breaks, [len(row_of)]])
    runs = [(int(source_of[a]), int(row_of[a]), int(row_of[b - 1]) + 1) for a, b in zip(starts, stops) if b > a]
    return runs, key[ranking].astype(np.int64)


class _Inputs:
    """The merge's inputs, opened when first read and closed again past `keep_open` (a run of
    frame-level files has a segment per long file: thousands)."""

    def __init__(self, paths: list[Path], keep_open: int = 64) -> None:
        self.paths, self.keep_open = paths, keep_open
        self._open: OrderedDict[int, h5py.File] = OrderedDict()

    def __call__(self, number: int) -> h5py.File:
        if number in self._open:
            self._open.move_to_end(number)
        else:
            if len(self._open) >= self.keep_open:
                self._open.popitem(last=False)[1].close()
            self._open[number] = h5py.File(self.paths[number], "r")
        return self._open[number]

    def close(self) -> None:
        for f in self._open.values():
            f.close()
        self._open.clear()


def _copy(src: h5py.Dataset, dst: h5py.Dataset, start: int, stop: int, at: int) -> None:
    """dst[at:] = src[start:stop], a bounded block at a time."""
    step = _block_rows(src)
    for s in range(start, stop, step):
        e = min(stop, s + step)
        dst[at + s - start : at + e - start] = src[s:e]


def _block_rows(dataset: h5py.Dataset) -> int:
    return max(1, COPY_BYTES // max(1, int(np.prod(dataset.shape[1:], dtype=np.int64)) * dataset.dtype.itemsize))


def _read(f: h5py.File, name: str, lo: int, hi: int, dtype: np.dtype) -> np.ndarray:
    """Rows lo:hi of a dataset; zeros where an older file lacks it (segment_truncated)."""
    return f[name][lo:hi] if name in f else np.zeros(hi - lo, dtype)


def _copy_in_order(inputs: _Inputs, dst: h5py.Dataset, spans: list[tuple[int, int, int]]) -> None:
    """dst = the concatenation of input[s][a:b] for each span (s, a, b), gathered into blocks of about
    COPY_BYTES: each block reads once from each input it draws on and writes once, so rows finishing
    out of order (many short spans) cost about what one long run does."""
    name = dst.name
    budget = _block_rows(dst)
    block: list[tuple[int, int, int]] = []
    at = units = 0

    def flush() -> None:
        nonlocal at, units
        if not block:
            return
        ranges: dict[int, tuple[int, int]] = {}
        for s, a, b in block:  # an input's spans in one block are one stretch of its rows: read it once
            lo, hi = ranges.get(s, (a, b))
            ranges[s] = (min(lo, a), max(hi, b))
        data = {s: _read(inputs(s), name, lo, hi, dst.dtype) for s, (lo, hi) in ranges.items()}
        dst[at : at + units] = np.concatenate([data[s][a - ranges[s][0] : b - ranges[s][0]] for s, a, b in block])
        at += units
        units = 0
        block.clear()

    for s, a, b in spans:
        if b - a >= budget:  # a long file's frames: copied straight, block by block
            flush()
            _copy(inputs(s)[name], dst, a, b, at)
            at += b - a
            continue
        if units + b - a > budget:
            flush()
        block.append((s, a, b))
        units += b - a
    flush()


# A dataset copied byte for byte: (input number, byte offset there, byte offset in the output, bytes) per span.
ByteSpans = np.ndarray


def _byte_spans(inputs: _Inputs, dst: h5py.Dataset, spans: list[tuple[int, int, int]]) -> ByteSpans | None:
    """Where each span's bytes are in its input and go in the output, when dst and every input it draws
    on store the dataset contiguously in the same dtype (segments and outputs of this version); None
    otherwise (chunked files of earlier versions: copied through HDF5)."""
    if not spans:
        return np.zeros((0, 4), np.int64)
    at = dst.id.get_offset()
    if at is None or dst.chunks is not None:
        return None
    row = int(np.prod(dst.shape[1:], dtype=np.int64)) * dst.dtype.itemsize
    starts = {}
    for number in {s for s, _, _ in spans}:
        f = inputs(number)
        src = f.get(dst.name)
        start = src.id.get_offset() if src is not None and src.chunks is None else None
        if start is None or src.dtype != dst.dtype or src.shape[1:] != dst.shape[1:] or f.userblock_size:
            return None
        starts[number] = start
    table = np.array(spans, dtype=np.int64).reshape(-1, 3)
    sizes = (table[:, 2] - table[:, 1]) * row
    first = np.array([starts[s] for s in table[:, 0].tolist()], dtype=np.int64)
    targets = at + np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return np.stack([table[:, 0], first + table[:, 1] * row, targets, sizes], axis=1)


def _copy_bytes(paths: list[Path], out: Path, copies: list[ByteSpans]) -> None:
    """Do the byte copies planned by _byte_spans, into the closed output file."""
    target = os.open(out, os.O_WRONLY)
    sources: OrderedDict[int, int] = OrderedDict()  # input number -> descriptor, the 64 used last
    try:
        for table in copies:
            for number, start, at, count in table.tolist():
                if number not in sources:
                    if len(sources) >= 64:
                        os.close(sources.popitem(last=False)[1])
                    sources[number] = os.open(paths[number], os.O_RDONLY)
                sources.move_to_end(number)
                copy_range(sources[number], start, target, at, count)
    finally:
        for descriptor in sources.values():
            os.close(descriptor)
        os.close(target)


def merge_files(paths: list[Path], out: Path, info: RunInfo, order: Order = "stored") -> None:
    """Stream all inputs into one new output file, rows in `order` (see Order), each row once."""
    sources, failures = _plan(paths, info)
    runs, index = _in_order(sources, order)
    per_row = ["paths", "num_samples", "source_sample_rate", *(SEGMENT_DATASETS if info.segments else ()),
               *([TRUNCATED] if info.segments else [])]
    per_frame = [c.name for c in info.columns()] + (list(WINDOW_DATASETS) * info.windowed)
    if info.has_offsets:  # frames (or windows) are rows of the layer datasets: their own spans
        frame_runs = [(s, int(sources[s].offsets[a]), int(sources[s].offsets[b])) for s, a, b in runs]
        sizes = np.concatenate([np.diff(sources[s].offsets[a : b + 1]) for s, a, b in runs] or [np.zeros(0, np.int64)])
        out_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    else:
        per_row += per_frame
        frame_runs, per_frame, out_offsets = [], [], np.zeros(1, np.int64)
    bulk = {c.name for c in info.columns()} | set(WINDOW_DATASETS)
    inputs = _Inputs(paths)
    copies: list[ByteSpans] = []  # the big datasets' bytes, copied once HDF5 has closed the output
    try:
        with create_h5(out) as f:
            create_layout(f, info, len(index), int(out_offsets[-1]), failures, resizable=True)
            f.attrs["run_id"] = uuid.uuid4().hex  # this file's identity: readers notice when it is replaced
            f["input_index"][:] = index
            if info.has_offsets:
                f["offsets"][:] = out_offsets
            for name, spans in [(n, runs) for n in per_row] + [(n, frame_runs) for n in per_frame]:
                planned = _byte_spans(inputs, f[name], spans) if name in bulk else None
                if planned is None:
                    _copy_in_order(inputs, f[name], spans)
                else:
                    copies.append(planned)
    finally:
        inputs.close()
    _copy_bytes(paths, out, copies)

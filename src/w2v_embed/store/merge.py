"""Streaming merges: segments (and an earlier OUT.h5) into one output, and `w2v-embed merge` of shards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from ..errors import W2VEmbedError
from ..layers import dataset_name
from .files import create_h5, remove_merge_temps, write_atomically, writing
from .layout import (
    COPY_BYTES,
    RESUME_FIELDS,
    SEGMENT_DATASETS,
    WINDOW_DATASETS,
    RunInfo,
    check_rows,
    create_layout,
    open_finished,
    open_output,
    read_strings,
    show_value,
    stored_info,
)
from .lock import Lock

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
        with open_output(path) as f:
            offsets = check_rows(f, info)
            names = read_strings(f["paths"])
            keep = np.zeros(len(names), dtype=bool)
            for i, name in enumerate(names):
                keep[i] = name not in stored
                stored.add(name)
            index = f["input_index"][()] if "input_index" in f else None
            for name, error in zip(read_strings(f["failed/paths"]), read_strings(f["failed/errors"])):
                failures[name] = error
        sources.append(_Source(path, keep, names, index, offsets))
    return sources, [(n, e) for n, e in failures.items() if n not in stored]


def _destinations(sources: list[_Source], order: Order) -> tuple[list[np.ndarray], np.ndarray]:
    """Each source's kept rows' places in the output, and the output's /input_index. Rows the order does
    not place (names outside the listing, files from before /input_index) follow the others, as given."""
    keys: list[float] = []
    for source in sources:
        for row in np.flatnonzero(source.keep).tolist():
            if isinstance(order, Mapping):
                key = order.get(source.names[row])
            elif order == "stored" and source.stored_index is not None:
                key = int(source.stored_index[row])
            else:
                key = None
            keys.append(np.inf if key is None else key)
    key_array = np.asarray(keys, dtype=np.float64)
    placed = np.isfinite(key_array)
    after = int(key_array[placed].max()) + 1 if placed.any() else 0
    key_array[~placed] = after + np.arange(int((~placed).sum()))
    ranking = np.argsort(key_array, kind="stable")
    places = np.empty(len(keys), dtype=np.int64)
    places[ranking] = np.arange(len(keys))
    counts = np.cumsum([0] + [int(s.keep.sum()) for s in sources])
    return [places[a:b] for a, b in zip(counts[:-1], counts[1:])], key_array[ranking].astype(np.int64)


def _runs(rows: np.ndarray, places: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """(first row, stop row, first place) of each stretch of rows that land one after another."""
    if not len(rows):
        return
    breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(places) != 1)) + 1
    for a, b in zip(np.concatenate([[0], breaks]).tolist(), np.concatenate([breaks, [len(rows)]]).tolist()):
        yield int(rows[a]), int(rows[b - 1]) + 1, int(places[a])


def _copy(src: h5py.Dataset, dst: h5py.Dataset, start: int, stop: int, at: int) -> None:
    """dst[at:] = src[start:stop], a bounded block at a time."""
    row_bytes = max(1, int(np.prod(src.shape[1:], dtype=np.int64)) * src.dtype.itemsize)
    step = max(1, COPY_BYTES // row_bytes)
    for s in range(start, stop, step):
        e = min(stop, s + step)
        dst[at + s - start : at + e - start] = src[s:e]


def merge_files(paths: list[Path], out: Path, info: RunInfo, order: Order = "stored") -> None:
    """Stream all inputs into one new output file, rows in `order` (see Order), each row once."""
    sources, failures = _plan(paths, info)
    places, index = _destinations(sources, order)
    rows = len(index)
    sizes = np.zeros(rows, dtype=np.int64)  # frames (or windows) of each output row
    for source, place in zip(sources, places):
        if source.offsets is not None:
            sizes[place] = np.diff(source.offsets)[source.keep]
    out_offsets = np.concatenate([[0], np.cumsum(sizes)])
    per_row = ["paths", "num_samples", "source_sample_rate", *(SEGMENT_DATASETS if info.segments else ())]
    per_frame = [dataset_name(k) for k in info.layers] + (list(WINDOW_DATASETS) * info.windowed)
    with create_h5(out) as f:
        create_layout(f, info, rows, int(out_offsets[-1]), failures, resizable=True)
        f.attrs["run_id"] = uuid.uuid4().hex  # this file's identity: readers notice when it is replaced
        f["input_index"][:] = index
        if info.has_offsets:
            f["offsets"][:] = out_offsets
        for source, place in zip(sources, places):
            with h5py.File(source.path, "r") as src:
                for a, b, at in _runs(np.flatnonzero(source.keep), place):
                    for name in per_row + (per_frame if source.offsets is None else []):  # pooled: a row each
                        _copy(src[name], f[name], a, b, at)
                    if source.offsets is not None:
                        fa, fb = int(source.offsets[a]), int(source.offsets[b])
                        for name in per_frame:
                            _copy(src[name], f[name], fa, fb, int(out_offsets[at]))


# -- merging shards --------------------------------------------------------------------------------

_MERGE_FIELDS = {k: v for k, v in RESUME_FIELDS.items() if k not in ("shard", "shard_deal")}


@dataclass(frozen=True)
class MergeSummary:
    output: Path
    inputs: int
    files: int
    failed: int


def merge(output: str | Path, inputs: Sequence[str | Path], overwrite: bool = False) -> MergeSummary:
    """Join finished outputs (the jobs of `extract --shard I/N`) into one, streaming and atomically.

    Refused, before anything is written: unfinished or incomplete shards, a missing or repeated
    shard of an I/N set, outputs computed differently, a file stored twice. The result is written
    under a temporary name and renamed, so a crashed merge leaves no output and can simply be rerun.
    """
    output, paths = Path(output), [Path(p) for p in inputs]
    if not paths:
        raise W2VEmbedError("merge: no inputs given")
    if output.exists() and not overwrite:
        raise W2VEmbedError(f"{output} exists; pass --overwrite to replace it")
    if any(p.resolve() == output.resolve() for p in paths if p.exists()):
        raise W2VEmbedError(f"{output} is also an input; write the merge to a new file")
    infos, counts = _check_mergeable(paths)
    info = replace(infos[0], shard="", shard_files=0, total_files=0, shard_deal="")
    lock = Lock(output)
    try:
        remove_merge_temps(output)
        with writing(output):
            temp = output.with_name(f"{output.name}.tmp-{os.getpid()}")
            # the parts of one sharded list go back into its order; other outputs follow one another
            order = "stored" if infos[0].shard else "given"
            write_atomically(output, temp, lambda t: merge_files(paths, t, info, order))
    finally:
        lock.release()
    return MergeSummary(output, len(paths), sum(c[0] for c in counts), sum(c[1] for c in counts))


def _check_mergeable(paths: list[Path]) -> tuple[list[RunInfo], list[tuple[int, int]]]:
    """Each input's RunInfo and (stored, failed) counts, after every check a merge needs."""
    infos, counts, stored, owner = [], [], [], {}
    for path in paths:
        with open_finished(path) as f:
            info = stored_info(f)
            names = read_strings(f["paths"])
            failed = int(f["failed/paths"].shape[0])
        if infos:
            for name, words in _MERGE_FIELDS.items():
                if getattr(info, name) != getattr(infos[0], name):
                    raise W2VEmbedError(
                        f"cannot merge: {path} was computed with {words} {show_value(getattr(info, name))}, "
                        f"{paths[0]} with {show_value(getattr(infos[0], name))}"
                    )
        if info.shard and len(names) + failed != info.shard_files:
            raise W2VEmbedError(
                f"cannot merge: {path} (shard {info.shard}) holds {len(names) + failed} of its {info.shard_files} "
                "files; rerun that shard with --resume"
            )
        infos.append(info)
        counts.append((len(names), failed))
        stored.append(names)
    _check_shard_set(paths, infos)
    for path, names in zip(paths, stored):
        for name in names:
            if name in owner:
                raise W2VEmbedError(f"cannot merge: {name} is stored in both {owner[name]} and {path}")
            owner[name] = path
    return infos, counts


def _check_shard_set(paths: list[Path], infos: list[RunInfo]) -> None:
    """Shards of one I/N split: all N present, each once, all from the same list."""
    sharded = [(p, i) for p, i in zip(paths, infos) if i.shard]
    if not sharded:
        return
    if len(sharded) != len(paths):
        plain = next(p for p, i in zip(paths, infos) if not i.shard)
        raise W2VEmbedError(f"cannot merge: {plain} is not a shard, {sharded[0][0]} is ({sharded[0][1].shard})")
    sets = {(i.shard.split("/")[1], i.total_files) for _, i in sharded}
    if len(sets) > 1:
        raise W2VEmbedError("cannot merge: the shards come from different splits (" + ", ".join(
            f"{p}: {i.shard} of {i.total_files} files" for p, i in sharded) + ")")
    deals = {info.shard_deal for _, info in sharded}
    if len(deals) > 1:
        a = sharded[0][0]
        b = next(p for p, i in sharded if i.shard_deal != sharded[0][1].shard_deal)
        raise W2VEmbedError(
            f"cannot merge: {a} and {b} were dealt from different listings (a file was added, removed or changed "
            "size between the jobs), so some files may be in no shard; rerun every shard with --overwrite")
    count = int(sharded[0][1].shard.split("/")[1])
    given: dict[int, Path] = {}
    for path, info in sharded:
        index = int(info.shard.split("/")[0])
        if index in given:
            raise W2VEmbedError(f"cannot merge: shard {info.shard} given twice ({given[index]} and {path})")
        given[index] = path
    missing = [f"{i}/{count}" for i in range(count) if i not in given]
    if missing:
        raise W2VEmbedError(f"cannot merge: shard {', '.join(missing)} missing; all {count} shards are needed")
    dealt = sum(info.shard_files for _, info in sharded)
    if dealt != sharded[0][1].total_files:
        raise W2VEmbedError(
            f"cannot merge: the shards hold {dealt} files between them, but the list they split has "
            f"{sharded[0][1].total_files}; the jobs did not deal the same list alike (did files change while "
            "the array ran?): rerun every shard with --overwrite")

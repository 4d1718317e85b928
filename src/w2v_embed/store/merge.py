"""Streaming merges: segments (and an earlier OUT.h5) into one output, and `w2v-embed merge` of shards."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

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
    offsets: np.ndarray | None  # frame-level only


def _plan(paths: list[Path], info: RunInfo) -> tuple[list[_Source], list[tuple[str, str]]]:
    """Reads only names (and offsets): which rows survive, and the failures still unresolved."""
    sources: list[_Source] = []
    stored: set[str] = set()
    failures: dict[str, str] = {}  # first-failure order, latest reason
    for path in paths:
        with open_output(path) as f:
            keep = np.zeros(f["paths"].shape[0], dtype=bool)
            for i, name in enumerate(read_strings(f["paths"])):
                keep[i] = name not in stored
                stored.add(name)
            offsets = f["offsets"][()] if info.has_offsets else None
            for name, error in zip(read_strings(f["failed/paths"]), read_strings(f["failed/errors"])):
                failures[name] = error
        sources.append(_Source(path, keep, offsets))
    return sources, [(n, e) for n, e in failures.items() if n not in stored]


def _runs(keep: np.ndarray) -> Iterator[tuple[int, int]]:
    """[start, stop) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], keep.astype(np.int8), [0]])))
    yield from zip(edges[::2].tolist(), edges[1::2].tolist())


def _copy(src: h5py.Dataset, dst: h5py.Dataset, start: int, stop: int, at: int) -> None:
    """dst[at:] = src[start:stop], a bounded block at a time."""
    row_bytes = max(1, int(np.prod(src.shape[1:], dtype=np.int64)) * src.dtype.itemsize)
    step = max(1, COPY_BYTES // row_bytes)
    for s in range(start, stop, step):
        e = min(stop, s + step)
        dst[at + s - start : at + e - start] = src[s:e]


def merge_files(paths: list[Path], out: Path, info: RunInfo) -> None:
    """Stream all inputs, in order, into one new output file."""
    sources, failures = _plan(paths, info)
    rows = sum(int(s.keep.sum()) for s in sources)
    frames = sum(int(s.offsets[b] - s.offsets[a]) for s in sources if s.offsets is not None for a, b in _runs(s.keep))
    with create_h5(out) as f:
        create_layout(f, info, rows, frames, failures, resizable=True)
        row = frame = 0
        for source in sources:
            with h5py.File(source.path, "r") as src:
                for a, b in _runs(source.keep):
                    for name in ("paths", "num_samples", "source_sample_rate", *(SEGMENT_DATASETS if info.segments else ())):
                        _copy(src[name], f[name], a, b, row)
                    if source.offsets is not None:
                        fa, fb = int(source.offsets[a]), int(source.offsets[b])
                        for name in [dataset_name(k) for k in info.layers] + (list(WINDOW_DATASETS) * info.windowed):
                            _copy(src[name], f[name], fa, fb, frame)
                        f["offsets"][row + 1 : row + 1 + b - a] = frame + source.offsets[a + 1 : b + 1] - fa
                        frame += fb - fa
                    else:
                        for layer in info.layers:
                            _copy(src[dataset_name(layer)], f[dataset_name(layer)], a, b, row)
                    row += b - a
        if info.has_offsets:
            f["offsets"][0] = 0


# -- merging shards --------------------------------------------------------------------------------

_MERGE_FIELDS = {k: v for k, v in RESUME_FIELDS.items() if k != "shard"}


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
    info = replace(infos[0], shard="", shard_files=0, total_files=0)
    lock = Lock(output)
    try:
        remove_merge_temps(output)
        with writing(output):
            temp = output.with_name(f"{output.name}.tmp-{os.getpid()}")
            write_atomically(output, temp, lambda t: merge_files(paths, t, info))
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

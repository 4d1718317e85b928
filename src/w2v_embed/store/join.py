"""`w2v-embed merge`: the outputs of `extract --shard I/N` jobs (or any outputs computed alike) joined
into one, after every check a merge needs; streamed by merge.merge_files, written atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import W2VEmbedError
from ..paths import check_output
from .files import remove_merge_temps, write_atomically, writing
from .layout import RESUME_FIELDS, RunInfo, open_finished, read_strings, show_value, stored_info
from .lock import Lock
from .merge import Order, merge_files

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
    Units outputs merge alike, also into fairseq's `.km` text (units.sinks.write_km).
    """
    output, paths = Path(output), [Path(p) for p in inputs]
    if not paths:
        raise W2VEmbedError("merge: no inputs given")
    check_output(output, overwrite, example="merged.h5")
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
            if output.suffix == ".km":
                _merge_km(paths, output, temp, info, order)
            else:
                write_atomically(output, temp, lambda t: merge_files(paths, t, info, order))
    finally:
        lock.release()
    return MergeSummary(output, len(paths), sum(c[0] for c in counts), sum(c[1] for c in counts))


def _merge_km(paths: list[Path], output: Path, temp: Path, info: RunInfo, order: Order) -> None:
    """Units into fairseq's .km text, by way of one merged HDF5 file."""
    from ..units.sinks import write_km

    if not info.units:
        raise W2VEmbedError(f"{output}: a .km file holds units; merge the outputs of `extract --units` into it")
    try:
        merge_files(paths, temp, info, order)
        write_km(temp, output)
    finally:
        temp.unlink(missing_ok=True)


def _check_mergeable(paths: list[Path]) -> tuple[list[RunInfo], list[tuple[int, int]]]:
    """Each input's RunInfo and (stored, failed) counts, after every check a merge needs."""
    infos, counts, stored, owner = [], [], [], {}
    for path in paths:
        with open_finished(path, units=None) as f:
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

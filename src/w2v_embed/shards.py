"""`--shard I/N`: the split of one file list that every job of an array computes alike, alone.

Like fairseq's feature dumpers (`nshard`, `rank`), each job gets a fixed part of the list and writes
its own output; `w2v-embed merge` joins them. Parts are balanced by bytes on disk, not file count,
so that a job with the long recordings does not finish hours after the others: files are dealt,
largest first, to the part with the fewest bytes so far (ties: the lower index). The deal depends
only on the names and sizes, so every job that sees the same corpus computes the same parts.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .discover import AudioFile, numbered
from .errors import UsageError

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    """Part `index` (0-based) of `count`."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'I/N' with 0 <= I < N, e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT."""
        match = _SPEC.fullmatch(text)
        if not match:
            raise UsageError(f"--shard {text!r}: expected I/N with a 0-based index, e.g. 0/4")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or index >= count:
            raise UsageError(f"--shard {text}: the index must be in 0..N-1 (e.g. 0/{max(count, 1)})")
        return cls(index, count)


def _size(file: AudioFile) -> int:
    """A file's bytes; a segment's milliseconds (its recording's bytes say nothing of its own share)."""
    if file.problem:
        return 0
    if file.segment is not None:
        return round(1000 * (file.segment[1] - file.segment[0]))
    try:
        return os.stat(file.path).st_size
    except OSError:
        return 0  # unreadable files fail later, in whichever part they land


def assign(sizes: Sequence[int], count: int) -> list[int]:
    """The part of each item: largest first to the lightest part (ties by position, then part index)."""
    lightest = [(0, part) for part in range(count)]  # a heap of (bytes so far, part)
    parts = [0] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        load, part = heapq.heappop(lightest)
        parts[i] = part
        heapq.heappush(lightest, (load + sizes[i], part))
    return parts


@dataclass(frozen=True)
class Deal:
    """One shard's files (numbered by their place in the whole list) and the deal's fingerprint."""

    files: list[AudioFile]
    total: int  # distinct names in the whole list: the parts of a split add up to it
    fingerprint: str  # sha256 of every name and the size it was dealt by: equal in every job of one split


def select(files: Sequence[AudioFile], shard: Shard) -> Deal:
    """This shard's files, in the list's order. The deal runs over the list sorted by name and
    de-duplicated, so it does not depend on the order the list was given in; each file keeps its
    position in the given list, which is the order `merge` puts the rows in.

    A file that changes size between the jobs of an array (a copy still arriving) can move to another
    part and fall into none; the fingerprint covers the sizes the deal used, so `merge` refuses parts
    that were not dealt alike instead of silently missing files."""
    first: dict[str, AudioFile] = {}
    for file in numbered(files):
        first.setdefault(file.name, file)
    unique = sorted(first.values(), key=lambda f: f.name)
    sizes = [_size(f) for f in unique]
    parts = assign(sizes, shard.count)
    digest = hashlib.sha256(f"{shard.count}\n".encode())
    for file, size in zip(unique, sizes):
        digest.update(file.name.encode("utf-8", "surrogateescape") + b"\0" + str(size).encode() + b"\n")
    mine = sorted((f for f, part in zip(unique, parts) if part == shard.index), key=lambda f: f.index)
    return Deal(mine, len(unique), digest.hexdigest())

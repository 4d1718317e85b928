"""What every segment-list reader shares: times, rows, rejected rows, unique names, lines.

A row that cannot be a segment becomes an AudioFile with a `problem` (extract records it under
/failed with its line number); only a list that holds no segment at all is refused (W2VEmbedError).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..discover import AudioFile
from ..errors import W2VEmbedError

# Decimal seconds as Kaldi, RTTM and spreadsheets write them. Python's float() also takes "1_0" (10),
# "inf", "nan" and unicode digits: none of those is a time someone meant.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Later than this is no time in a recording (31 years); it also keeps every frame number an int.
MAX_SECONDS = 1e9


def lines(text: str) -> list[str]:
    """Lines split at \\n only (a trailing \\r dropped): str.splitlines() also splits at \\x1c, \\x85,
    \\u2028 and others, which are legal in a path or a name."""
    text = text.removeprefix("\ufeff")  # the byte-order mark spreadsheet programs put first
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return [p.removesuffix("\r") for p in parts]


def seconds(text: str) -> float | None:
    """A time field as a number, or None when it is not a plain decimal number."""
    text = text.strip()
    return float(text) if _NUMBER.fullmatch(text) else None


def segment(path: str, start: str, end: str, name: str, where: str) -> AudioFile:
    """A row of `path start end [name]` (times as written) → the segment, or a rejected row saying why."""
    a, b = seconds(start), seconds(end)
    if a is None or b is None:
        return rejected(path, name or f"{path}:{start}-{end}", f"{where}: start and end must be seconds, got {start!r}, {end!r}")
    return timed(path, a, b, name or default_name(path, a, b), where)


def timed(path: str, start: float, end: float, name: str, where: str) -> AudioFile:
    """A segment from times already numbers (RTTM onset + duration, a lhotse cut's start + duration)."""
    if not 0 <= start < end:  # NaN fails too
        return rejected(path, name, f"{where}: expected 0 <= start < end, got {start:.15g} to {end:.15g}")
    if end > MAX_SECONDS:  # inf too
        return rejected(path, name, f"{where}: {end:.15g} s is no time in a recording (at most {MAX_SECONDS:g} s)")
    if not path:
        return rejected(path, name, f"{where}: no path")
    return AudioFile(Path(path), name, segment=(start, end))


def _seconds(value: float) -> str:
    """A time in a default name, to the microsecond: `:g` made 10000.01 and 10000.02 s one name."""
    return f"{value:.6f}".rstrip("0").rstrip(".") if abs(value) <= MAX_SECONDS else repr(value)


def default_name(path: str, start: float, end: float, suffix: str = "") -> str:
    return f"{path}:{_seconds(start)}-{_seconds(end)}{suffix}"


def rejected(path: str, name: str, reason: str) -> AudioFile:
    return AudioFile(Path(path or "."), name, problem=reason)


def unique(rows: list[tuple[AudioFile, str]], where: str) -> list[AudioFile]:
    """One name, one output row: a later row under a name already used fails, named by its line, instead
    of being taken for a retried delivery of the same segment and dropped without a word. A list
    without a single row is refused: an empty output and exit 0 would pass for success in a pipeline."""
    if not rows:
        raise W2VEmbedError(f"--segments {where}: no segments in it")
    first: dict[str, str] = {}
    out = []
    for file, at in rows:
        if file.name in first:
            reason = f"{at}: the name {file.name} is already used by {first[file.name]}; give each row an id of its own"
            out.append(rejected(os.fspath(file.path), f"{file.name} ({at})", reason))
        else:
            first[file.name] = at
            out.append(file)
    return out

"""Segment lists (`extract --segments FILE`): parts of recordings to embed as rows of their own.

One reader per format (docs/segments.md): a TSV or CSV of `path, start, end[, id]` (table.py), a
Kaldi data folder (kaldi.py), an RTTM file of speaker turns over the audio inputs (rttm.py), a lhotse
CutSet manifest (cuts.py). Each segment is named by its id (default `path:start-end`; RTTM:
`uri:start-end:speaker`). Only segments are read, never the recording whole: segments of one
recording that lie close together (`close_groups`) are decoded in one pass over the span they
cover, the others each by a seek of their own. A row that cannot be a segment becomes a failure
with its line number; the others go on. A list without a single segment is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..discover import AudioFile
from ..errors import UsageError
from .cuts import is_cuts, read_cuts
from .kaldi import read_kaldi
from .rttm import parse_rttm
from .table import parse_table

__all__ = ["close_groups", "is_rttm", "parse_rttm", "parse_table", "read_segments"]

# Reading through a gap up to this long costs about what a seek (and, with ffmpeg, a process) does.
MAX_GAP_SECONDS = 10.0
# Audio one group hands on at once (16 kHz float32: 19 MB), however many segments overlap in it.
MAX_GROUP_SECONDS = 300.0


def is_rttm(path: str | Path) -> bool:
    """An RTTM file names recordings, not files: it needs the audio as inputs (see parse_rttm)."""
    return Path(path).suffix.lower() == ".rttm"


def read_segments(path: str | Path, audio: Sequence[AudioFile] = ()) -> list[AudioFile]:
    """The segments a file (TSV/CSV, lhotse cuts, or RTTM over the `audio` inputs) or a Kaldi data
    folder lists; a row that is not a usable segment comes as an AudioFile with its `problem`, which
    extract records under /failed."""
    path = Path(path)
    if bool(audio) != is_rttm(path):
        raise UsageError(
            f"--segments {path}: an RTTM file names recordings: give their audio files or folders as inputs"
            if is_rttm(path)
            else f"--segments {path} lists the audio itself: no audio inputs go with it (only an .rttm file needs them)"
        )
    if path.is_dir():
        return read_kaldi(path)
    if is_cuts(path):
        return read_cuts(path)
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise UsageError(f"--segments {path}: {exc.strerror or exc}") from exc
    return parse_rttm(text, audio, str(path)) if audio else parse_table(text, str(path))


def close_groups(
    files: Sequence[AudioFile], max_gap: float = MAX_GAP_SECONDS, max_seconds: float = MAX_GROUP_SECONDS
) -> list[list[int]]:
    """Indices of `files` to decode together: segments of one recording in time order, each group's
    next segment starting at most `max_gap` s after the audio read so far ends, and holding at most
    `max_seconds` of segment audio. Whole files and rejected rows are groups of their own.

    Groups come in the order of their first row, so a list sorted by recording and time (diarization
    output, Kaldi `segments`) keeps its order; rows of other lists come grouped by recording.
    """
    groups: list[list[int]] = []
    by_path: dict[Path, list[int]] = {}
    for index, file in enumerate(files):
        if file.segment is None or file.problem:
            groups.append([index])
        else:
            by_path.setdefault(file.path, []).append(index)
    for rows in by_path.values():
        rows.sort(key=lambda i: (files[i].segment, i))
        group: list[int] = []
        reach = seconds = 0.0
        for index in rows:
            start, end = files[index].segment  # type: ignore[misc]
            if group and (start - reach > max_gap or seconds + end - start > max_seconds):
                groups.append(group)
                group, reach, seconds = [], 0.0, 0.0
            group.append(index)
            reach, seconds = max(reach, end), seconds + end - start
        groups.append(group)
    groups.sort(key=min)
    return groups

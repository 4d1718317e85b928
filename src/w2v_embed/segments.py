"""Segment lists (`extract --segments FILE`): parts of recordings to embed as rows of their own.

Rows of `path, start, end[, id]` in seconds, as a TSV or CSV file with a header (the delimiter is
the header's: a tab or a comma; columns by name, in any order), a Kaldi data folder's `segments`
(`utt rec start end`) with its `wav.scp` (`rec path`, plain paths only), or an RTTM file of speaker
turns (pyannote, dscore), whose recordings are matched to the audio inputs by name. Each segment
is named by its id (default `path:start-end`; RTTM: `uri:start-end:speaker`). Only segments are
read, never the recording whole: segments of one recording that lie close together
(`close_groups`) are decoded in one pass over the span they cover, the others each by a seek of
their own. A row that cannot be a segment
becomes a failure with its row number; the others go on.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

from .discover import AudioFile
from .errors import UsageError

COLUMNS = ("path", "start", "end")
# Reading through a gap up to this long costs about what a seek (and, with ffmpeg, a process) does.
MAX_GAP_SECONDS = 10.0
# Audio one group hands on at once (16 kHz float32: 19 MB), however many segments overlap in it.
MAX_GROUP_SECONDS = 300.0


def is_rttm(path: str | Path) -> bool:
    """An RTTM file names recordings, not files: it needs the audio as inputs (see parse_rttm)."""
    return Path(path).suffix.lower() == ".rttm"


def read_segments(path: str | Path, audio: Sequence[AudioFile] = ()) -> list[AudioFile]:
    """The segments a file (TSV/CSV, or RTTM over the `audio` inputs) or a Kaldi data folder lists; a
    row that is not a usable segment comes as an AudioFile with its `problem`, which extract records
    under /failed."""
    path = Path(path)
    if bool(audio) != is_rttm(path):
        raise UsageError(
            f"--segments {path}: an RTTM file names recordings: give their audio files or folders as inputs"
            if is_rttm(path)
            else f"--segments {path} lists the audio itself: no audio inputs go with it (only an .rttm file needs them)"
        )
    try:
        if path.is_dir():
            return _kaldi(path)
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise UsageError(f"--segments {path}: {exc.strerror or exc}") from exc
    return parse_rttm(text, audio, str(path)) if audio else parse_table(text, str(path))


def parse_table(text: str, where: str = "segments") -> list[AudioFile]:
    """TSV or CSV with a header naming at least path, start and end (and optionally id)."""
    text = text.removeprefix("\ufeff")  # the byte-order mark spreadsheet programs put before a CSV's header
    lines = text.splitlines()
    if not lines:
        raise UsageError(f"--segments {where}: empty; expected a header line such as path<TAB>start<TAB>end")
    delimiter = "\t" if "\t" in lines[0] else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise UsageError(f"--segments {where}: the header lacks {', '.join(missing)} (it has {', '.join(header)})")
    reader.fieldnames = header
    rows = []
    for number, row in enumerate(reader, start=2):  # line numbers as an editor shows them
        values = {k: (v or "").strip() for k, v in row.items() if k}
        at = f"{where} line {number}"
        rows.append((_segment(values["path"], values["start"], values["end"], values.get("id", ""), at), at))
    return _unique(rows)


def _segment(path: str, start: str, end: str, name: str, where: str) -> AudioFile:
    try:
        a, b = float(start), float(end)
    except ValueError:
        return _rejected(path, name or f"{path}:{start}-{end}", f"{where}: start and end must be seconds, got {start!r}, {end!r}")
    name = name or f"{path}:{_seconds(a)}-{_seconds(b)}"
    if not (math.isfinite(a) and math.isfinite(b)) or a < 0 or b <= a:
        return _rejected(path, name, f"{where}: expected 0 <= start < end, got {start} to {end}")
    if not path:
        return _rejected(path, name, f"{where}: no path")
    return AudioFile(Path(path), name, segment=(a, b))


def _seconds(value: float) -> str:
    """A time in a default name, to the microsecond: `:g` made 10000.01 and 10000.02 s one name."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _rejected(path: str, name: str, reason: str) -> AudioFile:
    return AudioFile(Path(path or "."), name, problem=reason)


def _kaldi(folder: Path) -> list[AudioFile]:
    """A Kaldi data folder: `segments` (utt rec start end) and `wav.scp` (rec path; no pipes)."""
    recordings = {}
    for number, line in enumerate((folder / "wav.scp").read_text().splitlines(), start=1):
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            recordings[parts[0]] = parts[1].strip()
    rows = []
    for number, line in enumerate((folder / "segments").read_text().splitlines(), start=1):
        parts = line.split()
        where = f"{folder / 'segments'} line {number}"
        if not parts:
            continue
        if len(parts) != 4:
            rows.append((_rejected("", parts[0], f"{where}: expected 'utterance recording start end'"), where))
        elif parts[1] not in recordings or recordings[parts[1]].endswith("|"):
            rows.append((_rejected("", parts[0], f"{where}: recording {parts[1]} is not a plain path in wav.scp"), where))
        else:
            rows.append((_segment(recordings[parts[1]], parts[2], parts[3], parts[0], where), where))
    return _unique(rows)


def parse_rttm(text: str, audio: Sequence[AudioFile], where: str = "rttm") -> list[AudioFile]:
    """SPEAKER lines (`SPEAKER uri channel onset duration <NA> <NA> speaker <NA> <NA>`) as segments of
    the audio input named `uri`: the input whose name without its extension is `uri` ("corpus/a" or
    "a" for "corpus/a.wav"; pyannote's default uri is the file's stem). Other line types are skipped;
    a row whose uri matches no input, or several, fails with its line number."""
    recordings: dict[str, set[AudioFile]] = {}
    for file in audio:
        if not file.problem:
            stem = os.path.splitext(file.name)[0]
            for key in (stem, os.path.basename(stem)):
                recordings.setdefault(key, set()).add(file)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts, at = line.split(), f"{where} line {number}"
        if parts and parts[0] == "SPEAKER":
            rows.append((_rttm_row(parts, at, recordings), at))
    return _unique(rows)


def _rttm_row(parts: list[str], at: str, recordings: dict[str, set[AudioFile]]) -> AudioFile:
    if len(parts) < 8:
        return _rejected("", at, f"{at}: expected SPEAKER uri channel onset duration <NA> <NA> speaker")
    uri, onset, duration, speaker = parts[1], parts[3], parts[4], parts[7]
    try:
        start, end = float(onset), float(onset) + float(duration)
    except ValueError:
        return _rejected("", f"{uri}:{onset}+{duration}:{speaker}", f"{at}: onset and duration must be seconds")
    name = f"{uri}:{_seconds(start)}-{_seconds(end)}:{speaker}"
    matches = sorted(recordings.get(uri, ()), key=lambda f: f.name)
    if len(matches) != 1:
        found = f"{len(matches)} inputs ({', '.join(f.name for f in matches[:3])})" if matches else "no input"
        return _rejected("", name, f"{at}: recording {uri} matches {found}; inputs are matched by name without extension")
    return _segment(os.fspath(matches[0].path), repr(start), repr(end), name, at)


def _unique(rows: list[tuple[AudioFile, str]]) -> list[AudioFile]:
    """One name, one output row: a later row under a name already used fails, named by its line, instead
    of being taken for a retried delivery of the same segment and dropped without a word."""
    first: dict[str, str] = {}
    out = []
    for file, where in rows:
        if file.name in first:
            reason = f"{where}: the name {file.name} is already used by {first[file.name]}; give each row an id of its own"
            out.append(_rejected(os.fspath(file.path), f"{file.name} ({where})", reason))
        else:
            first[file.name] = where
            out.append(file)
    return out


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

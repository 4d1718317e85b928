"""A Kaldi data folder: `wav.scp` (`recording path`) and, optionally, `segments` (`utt rec start end`).

Read as Kaldi does: fields split at spaces and tabs, a wav.scp path is the rest of its line trimmed;
no comments (Kaldi has none: a `#` line is a bad row). Any bytes survive (surrogateescape), so ids
and paths are kept byte for byte. Only plain paths are read: a pipe (`sox … |`) fails its rows.
Without `segments`, each recording is embedded whole under its id, as a segment from 0 to the
length its header states, so the output keeps its source path like any segment row.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import soundfile as sf

from ..discover import AudioFile
from ..errors import UsageError, one_line
from .rows import lines, rejected, segment, timed, unique

_FIELDS = re.compile(r"[ \t\r]+")  # Kaldi's SplitStringToVector(line, " \t\r"): not unicode whitespace


def read_kaldi(folder: Path) -> list[AudioFile]:
    scp = folder / "wav.scp"
    if not scp.is_file():
        raise UsageError(f"--segments {folder}: a Kaldi data folder needs {scp} (recording path), and it has none")
    recordings: dict[str, tuple[str, str]] = {}  # id -> (path, where)
    for number, line in enumerate(lines(_read(scp)), start=1):
        parts = _FIELDS.split(line.strip(" \t\r"), maxsplit=1)
        if len(parts) == 2:
            recordings.setdefault(parts[0], (parts[1], f"{scp} line {number}"))
    if not (folder / "segments").exists():
        return unique([(_whole(rec, path, at), at) for rec, (path, at) in recordings.items()], str(scp))
    where = folder / "segments"
    rows = []
    for number, line in enumerate(lines(_read(where)), start=1):
        parts, at = _FIELDS.split(line.strip(" \t\r")), f"{where} line {number}"
        if parts == [""]:
            continue
        path = recordings.get(parts[1], ("", ""))[0] if len(parts) > 1 else ""
        if len(parts) != 4:
            rows.append((rejected("", parts[0], f"{at}: expected 'utterance recording start end'"), at))
        elif parts[1] not in recordings:
            rows.append((rejected("", parts[0], f"{at}: recording {parts[1]} is not in wav.scp"), at))
        elif not path or path.endswith("|"):
            rows.append((rejected("", parts[0], f"{at}: recording {parts[1]} is not a plain path in wav.scp"), at))
        else:
            rows.append((segment(path, parts[2], parts[3], parts[0], at), at))
    return unique(rows, str(where))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise UsageError(f"--segments {path}: {exc.strerror or exc}") from exc


def _whole(rec: str, path: str, at: str) -> AudioFile:
    """A recording whole, as the segment its header's length spans (read here: libsndfile formats)."""
    if path.endswith("|"):
        return rejected(path, rec, f"{at}: recording {rec} is not a plain path (a pipe)")
    if not os.path.isfile(path):
        return rejected(path, rec, f"{at}: {path}: no such file")
    try:
        info = sf.info(path)
    except Exception as exc:  # noqa: BLE001  # libsndfile raises several kinds; each is this row's failure
        return rejected(path, rec, f"{at}: cannot read the length of {path}: {one_line(str(exc))}")
    if info.frames <= 0 or info.samplerate <= 0:
        return rejected(path, rec, f"{at}: {path} states no length in its header")
    return timed(path, 0.0, info.frames / info.samplerate, rec, at)

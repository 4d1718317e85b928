"""RTTM speaker turns (pyannote, dscore) as segments of the audio inputs they name."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..discover import AudioFile
from ..errors import W2VEmbedError
from .rows import default_name, lines, rejected, seconds, timed, unique


def parse_rttm(text: str, audio: Sequence[AudioFile], where: str = "rttm") -> list[AudioFile]:
    """SPEAKER lines (`SPEAKER uri channel onset duration <NA> <NA> speaker <NA> <NA>`) as segments of
    the audio input named `uri`: the input whose name without its extension is `uri` ("corpus/a" or
    "a" for "corpus/a.wav"; pyannote's default uri is the file's stem). Other line types are skipped;
    a row whose uri matches no input, or several, fails with its line number. A file without a single
    SPEAKER line is refused (it is not the diarization a run was meant to embed)."""
    recordings: dict[str, set[AudioFile]] = {}
    for file in audio:
        if not file.problem:
            stem = os.path.splitext(file.name)[0]
            for key in (stem, os.path.basename(stem)):
                recordings.setdefault(key, set()).add(file)
    rows = []
    for number, line in enumerate(lines(text), start=1):
        parts, at = line.split(), f"{where} line {number}"
        if parts and parts[0] == "SPEAKER":
            rows.append((_rttm_row(parts, at, recordings), at))
    if not rows:
        raise W2VEmbedError(f"--segments {where}: no SPEAKER lines in it")
    return unique(rows, where)


def _rttm_row(parts: list[str], at: str, recordings: dict[str, set[AudioFile]]) -> AudioFile:
    if len(parts) < 8:
        return rejected("", at, f"{at}: expected SPEAKER uri channel onset duration <NA> <NA> speaker")
    uri, onset, duration, speaker = parts[1], seconds(parts[3]), seconds(parts[4]), parts[7]
    if onset is None or duration is None:
        return rejected("", f"{uri}:{parts[3]}+{parts[4]}:{speaker}", f"{at}: onset and duration must be seconds")
    start, end = onset, onset + duration
    name = default_name(uri, start, end, f":{speaker}")
    matches = sorted(recordings.get(uri, ()), key=lambda f: f.name)
    if len(matches) != 1:
        found = f"{len(matches)} inputs ({', '.join(f.name for f in matches[:3])})" if matches else "no input"
        return rejected("", name, f"{at}: recording {uri} matches {found}; inputs are matched by name without extension")
    return timed(os.fspath(matches[0].path), start, end, name, at)

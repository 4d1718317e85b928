"""A lhotse CutSet manifest (`cuts.jsonl[.gz]`, or a `.json[.gz]` list) as segments, read without lhotse.

One row per MonoCut, named by its id, from `start` to `start + duration` of the file its recording's
source holds for the cut's channel. A source path is taken as written (lhotse resolves a relative one
against the working folder, and so does w2v-embed). A cut that is not that — a MultiCut (several
channels), a MixedCut or PaddingCut, a recording whose source is a URL, a command or memory, one file
holding several channels (one channel per run, `--channel`), or transforms other than a resampling
to the model's 16 kHz (speed, volume, reverb would change the audio) — fails its row with the reason.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from ..discover import AudioFile
from ..errors import UsageError
from .rows import MAX_SECONDS, rejected, timed, unique

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
_RATE = 16000  # the models' rate: a Resample transform to it changes nothing w2v-embed would not do


def is_cuts(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def read_cuts(path: Path) -> list[AudioFile]:
    try:
        with (gzip.open if path.name.lower().endswith(".gz") else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise UsageError(f"--segments {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    text = data.decode("utf-8", errors="surrogateescape")
    if path.name.lower().endswith((".json", ".json.gz")):
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"--segments {path}: not JSON ({exc})") from exc
        if not isinstance(items, list):
            raise UsageError(f"--segments {path}: expected a JSON list of cuts")
        records = [(f"{path} item {i}", item) for i, item in enumerate(items, start=1)]
    else:
        records = []
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    records.append((f"{path} line {number}", json.loads(line)))
                except ValueError as exc:
                    records.append((f"{path} line {number}", f"not JSON ({exc})"))
    return unique([(_cut(item, at), at) for at, item in records], str(path))


def _cut(cut: Any, at: str) -> AudioFile:
    if not isinstance(cut, dict):
        return rejected("", at, f"{at}: {cut if isinstance(cut, str) else 'expected a cut (a JSON object)'}")
    name = cut.get("id")
    if not isinstance(name, str) or not name:
        return rejected("", at, f"{at}: the cut has no id")
    kind = cut.get("type", "MonoCut")
    if kind != "MonoCut":
        return rejected("", name, f"{at}: cut {name} is a {kind}; only MonoCuts (one channel of one recording) are read")
    recording, channel = cut.get("recording"), cut.get("channel", 0)
    if not isinstance(recording, dict):
        return rejected("", name, f"{at}: cut {name} has no recording (a cut of features only)")
    path, reason = _source(recording, channel)
    if reason:
        return rejected(path, name, f"{at}: cut {name}: {reason}")
    start, duration = cut.get("start"), cut.get("duration")
    if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in (start, duration)):
        return rejected(path, name, f"{at}: cut {name}: start and duration must be seconds")
    if not -MAX_SECONDS <= duration <= MAX_SECONDS:  # type: ignore[operator]  # keep start + duration finite
        return rejected(path, name, f"{at}: cut {name}: duration {duration!r} is not a length of audio")
    return timed(path, float(start), float(start) + float(duration), name, at)  # type: ignore[arg-type]


def _source(recording: dict[str, Any], channel: Any) -> tuple[str, str]:
    """The file that holds `channel` alone, or why there is none: (path, '') or (path or '', reason)."""
    rec = recording.get("id", "?")
    other = [t.get("name", "?") if isinstance(t, dict) else str(t) for t in _list(recording.get("transforms"))
             if _changes_audio(t)]
    if other:
        return "", f"recording {rec} has transforms ({', '.join(other)}) that w2v-embed does not apply"
    sources = [s for s in _list(recording.get("sources")) if isinstance(s, dict)]
    if not isinstance(channel, int) or isinstance(channel, bool):
        return "", f"channel {channel!r} is not one channel number"
    holding = [s for s in sources if channel in _list(s.get("channels"))]
    if not holding:
        return "", f"no source of recording {rec} holds channel {channel}"
    source = holding[0]
    path = source.get("source") if isinstance(source.get("source"), str) else ""
    if source.get("type") != "file":
        return "", f"recording {rec}'s source is of type {source.get('type')!r}; only 'file' sources are read"
    if len(source["channels"]) != 1:
        return path, (f"channel {channel} of {path}, a file of {len(source['channels'])} channels: a run reads one "
                      "channel (--channel) or their mean, not a channel per cut")
    return path, "" if path else f"recording {rec}'s source names no file"


def _changes_audio(transform: Any) -> bool:
    """Every transform but a resampling to the model's rate, which decoding does anyway."""
    return not (isinstance(transform, dict) and transform.get("name") == "Resample"
                and (transform.get("kwargs") or {}).get("target_sampling_rate") == _RATE)


def _list(value: Any) -> list[Any]:
    """A manifest's list field, or none: a hand-edited manifest may hold anything there."""
    return value if isinstance(value, list) else []

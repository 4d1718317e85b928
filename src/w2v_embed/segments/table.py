"""TSV and CSV segment lists: a header naming path, start and end (and optionally id), in any order.

The delimiter is the header's: a tab makes a TSV, else a comma a CSV. Paths and ids are taken as
written, byte for byte (a list is read with surrogateescape, so any bytes survive):
- TSV: fields are split at tabs and nothing else; no quoting, no stripping (`"x".wav` and ` x.wav`
  are those files). A path cannot hold a tab or a newline.
- CSV: RFC 4180 quoting (`"a,b.wav"`, `"say ""hi"".wav"`, strict: `"x".wav` fails its row); fields
  are not stripped either, so `a.wav, 0, 1` has the path `a.wav`, but `0, a.wav, 1` has ` a.wav`.
Header names are matched trimmed and case-insensitively; times may have spaces around them.
A line whose first character is `#` is a comment (a path starting with `#` is written `./#…`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from ..discover import AudioFile
from ..errors import UsageError, W2VEmbedError
from .rows import lines, rejected, segment, unique

COLUMNS = ("path", "start", "end")


def parse_table(text: str, where: str = "segments") -> list[AudioFile]:
    """TSV or CSV with a header naming at least path, start and end (and optionally id)."""
    kept = ["" if line.startswith("#") else line for line in lines(text)]  # a comment is a blank line
    first = next((line for line in kept if line), "")
    records = _tsv(kept) if "\t" in first else _csv(kept)
    number, header = next(((n, r) for n, r in records if r != [""]), (0, None))
    if header is None:
        raise W2VEmbedError(f"--segments {where}: empty; expected a header line such as path<TAB>start<TAB>end")
    if isinstance(header, str):
        raise UsageError(f"--segments {where} line {number}: the header is {header}")
    header = [h.strip().lower() for h in header]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise UsageError(f"--segments {where}: the header lacks {', '.join(missing)} (it has {', '.join(header)})")
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:
        raise UsageError(f"--segments {where}: the header names {', '.join(twice)} more than once")
    rows = []
    for number, record in records:
        at = f"{where} line {number}"  # line numbers as an editor shows them
        if isinstance(record, str):
            rows.append((rejected("", at, f"{at}: {record}"), at))
        elif record != [""]:
            rows.append((_row(header, record, at), at))
    return unique(rows, where)


def _row(header: list[str], record: list[str], at: str) -> AudioFile:
    if len(record) > len(header):
        return rejected("", at, f"{at}: {len(record)} fields, the header has {len(header)}"
                        " (in a CSV, a path with a comma goes in double quotes)")
    values = dict(zip(header, record + [""] * (len(header) - len(record))))
    return segment(values["path"], values["start"], values["end"], values.get("id", ""), at)


def _tsv(kept: list[str]) -> Iterator[tuple[int, list[str]]]:
    for number, line in enumerate(kept, start=1):
        yield number, line.split("\t")


def _csv(kept: list[str]) -> Iterator[tuple[int, list[str] | str]]:
    """Records with the line each starts on (a quoted field may hold newlines); a malformed one is its
    reason, and the reader goes on at the next line."""
    reader = csv.reader(io.StringIO("\n".join(kept) + "\n", newline=""), strict=True)
    while True:
        number = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield number, f"not a CSV row: {exc}"
            continue
        yield number, record or [""]

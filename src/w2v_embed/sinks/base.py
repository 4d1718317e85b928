"""What the format writers share: rows checked to arrive in input order, files written under temp
names in the destination and renamed into place only when the whole output is written (an
interrupted conversion leaves no half files behind), and the summary they close with."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError, W2VEmbedError
from ..paths import check_output
from ..store.sink import Row


@dataclass
class SinkSummary:
    rows: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # what the writer produced, in its final names


class StagedSink:
    """Base of the streaming writers: subclasses write each row in `_write` to files opened with
    `staged(name)` and flush them in `_finish`; `close` then renames them all into place.

    Rows must come in input order (their `index` increasing): these formats are streams that cannot
    be reordered afterwards without a second pass, so a row out of order is an error, never a silent
    misalignment with the manifest.
    """

    FORMAT = ""  # the format's name, for errors

    def __init__(self, dest: Path, files: Sequence[str], replace: bool = False) -> None:
        """`files`: the names this writer will put in `dest`, checked here before anything is written: an
        existing one is replaced only with `replace`, and never a folder, device or pipe."""
        self.dest = Path(dest)
        if self.dest.exists() and not self.dest.is_dir():
            raise UsageError(f"{self.dest} is a file, not a folder: {self.FORMAT} output is a folder of files; give a folder name")
        for name in files:
            check_output(self.dest / name, replace, example=name)
            _remove_stale_temps(self.dest / name)
        self._made = [f for f in (self.dest, *self.dest.parents) if not f.exists()]  # abort removes them, when empty
        self.done: set[str] = set()
        self.summary = SinkSummary()
        self._staged: dict[Path, Path] = {}  # final name -> temp name
        self._last_index = -1

    def staged(self, name: str | Path) -> Path:
        """A temp path beside `name` (in the same folder, so the final rename is atomic)."""
        final = self.dest / name if not Path(name).is_absolute() else Path(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.with_name(f".{final.name}.partial-{os.getpid()}")
        self._staged[final] = temp
        return temp

    def add(self, row: Row) -> None:
        if row.index <= self._last_index:
            raise W2VEmbedError(
                f"row {row.index} ({row.name}) arrived after row {self._last_index}: this writer needs rows in input order"
            )
        self._last_index = row.index
        for text in (row.name, row.segment[0] if row.segment else ""):
            if not _is_utf8(text):
                raise W2VEmbedError(f"{text}: not UTF-8 (extract keeps names byte for byte), and {self.FORMAT} holds names "
                                    "as UTF-8 text; rename the file and extract it again")
        self._write(row)
        self.summary.rows += 1

    def add_failure(self, index: int, name: str, error: str) -> None:
        self.summary.failed.append((name, error))

    def close(self) -> SinkSummary:
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        for final, temp in self._staged.items():
            os.replace(temp, final)
        self.summary.files = list(self._staged)
        self._staged = {}
        return self.summary

    def abort(self) -> None:
        self._discard()
        for temp in self._staged.values():
            temp.unlink(missing_ok=True)
        self._staged = {}
        for folder in self._made:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (or gone): it holds what others put there

    def _write(self, row: Row) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Write what is left and close the files (they are renamed after)."""

    def _discard(self) -> None:
        """Close the files without finishing them (they are deleted after)."""


def _remove_stale_temps(final: Path) -> None:
    """Temp files of `final` left by a conversion that was killed (kill -9 skips abort), i.e. of a process
    that is gone; a running conversion's are left alone."""
    pattern = re.compile(re.escape(f".{final.name}.partial-") + r"(\d+)(\..*)?")  # kaldiio adds .scp
    for temp in final.parent.glob(f".{final.name}.partial-*"):
        found = pattern.fullmatch(temp.name)
        if found and not _running(int(found.group(1))):
            temp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # someone else's: alive
    return True


def _is_utf8(text: str) -> bool:
    """False for a name holding bytes that are not UTF-8 (Python's surrogate escapes, e.g. Latin-1 'caf\\xe9')."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


"""What a path is, and where an output may be written. Every writer (extract's sinks, merge, convert,
export) writes under a temporary name and renames it over OUT, so OUT must be a plain file or nothing:
a rename over a device, pipe or socket would replace it with a file (`-o /dev/null --overwrite` run
as root broke /dev/null)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import UsageError


def special_kind(mode: int) -> str:
    """What a path that is not a regular file is, in words."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))  # fmt: skip
    return next((words for test, words in kinds if test(mode)), "not a file")


def check_output(path: Path, replace: bool, example: str, hint: str = "pass --overwrite to replace it") -> None:
    """Refuse an OUT that exists and is not a regular file, whatever `replace` says (a folder: with
    `example`, a file name in it), and an existing file unless `replace` (`hint` says how to ask)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # nothing there (a broken symlink is replaced like a file)
    if stat.S_ISDIR(mode):
        raise UsageError(f"{path} is a folder; give a file name, e.g. {Path(path) / example}")
    if not stat.S_ISREG(mode):
        raise UsageError(f"{path} is {special_kind(mode)}, not a file: an output is written beside it and renamed "
                         "over it; give a file name")
    if not replace:
        raise UsageError(f"{path} exists; {hint}")

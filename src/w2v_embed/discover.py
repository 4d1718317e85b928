"""Which files to process, and the name each one is stored under in the output's /paths.

Names are built from the inputs as the user typed them, so the same command gives the same keys on
any machine (no absolute paths, no resolved symlinks) and a resumed run finds its files. Only "."
parts and repeated or trailing slashes are dropped ("./corpus/" and "corpus" name files alike);
".." stays, since resolving it by text is wrong across symlinks.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


DEFAULT_EXTENSIONS: tuple[str, ...] = (
    "wav", "flac", "ogg", "oga", "opus", "mp3", "m4a", "aac", "mp4", "webm", "wma", "aiff", "aif", "au",
)  # fmt: skip


@dataclass(frozen=True)
class AudioFile:
    path: Path  # where to read it
    name: str  # the key stored in the output's /paths
    problem: str | None = None  # why it cannot be read, when discovery already knows (an unlistable folder)
    segment: tuple[float, float] | None = None  # only this part, in seconds (extract --segments)
    index: int = -1  # position in the whole input listing (rows are stored in this order); -1: not numbered yet


class Listing(list[AudioFile]):
    """The files to embed, and `repeats`: (name, name stored under) for each input dropped because it
    names a file listed before — said to the user, since a row per input is what a manifest expects."""

    def __init__(self, files: Iterable[AudioFile] = (), repeats: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(files)
        self.repeats = list(repeats)


def discover(
    inputs: Sequence[str],
    extensions: Collection[str] = DEFAULT_EXTENSIONS,
    recursive: bool = True,
    follow_symlinks: bool = False,
) -> Listing:
    """Expand files and folders into the files to embed, in a deterministic order.

    - A file input is taken as given, whatever its extension; its name is the string as typed.
      An input that does not exist is returned too, so the pipeline records it as failed.
    - A folder is walked in sorted order (recursively unless `recursive=False`), skipping hidden
      files and folders (names starting with '.') and keeping files whose extension is in
      `extensions` (case-insensitive, with or without the dot). A file's name is
      `os.path.join(folder as typed, path relative to the folder)`: input "corpus" gives
      "corpus/sub/b.flac", "./corpus/" too (see below), "/data/c" gives "/data/c/x.wav".
    - Symlinked files are included (broken ones too, for the pipeline to report), and so are
      named pipes, sockets and devices with an audio extension (decoding refuses them with a
      reason); symlinked folders are descended only with `follow_symlinks`, never into one of
      their own ancestors.
    - A folder that cannot be listed is returned as an entry with a `problem`, so the pipeline
      records it under /failed and the rest of the walk goes on.
    - Names lose "." parts and repeated or trailing slashes: "./corpus/a.wav" is "corpus/a.wav".
    - A file is returned once, under the first name it was found by: later duplicates of a name,
      and other names of the same existing file ("c/a.wav", "/data/c/a.wav", a symlink or hard link),
      are dropped, and listed in the result's `repeats`.
    """
    wanted = _normalize_extensions(extensions)
    seen: dict[str | tuple[int, int], str] = {}  # name or (device, inode) -> the name stored
    found = Listing()
    for raw in inputs:
        if not raw:
            continue
        candidates = (
            _walk(raw, wanted, recursive, follow_symlinks) if os.path.isdir(raw) else iter([AudioFile(Path(raw), raw)])
        )
        for file in candidates:
            file = dataclasses.replace(file, name=_clean_name(file.name))
            keys = {file.name, _identity(str(file.path))} - {None}
            first = next((seen[key] for key in keys if key in seen), None)
            if first is None:
                seen.update(dict.fromkeys(keys, file.name))
                found.append(file)
            else:
                found.repeats.append((file.name, first))
    return found


def numbered(files: Sequence[AudioFile]) -> list[AudioFile]:
    """Each file with its position in `files` as its index (files already numbered keep theirs): the
    order every output presents its rows in."""
    return [f if f.index >= 0 else dataclasses.replace(f, index=i) for i, f in enumerate(files)]


def _clean_name(name: str) -> str:
    """Drop "." parts and empty ones (repeated or trailing slashes); keep a leading "/" and every ".."."""
    parts = [part for part in name.split(os.sep) if part not in ("", ".")]
    return (os.sep if name.startswith(os.sep) else "") + os.sep.join(parts) or "."


def read_file_list(lines: Iterable[str]) -> list[str]:
    """Paths from a --files-from list (one a line): stripped, blank lines skipped, order kept."""
    return [stripped for line in lines if (stripped := line.strip())]


def _normalize_extensions(extensions: Collection[str]) -> frozenset[str]:
    return frozenset(e.strip().lstrip(".").lower() for e in extensions if e.strip().lstrip("."))


def _suffix(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""


def _walk(top: str, wanted: frozenset[str], recursive: bool, follow_symlinks: bool) -> Iterator[AudioFile]:
    """Depth-first over sorted entries; `ancestors` holds (device, inode) of the folders above."""

    def visit(folder: str, rel: str, ancestors: frozenset[tuple[int, int]]) -> Iterator[AudioFile]:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            name = os.path.join(top, rel) if rel else top
            yield AudioFile(Path(folder), name, f"cannot list folder {name}: {exc.strerror or exc}")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child_rel = os.path.join(rel, entry.name) if rel else entry.name
            if _is_dir(entry):
                if not recursive or (entry.is_symlink() and not follow_symlinks):
                    continue
                key = _identity(entry.path)
                if key is None or key in ancestors:
                    continue  # a symlink loop, or a folder gone since listing
                yield from visit(entry.path, child_rel, ancestors | {key})
            elif _suffix(entry.name) in wanted:
                yield AudioFile(Path(entry.path), os.path.join(top, child_rel))

    root = _identity(top)
    yield from visit(top, "", frozenset({root} if root else ()))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino

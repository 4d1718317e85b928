"""What downstream code calls: load() for outputs that fit in memory, open() for those that do not,
read_summary() for `info`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import W2VEmbedError
from ..layers import Layer, dataset_name, from_text
from .layout import TRUNCATED, RunInfo, check_rows, open_finished, read_failures, read_strings, stored_info


def load(path: str | Path, layer: Layer | None = None) -> tuple[list[str], np.ndarray] | dict[str, np.ndarray]:
    """Features in one line: pooled → (paths, array (files, dim)); frame-level or windowed →
    {path: (frames or windows, dim)}.

    `layer` is a number (transformers' hidden_states numbering) or "last" (last_hidden_state); None
    picks "last" when stored, else the deepest stored layer. Arrays keep the storage dtype.
    """
    with open_finished(path) as f:
        offsets = check_rows(f, stored_info(f))
        chosen = _choose(path, _stored_layers(f), layer)
        paths = read_strings(f["paths"])
        data = f[dataset_name(chosen)][()]
    if offsets is None:
        return paths, data
    return {p: data[offsets[i] : offsets[i + 1]] for i, p in enumerate(paths)}


def read_summary(path: str | Path) -> dict[str, Any]:
    """What `w2v-embed info` shows: the attributes, file count, audio duration and failures (plain types)."""
    with open_finished(path) as f:
        check_rows(f, stored_info(f))
        order = list(RunInfo("", "", (0,), "mean", 1).attrs())  # the writer's order, not h5py's alphabetical one
        keys = sorted(f.attrs, key=lambda k: order.index(k) if k in order else len(order))
        summary: dict[str, Any] = {key: _plain(f.attrs[key]) for key in keys}
        summary["files"] = int(f["paths"].shape[0])
        rate = summary.get("sample_rate") or 16000
        summary["audio_seconds"] = float(f["num_samples"][()].sum()) / rate
        if "offsets" in f:
            rows = "windows" if "window_start" in f else "frames"
            summary[rows] = int(f["offsets"][-1]) if f["offsets"].shape[0] else 0
        if TRUNCATED in f:
            summary["truncated"] = int((f[TRUNCATED][()] > 0).sum())
        summary["failed"] = read_failures(f)
    return summary


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value




def _stored_layers(f: Any) -> list[Layer]:
    return [from_text(k) for k in np.atleast_1d(f.attrs["layers"])]


def _choose(path: str | Path, layers: list[Layer], layer: Layer | None) -> Layer:
    try:
        chosen = layers[-1] if layer is None else from_text(layer)
    except ValueError:
        chosen = layer
    if chosen not in layers:
        raise W2VEmbedError(f"{path}: layer {chosen} is not stored; stored layers: {', '.join(map(str, layers))}")
    return chosen


class Output:
    """A finished output read on demand, for outputs that do not fit in memory: `w2v_embed.open(path)`.

    `out[i]` or `out["a.wav"]` is that row's {layer: array} — its pooled row, or its frames or windows —
    read from HDF5 when asked; iterating gives (path, features) in input order. `name in out`,
    `out.index(name)`, `out.num_samples` / `out.seconds` (per row) and `out.segment(key)` (a
    --segments row's source path, start and end) come from memory: only names, offsets and per-row
    numbers are held.

    Safe to hand to PyTorch DataLoader workers and other processes: it pickles as its path and the
    file's identity, and the names and the HDF5 file are read again in whichever process unpickles it
    (an HDF5 handle must not cross a fork). A file replaced since `open()` (an `--overwrite` run) would
    shift every row, so it is refused, here and in those copies.
    """

    def __init__(self, path: str | Path, layers: list[Layer] | None = None) -> None:
        self.path = Path(path)
        self._at = self.path.absolute()  # opened lazily, maybe after a chdir or in a worker started elsewhere
        self._wanted = layers
        self._file: Any = None
        self._pid = -1
        with open_finished(self.path) as f:
            self._identity = _identity(f)
            self._read_index(f)

    def _read_index(self, f: Any) -> None:
        info = stored_info(f)
        self.offsets = check_rows(f, info)
        self.attrs: dict[str, Any] = {k: _plain(v) for k, v in f.attrs.items()}
        stored = _stored_layers(f)
        self.layers = stored if self._wanted is None else [_choose(self.path, stored, k) for k in self._wanted]
        self.paths = read_strings(f["paths"])
        self.windowed = info.windowed
        self.frame_level = info.frame_level
        self.num_samples: np.ndarray = f["num_samples"][()]
        self.seconds: np.ndarray = self.num_samples / info.sample_rate
        self._segments = (read_strings(f["source_path"]), f["segment_start"][()], f["segment_end"][()]) if info.segments else None
        self._rows = {name: i for i, name in enumerate(self.paths)}

    def __len__(self) -> int:
        return len(self.paths)

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def index(self, name: str) -> int:
        """The row of a stored name (its place in input order)."""
        if name not in self._rows:
            raise KeyError(f"{name} is not stored in {self.path}")
        return self._rows[name]

    def __getitem__(self, key: int | str) -> dict[Layer, np.ndarray]:
        row = self._row(key)
        f = self._h5()
        if self.offsets is not None:
            start, stop = int(self.offsets[row]), int(self.offsets[row + 1])
            return {k: f[dataset_name(k)][start:stop] for k in self.layers}
        return {k: f[dataset_name(k)][row] for k in self.layers}

    def __iter__(self) -> Iterator[tuple[str, dict[Layer, np.ndarray]]]:
        for row, name in enumerate(self.paths):
            yield name, self[row]

    def segment(self, key: int | str) -> tuple[str, float, float] | None:
        """(source path, start, end in seconds) of a --segments row; None for whole files."""
        if self._segments is None:
            return None
        row = self._row(key)
        sources, starts, ends = self._segments
        return sources[row], float(starts[row]), float(ends[row])

    def timestamps(self, key: int | str) -> np.ndarray:
        """Seconds from the file's start: each frame's centre (frame-level), or each window's
        [start, end] as (windows, 2) (windowed)."""
        if self.offsets is None:
            raise W2VEmbedError(f"{self.path}: pooled output (one row per file) has no frame times")
        row = self._row(key)
        start, stop = int(self.offsets[row]), int(self.offsets[row + 1])
        if self.windowed:
            f = self._h5()
            return np.stack([f["window_start"][start:stop], f["window_end"][start:stop]], axis=1)
        return self.attrs["frame_center_offset"] + np.arange(stop - start) / self.attrs["frame_rate"]

    def _row(self, key: int | str) -> int:
        if isinstance(key, str):
            return self.index(key)
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
            raise TypeError(f"rows of {self.path} are chosen by number or name, not by {type(key).__name__} {key!r}")
        row = int(key) + (len(self) if int(key) < 0 else 0)
        if not 0 <= row < len(self):
            raise IndexError(f"row {key} of {len(self)} in {self.path}")
        return row

    def _h5(self) -> Any:
        if self._file is None or self._pid != os.getpid():
            f = open_finished(self._at)
            if _identity(f) != self._identity:
                f.close()
                raise _replaced(self.path)
            self._file, self._pid = f, os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_at": self._at, "_wanted": self._wanted, "_identity": self._identity}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _file=None, _pid=-1)
        with open_finished(self._at) as f:
            if _identity(f) != self._identity:
                raise _replaced(self.path)
            self._read_index(f)

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _identity(f: Any) -> tuple[Any, ...]:
    """Which file this is: its run id (new with every finished run or merge), else its inode and times."""
    if "run_id" in f.attrs:
        return ("run_id", _plain(f.attrs["run_id"]))
    st = os.stat(f.filename)
    return ("stat", st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _replaced(path: Path) -> W2VEmbedError:
    return W2VEmbedError(f"{path} was replaced since it was opened (another run wrote it); open it again")


def open(path: str | Path, layers: list[Layer] | None = None) -> Output:  # noqa: A001 (w2v_embed.open, like h5py's)
    """A finished output, read on demand (see Output); `layers` limits what `out[i]` reads."""
    return Output(path, layers)

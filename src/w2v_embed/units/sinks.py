"""Where units go: three writers behind the Sink seam (store/sink.py), and `load_units` to read them back.

- `-o train.km`: fairseq's label file (what simple_kmeans' dump_km_label writes and textlesslib reads):
  one line per input, space-separated units, in input order. A failed input gets no line (an empty
  line would read as an utterance without units): it is named on stderr and in `train.km.failed`
  (path TAB reason), and the run exits 1. With --dedup the durations go to `train.km.dur`, line by line.
- `-o -`: JSON Lines, one object per input in input order: {"path", "seconds", "units"[, "durations"]}.
- `-o units.h5`: all units in one int16/int32 dataset with per-input offsets, the frame rate and
  offset to place them in time, and failures under /failed (format "w2v-embed-units/1").

Rows arrive in completion order; each writer holds the early ones until the gap before them fills.
None of them resumes: a run writes a temporary file and renames it into place when it finishes, so an
interrupted run leaves no partial output (units are cheap to redo: no frames are stored).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import h5py
import numpy as np

from .. import __version__
from ..errors import UsageError, W2VEmbedError
from ..store.files import create_h5, fsync_dir, fsync_file, write_atomically, writing
from ..store.layout import RunInfo, Segment, encode_strings, read_strings
from ..store.sink import InOrder, Row
from .stage import Units, run_lengths

UNITS_FORMAT = "w2v-embed-units/1"
_STR = h5py.string_dtype()


def _check_new(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise UsageError(f"{path} exists; pass --overwrite to replace it")


class _UnitRows:
    """What the three writers share: units per row (run-length collapsed with dedup), in input order."""

    def __init__(self, units: Units, indices: Iterable[int]) -> None:
        self.units = units
        self.done: set[str] = set()
        self.failures: list[tuple[str, str]] = []
        self._order = InOrder(indices)

    def add(self, row: Row) -> None:
        values = np.asarray(row.features[self.units.layer])
        durations = None
        if self.units.dedup:
            values, durations = run_lengths(values)
        self.done.add(row.name)
        self._release(row.index, (row, values, durations))

    def add_failure(self, index: int, name: str, error: str) -> None:
        self.failures.append((name, error))
        self._release(index, None)

    def _release(self, index: int, item: tuple[Row, np.ndarray, np.ndarray | None] | None) -> None:
        for ready in self._order.put(index, item):
            if ready is not None:  # a failure holds its place in the order and writes nothing
                self._emit(*ready)

    def _emit(self, row: Row, values: np.ndarray, durations: np.ndarray | None) -> None:
        raise NotImplementedError

    def _check_complete(self) -> None:
        if not self._order.complete:
            raise W2VEmbedError("the run ended before every input was written; nothing was stored")

    def __enter__(self) -> _UnitRows:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def close(self) -> object:
        raise NotImplementedError

    def abort(self) -> None:
        """Nothing to keep."""


def _line(values: np.ndarray) -> str:
    return " ".join(map(str, values.tolist())) + "\n"


class KmWriter(_UnitRows):
    """fairseq's .km label file (see the module docstring), written to a temporary name, renamed at close."""

    def __init__(self, path: Path, units: Units, indices: Iterable[int], overwrite: bool = False) -> None:
        _check_new(path, overwrite)
        super().__init__(units, indices)
        self.path = path
        self.failed_path = path.with_name(path.name + ".failed")
        self.dur_path = path.with_name(path.name + ".dur")
        self._temps = [p.with_name(f".{p.name}.tmp-{os.getpid()}") for p in (path, self.dur_path)]
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._km = self._temps[0].open("w", encoding="ascii")
            self._dur = self._temps[1].open("w", encoding="ascii") if units.dedup else None

    def _emit(self, row: Row, values: np.ndarray, durations: np.ndarray | None) -> None:
        with writing(self.path):
            self._km.write(_line(values))
            if self._dur is not None and durations is not None:
                self._dur.write(_line(durations))

    def close(self) -> Path:
        self._check_complete()
        with writing(self.path):
            for f in (self._km, self._dur):
                if f is not None:
                    f.close()
            if self.failures:
                failed = "".join(f"{name}\t{' '.join(error.split())}\n" for name, error in self.failures)
                write_atomically(self.failed_path, self.failed_path.with_name(self.failed_path.name + ".tmp"),
                                 lambda p: p.write_text(failed, errors="surrogateescape"))
            else:
                self.failed_path.unlink(missing_ok=True)  # from an earlier run: it would describe other lines
            for temp, final in zip(self._temps, (self.path, self.dur_path)):
                if temp.exists():
                    fsync_file(temp)
                    os.replace(temp, final)
            fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        for f in (self._km, self._dur):
            if f is not None:
                f.close()
        for temp in self._temps:
            temp.unlink(missing_ok=True)

    def _check_complete(self) -> None:
        try:
            super()._check_complete()
        except W2VEmbedError:
            self.abort()
            raise


class JsonUnitsWriter(_UnitRows):
    """One JSON object per input on a text stream (`-o -`), in input order; failures are the caller's to report."""

    def __init__(self, stream: TextIO, units: Units, indices: Iterable[int], sample_rate: int) -> None:
        super().__init__(units, indices)
        self.stream, self.sample_rate = stream, sample_rate

    def _emit(self, row: Row, values: np.ndarray, durations: np.ndarray | None) -> None:
        record: dict[str, Any] = {"path": row.name, "seconds": row.num_samples / self.sample_rate, "units": values.tolist()}
        if row.segment:
            record.update(source_path=row.segment[0], segment_start=row.segment[1], segment_end=row.segment[2])
        if durations is not None:
            record["durations"] = durations.tolist()
        self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class UnitsH5Writer(_UnitRows):
    """All rows in memory (units are small: 50 a second), then one HDF5 file written atomically at close."""

    def __init__(self, path: Path, units: Units, info: RunInfo, indices: Iterable[int], overwrite: bool = False) -> None:
        _check_new(path, overwrite)
        super().__init__(units, indices)
        self.path, self.info = path, info
        self._rows: list[tuple[Row, np.ndarray, np.ndarray | None]] = []

    def _emit(self, row: Row, values: np.ndarray, durations: np.ndarray | None) -> None:
        self._rows.append((row, values, durations))

    def close(self) -> Path:
        self._check_complete()
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}"), self._write)
        return self.path

    def _write(self, temp: Path) -> None:
        rows, units, info = self._rows, self.units, self.info
        with create_h5(temp) as f:
            f.attrs.update({
                "format": UNITS_FORMAT, "model": info.model, "model_sha256": info.model_sha256,
                "layer": str(units.layer), "k": np.int64(units.codebook.k), "codebook": units.path,
                "dedup": units.dedup, "sample_rate": np.int64(info.sample_rate), "frame_rate": float(info.frame_rate),
                "frame_center_offset": float(info.frame_center_offset), "w2v_embed_version": __version__,
                "chunk_seconds": float(info.chunk_seconds), "context_seconds": float(info.context_seconds),
                "model_file_sha256": info.model_file_sha256, "precision": info.precision, "channel": info.channel,
            })
            _strings(f, "paths", [r.name for r, _, _ in rows])
            f["num_samples"] = np.array([r.num_samples for r, _, _ in rows], np.int64)
            f["source_sample_rate"] = np.array([r.source_sample_rate for r, _, _ in rows], np.int64)
            f["offsets"] = np.r_[0, np.cumsum([len(v) for _, v, _ in rows])].astype(np.int64)
            f["units"] = np.concatenate([v for _, v, _ in rows]).astype(units.dtype) if rows else np.zeros(0, units.dtype)
            if units.dedup:
                f["durations"] = np.concatenate([d for _, _, d in rows]) if rows else np.zeros(0, np.int32)
            if info.segments:
                segments: list[Segment] = [r.segment or ("", 0.0, 0.0) for r, _, _ in rows]
                _strings(f, "source_path", [s[0] for s in segments])
                f["segment_start"] = np.array([s[1] for s in segments], np.float64)
                f["segment_end"] = np.array([s[2] for s in segments], np.float64)
            _strings(f, "failed/paths", [n for n, _ in self.failures])
            _strings(f, "failed/errors", [e for _, e in self.failures])


def _strings(f: h5py.File, name: str, strings: list[str]) -> None:
    dataset = f.create_dataset(name, shape=(len(strings),), dtype=_STR)
    if strings:
        dataset[:] = encode_strings(strings)


def open_units_sink(output: str | Path | TextIO, units: Units, info: RunInfo, indices: Iterable[int],
                    overwrite: bool = False) -> _UnitRows:
    """The writer `-o` asks for: a text stream → JSON Lines, `.km` → fairseq's text, else HDF5."""
    if hasattr(output, "write"):
        return JsonUnitsWriter(output, units, indices, info.sample_rate)
    path = Path(output)
    if path.suffix == ".km":
        return KmWriter(path, units, indices, overwrite)
    return UnitsH5Writer(path, units, info, indices, overwrite)


def load_units(path: str | Path, durations: bool = False) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """{name: units} of an `extract --units` HDF5 output; with `durations` also {name: frames per unit}
    (all ones unless the run used --dedup)."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise W2VEmbedError(f"{path}: not a readable HDF5 file") from exc
    with f:
        if f.attrs.get("format") != UNITS_FORMAT:
            raise W2VEmbedError(f"{path}: not a units output of `w2v-embed extract --units` (format {UNITS_FORMAT})")
        names, offsets, values = read_strings(f["paths"]), f["offsets"][()], f["units"][()]
        lengths = f["durations"][()] if "durations" in f else np.ones(len(values), np.int32)
    spans = [(name, slice(offsets[i], offsets[i + 1])) for i, name in enumerate(names)]
    units = {name: values[s] for name, s in spans}
    return (units, {name: lengths[s] for name, s in spans}) if durations else units


def read_units_summary(path: str | Path) -> dict[str, Any]:
    """What `w2v-embed info` shows for a units output."""
    with h5py.File(path, "r") as f:
        summary: dict[str, Any] = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        summary["files"] = int(f["paths"].shape[0])
        summary["units"] = int(f["units"].shape[0])
        summary["audio_seconds"] = float(f["num_samples"][()].sum()) / int(f.attrs.get("sample_rate", 16000))
        summary["failed"] = list(zip(read_strings(f["failed/paths"]), read_strings(f["failed/errors"])))
    return summary

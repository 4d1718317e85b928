"""Units outputs: how `-o` is written, fairseq's `.km` text made from the HDF5 layout, and `load_units`.

`extract --units` writes through the same sinks as features (store/sink.py), so resume, shards and
`merge` work alike:
- `-o units.h5`: the output layout of features (store/layout.py, format "w2v-embed-units/2") with
  `/units` (int16/int32, input i is `units[offsets[i]:offsets[i+1]]`) where the layer datasets are,
  `/durations` with --dedup, the frame rate and offset to place units in time, failures under /failed;
  written crash-safely by the FeatureWriter (parts, `--resume`), `--shard I/N` parts joined by `merge`.
- `-o train.km`: fairseq's label file (what simple_kmeans' dump_km_label writes and textlesslib reads):
  one line per input, space-separated units, in input order. The run keeps its parts like an .h5 run
  (`--resume` continues an interrupted one) and writes the text when it finishes (`write_km`); shards
  write .h5 parts, and `w2v-embed merge train.km units.*.h5` writes the one .km of the whole list.
  A failed input gets no line (an empty line would read as an utterance without units): it is named
  on stderr and in `train.km.failed` (path TAB reason), and the run exits 1. With --dedup the
  durations go to `train.km.dur`, line by line.
- `-o -`: JSON Lines (store/jsonl.py), {"path", "seconds", "units"[, "durations"]} per input in input order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import W2VEmbedError
from ..store.files import fsync_dir, write_atomically, writing
from ..store.layout import UNITS_READABLE, RunInfo, read_failures, read_strings

KM_BLOCK = 1 << 22  # units read at a time while writing the text


def write_km(source: Path, km: Path) -> Path:
    """fairseq's text from a units HDF5 file, rows in its order: `km`, `km.dur` with --dedup, and
    `km.failed` when inputs failed (a stale one removed); each file whole or untouched, the .km last."""
    with h5py.File(source, "r") as f, writing(km):
        offsets = f["offsets"][()]
        texts = [(km.with_name(km.name + ".dur"), f["durations"])] if "durations" in f else []
        failures = read_failures(f)
        failed = km.with_name(km.name + ".failed")
        if failures:
            text = "".join(f"{name}\t{' '.join(error.split())}\n" for name, error in failures)
            write_atomically(failed, _temp(failed), lambda p: p.write_text(text, errors="surrogateescape"))
        else:
            failed.unlink(missing_ok=True)  # from an earlier run: it would describe other lines
        for path, dataset in [*texts, (km, f["units"])]:
            write_atomically(path, _temp(path), lambda p, d=dataset: _write_lines(d, offsets, p))
    fsync_dir(km.parent)
    return km


def _temp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _write_lines(dataset: h5py.Dataset, offsets: np.ndarray, path: Path) -> None:
    """One line per row, reading the dataset a block of KM_BLOCK units at a time."""
    lo = hi = 0
    block = np.zeros(0, np.int64)
    with path.open("w", encoding="ascii") as out:
        for start, stop in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
            if stop > hi:
                lo, hi = start, min(len(dataset), max(stop, start + KM_BLOCK))
                block = dataset[lo:hi]
            out.write(" ".join(map(str, block[start - lo : stop - lo].tolist())) + "\n")


def load_units(path: str | Path, durations: bool = False) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """{name: units} of an `extract --units` HDF5 output; with `durations` also {name: frames per unit}
    (all ones unless the run used --dedup)."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise W2VEmbedError(f"{path}: not a readable HDF5 file") from exc
    with f:
        if f.attrs.get("format") not in UNITS_READABLE:
            raise W2VEmbedError(f"{path}: not a units output of `w2v-embed extract --units` (format {UNITS_READABLE[-1]})")
        names, offsets, values = read_strings(f["paths"]), f["offsets"][()], f["units"][()]
        lengths = f["durations"][()] if "durations" in f else np.ones(len(values), np.int32)
    spans = [(name, slice(offsets[i], offsets[i + 1])) for i, name in enumerate(names)]
    units = {name: values[s] for name, s in spans}
    return (units, {name: lengths[s] for name, s in spans}) if durations else units


def read_units_summary(path: str | Path) -> dict[str, Any]:
    """What `w2v-embed info` shows for a units output: the attributes that apply (in the writer's order;
    shard and segment fields only for such runs), the counts and the failures."""
    order = list(RunInfo("", "", (0,), "none", 1, k=2).attrs())
    with h5py.File(path, "r") as f:
        attrs = {k: v.item() if isinstance(v, np.generic) else v.tolist() if isinstance(v, np.ndarray) else v
                 for k, v in f.attrs.items()}
        hidden = {"run_id", "layers", "pooling", "window_seconds", "hop_seconds"}  # one layer, frame by frame
        hidden |= set() if attrs.get("shard") else {"shard", "shard_files", "total_files", "shard_deal"}
        hidden |= set() if attrs.get("segments") else {"segments"}
        summary: dict[str, Any] = {k: attrs[k] for k in sorted(attrs, key=lambda k: order.index(k) if k in order else len(order))
                                   if k not in hidden}
        summary["files"] = int(f["paths"].shape[0])
        summary["units"] = int(f["units"].shape[0])
        summary["audio_seconds"] = float(f["num_samples"][()].sum()) / int(f.attrs.get("sample_rate", 16000))
        summary["failed"] = read_failures(f)
    return summary

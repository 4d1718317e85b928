"""What downstream code calls: load() for outputs that fit in memory, read_summary() for `info`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import W2VEmbedError
from ..layers import Layer, dataset_name, from_text
from .layout import RunInfo, attr_str, open_finished, read_strings

# -- reading ---------------------------------------------------------------------------------------


def load(path: str | Path, layer: Layer | None = None) -> tuple[list[str], np.ndarray] | dict[str, np.ndarray]:
    """Features in one line: pooled → (paths, array (files, dim)); frame-level → {path: (frames, dim)}.

    `layer` is a number (transformers' hidden_states numbering) or "last" (last_hidden_state); None
    picks "last" when stored, else the deepest stored layer. Arrays keep the storage dtype.
    """
    with open_finished(path) as f:
        layers = [from_text(k) for k in np.atleast_1d(f.attrs["layers"])]
        try:
            chosen = layers[-1] if layer is None else from_text(layer)
        except ValueError:
            chosen = layer
        if chosen not in layers:
            raise W2VEmbedError(f"{path}: layer {chosen} is not stored; stored layers: {', '.join(map(str, layers))}")
        paths = read_strings(f["paths"])
        data = f[dataset_name(chosen)][()]
        if attr_str(f.attrs.get("pooling")) != "none":
            return paths, data
        offsets = f["offsets"][()]
    return {p: data[offsets[i] : offsets[i + 1]] for i, p in enumerate(paths)}


def read_summary(path: str | Path) -> dict[str, Any]:
    """What `w2v-embed info` shows: the attributes, file count, audio duration and failures (plain types)."""
    with open_finished(path) as f:
        order = list(RunInfo("", "", (0,), "mean", 1).attrs())  # the writer's order, not h5py's alphabetical one
        keys = sorted(f.attrs, key=lambda k: order.index(k) if k in order else len(order))
        summary: dict[str, Any] = {key: _plain(f.attrs[key]) for key in keys}
        summary["files"] = int(f["paths"].shape[0])
        rate = summary.get("sample_rate") or 16000
        summary["audio_seconds"] = float(f["num_samples"][()].sum()) / rate
        if "offsets" in f:
            summary["frames"] = int(f["offsets"][-1]) if f["offsets"].shape[0] else 0
        summary["failed"] = list(zip(read_strings(f["failed/paths"]), read_strings(f["failed/errors"])))
    return summary


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value



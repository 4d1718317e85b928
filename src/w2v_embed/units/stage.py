"""The units stage: frames of one layer → units, between the Embedder and a sink; frames are never stored.

The Embedder computes only the codebook's layer (its graph is cut after it) at frame level; whole
files come back as frames and are assigned here, and a long file's chunks, which the Embedder streams
to a frame sink, are assigned chunk by chunk as they come, so memory holds a chunk's frames at most.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..layers import Layer, parse_layers
from ..runtime.cache import hash_files
from ..store.layout import RunInfo
from .codebook import Centroids, Codebook, check_model, layer_for, load_codebook


@dataclass(frozen=True)
class Units:
    """A run's codebook and how its units are written."""

    codebook: Codebook
    layer: Layer
    path: str  # the codebook file, as given
    dedup: bool = False  # collapse runs of a unit (durations kept beside)
    sha256: str = ""  # codebook_sha256: what resume and merge compare

    def describe(self, info: RunInfo) -> RunInfo:
        """The run's RunInfo as a units output records it (the storage dtype of features does not apply)."""
        return replace(info, k=self.codebook.k, codebook=self.path, codebook_sha256=self.sha256, dedup=self.dedup,
                       dtype="float32")


def codebook_sha256(codebook: Codebook, path: str | Path) -> str:
    """Of the centroids (whichever file holds them: .npz, .npy or a pickle), else of the faiss index file."""
    if isinstance(codebook, Centroids):
        c = codebook.centroids
        return hashlib.sha256(f"{c.shape}".encode() + c.tobytes()).hexdigest()
    return hash_files([Path(path)])


def prepare(path: str | Path, embedder: Any, layers: str | None, dedup: bool = False,
            trust_pickle: bool = False) -> tuple[Units, Any]:
    """Load the codebook, check it against the model, and configure the Embedder to end at its layer.

    `layers` is --layers as given (None when not given): our KM files know their layer, other files need one.
    The Embedder's own layers do not matter (the CLI makes it with layer 0, the smallest graph, which the
    returned one releases: peak memory holds the model once).
    """
    codebook = load_codebook(path, trust_pickle)
    info = embedder.info
    given = parse_layers(layers, info.num_layers) if layers is not None else None
    layer = layer_for(codebook, given, path)
    check_model(codebook, info.weights_sha256, path)
    if codebook.dim != info.hidden_size:
        raise UsageError(f"--units {path}: centroids of dimension {codebook.dim}, the model's layers have {info.hidden_size}")
    if embedder.options.window_seconds > 0:
        raise UsageError("--units gives one unit per frame: --window does not apply")
    units = Units(codebook, layer, str(path), dedup, codebook_sha256(codebook, path))
    return units, embedder.with_options(layers=(layer,), pool="none")


def run_lengths(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs collapsed: (the unit of each run, its length in frames); `np.repeat` undoes it."""
    units = np.asarray(units)
    if len(units) == 0:
        return units, np.zeros(0, np.int32)
    starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
    return units[starts], np.diff(np.r_[starts, len(units)]).astype(np.int32)


class UnitsEngine:
    """An Engine whose results carry {"units": (n,) ints[, "durations": (n,) frames per unit with dedup]}
    (RunInfo.columns of a units run) instead of frames."""

    def __init__(self, engine: Any, units: Units) -> None:
        self.engine, self.units = engine, units
        self.embedder = engine.embedder
        self._streamed: dict[Any, np.ndarray] = {}  # long files being assigned chunk by chunk

    def write_frames(self, name: Any, layer: Layer, start: int, frames: np.ndarray, num_frames: int) -> None:
        """The Embedder's frame sink for long files: each chunk is assigned as it comes."""
        if name not in self._streamed:
            self._streamed[name] = np.zeros(num_frames, np.int32)
        self._streamed[name][start : start + len(frames)] = self.units.codebook.assign(frames)

    def results(self, files: list[Any], options: Any, frame_sink: Any = None) -> Iterator[Any]:
        with _blas_threads(self.embedder.model.device):
            yield from self._assigned(files, options)

    def _assigned(self, files: list[Any], options: Any) -> Iterator[Any]:
        layer = self.units.layer
        for result in self.engine.results(files, options, self):
            streamed = self._streamed.pop(result.name, None)
            if result.features is None:
                yield result
                continue
            frames = result.features[layer]
            units = streamed if streamed is not None and len(frames) == 0 else self.units.codebook.assign(frames)
            if self.units.dedup:
                units, durations = run_lengths(units)
                yield replace(result, features={"units": units, "durations": durations})
            else:
                yield replace(result, features={"units": units})


def _blas_threads(device: str) -> AbstractContextManager[Any]:
    """One BLAS thread for the assignment while the model runs on the CPU: numpy's BLAS threads spin after
    each product and took cores from ONNX Runtime (--units ran at 0.93× of --pool mean on 2 cores).
    threadpoolctl comes with the units extra (and scikit-learn); without it the units are the same, a little slower."""
    if device != "cpu":
        return nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()

    return threadpool_limits(1, user_api="blas")

"""The sink seam: where an extraction's rows go. One writer per output format implements it (HDF5's
FeatureWriter, JSON Lines, units, Kaldi, fairseq, Parquet), so an engine feeds any of them alike.

Rows arrive in completion order (batching sorts by length, Ray returns whatever finishes first);
each carries its position in the input listing, and a sink presents its rows in that order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..layers import Layer
from .layout import Segment


@dataclass(frozen=True)
class Row:
    """One input's features, as an engine hands them to a sink."""

    index: int  # position in the input listing (the whole listing when sharded): rows are stored in this order
    name: str
    num_samples: int  # at the model's sample rate
    source_sample_rate: int
    features: Mapping[Layer, np.ndarray]  # pooled (D,) per layer, or (frames or windows, D); units: RunInfo.columns
    segment: Segment | None = None  # (source path, start, end) when the row is a part of a recording
    truncated: float = 0.0  # seconds the segment was cut short at its audio's end (--max-overshoot)


class Sink(Protocol):
    """add / add_failure while a run works, then close (finished) or abort (interrupted); a context
    manager that does one or the other."""

    done: set[str]  # names already stored (an earlier run, when resuming): the engine skips them
    stored_segments: Mapping[str, Segment]  # (source, start, end) of stored segment rows, which a resume compares
    frame_sink: Any  # embedder.FrameSink for a long file's frames chunk by chunk, or None: rows come whole

    def __enter__(self) -> Sink: ...

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None: ...

    def add(self, row: Row) -> None: ...

    def add_failure(self, index: int, name: str, error: str) -> None: ...

    def close(self) -> object: ...

    def abort(self) -> None: ...


class InOrder:
    """Items keyed by input index, released in the order of `indices` as soon as the gap before them fills."""

    def __init__(self, indices: Iterable[int]) -> None:
        self._order = list(indices)
        self._next = 0
        self._held: dict[int, Any] = {}

    def put(self, index: int, item: Any) -> Iterator[Any]:
        self._held[index] = item
        while self._next < len(self._order) and self._order[self._next] in self._held:
            yield self._held.pop(self._order[self._next])
            self._next += 1

    @property
    def complete(self) -> bool:
        return self._next == len(self._order)

    def drain(self) -> Iterator[Any]:
        """What is still held (indices outside `indices`, or behind a gap that never filled), by index."""
        for index in sorted(self._held):
            yield self._held.pop(index)


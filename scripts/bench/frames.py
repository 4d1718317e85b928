"""Frame-level output (`--pool none`) against pooled output of the same layers, end to end on one corpus.

Both write HDF5 through the same FeatureWriter; the model work is the same, so the ratio of wall times
is what writing frames costs (goal: at most 1.05). Rounds are interleaved (pooled, then frames, the
order swapped every other round) and the page cache is flushed (`sync`) between runs, so one run's
writeback does not land in the next one's time.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from .common import Table, run_child, spread


def compare_frames(model: Path, base: dict, rounds: int, layers: str = "all") -> None:
    """Rows: wall seconds of each, the per-round ratio frames / pooled (min / median / spread), output size."""
    table = Table(f"Frame-level vs pooled output, extract end to end, layers {layers}, {rounds} interleaved rounds "
                  "(seconds min / median (±half-spread); ratio paired per round)",
                  ["layers", "pooled (mean) s", "frames (--pool none) s", "frames / pooled per round: min / median (±half-spread)",
                   "frame-level file GB", "×real-time pooled / frames (median)"])
    seen: dict[str, list[float]] = {"mean": [], "none": []}
    audio, size = 0.0, 0.0
    for round_number in range(rounds):
        order = ("mean", "none") if round_number % 2 == 0 else ("none", "mean")
        for pool in order:
            os.sync()
            result = run_child("extract", {**base, "model": str(model), "layers": layers, "pool": pool})
            seen[pool].append(result["wall"])
            audio = result["audio"]
            size = result["bytes"] if pool == "none" else size
    ratios = [f / p for p, f in zip(seen["mean"], seen["none"])]
    table.row(layers, spread(seen["mean"]), spread(seen["none"]), spread(ratios), f"{size / 1e9:.2f}",
              f"{audio / statistics.median(seen['mean']):.1f} / {audio / statistics.median(seen['none']):.1f}")

"""Frame-level output (`--pool none`) against pooled output of the same layers, end to end on one corpus.

Both write HDF5 through the same FeatureWriter; the model work is the same, so the ratio of wall times
is what writing frames costs (goal: at most 1.05). Rounds are interleaved (the order rotated every
round) and the page cache is flushed (`sync`) before each run, so one run's writeback does not land
in the next one's time. With `baseline`, the frame-level run of another source tree (e.g. the code
before a change, from `git archive`) joins each round, so before and after are measured side by side.
"""

from __future__ import annotations

import os
import statistics
from functools import partial
from pathlib import Path

from .common import Table, child, interleaved, run_child, spread


def compare_frames(model: Path, base: dict, rounds: int, layers: str = "all", baseline: Path | None = None) -> None:
    """Rows: wall seconds of each, the per-round ratio frames / pooled (min / median (±half-spread)), file size."""
    table = Table(f"Frame-level vs pooled output, extract end to end, layers {layers}, {rounds} interleaved rounds "
                  "(wall seconds and ratios: min / median (±half-spread); ratios paired per round)",
                  ["what", "wall s", "/ pooled, per round", "output GB", "×real-time (median)"])
    runs = {"pooled (mean)": ({"pool": "mean"}, None), "frames (--pool none)": ({"pool": "none"}, None)}
    if baseline:
        runs["frames (--pool none), baseline code"] = ({"pool": "none", "workdir": str(Path(base["workdir"]) / "baseline")},
                                                       {"PYTHONPATH": str(baseline)})
        (Path(base["workdir"]) / "baseline").mkdir(exist_ok=True)

    def run(extra: dict, env: dict | None) -> dict:
        os.sync()
        return run_child("extract", {**base, "model": str(model), "layers": layers, **extra}, env=env)

    seen = interleaved({what: partial(run, *how) for what, how in runs.items()}, rounds)
    pooled = [r["wall"] for r in seen["pooled (mean)"]]
    for what, results in seen.items():
        walls = [r["wall"] for r in results]
        ratios = [w / p for w, p in zip(walls, pooled)]
        table.row(what, spread(walls), spread(ratios), f"{results[-1]['bytes'] / 1e9:.3f}",
                  f"{results[-1]['audio'] / statistics.median(walls):.2f}")


def compare_writer(workdir: Path, rounds: int, gigabytes: float = 0.5, baseline: Path | None = None,
                   realtime: float = 20.0) -> None:
    """The FeatureWriter alone: seconds the caller is held per GB of frames (13 layers × 768, files of
    2–20 s, finishing out of order) in add() (the part files) and in close() (the final file), with a
    model stand-in that takes 1/`realtime` s per audio second between files (a sleep: it leaves the
    cores free, so this is the best case for writing beside it); this code vs `baseline`, interleaved.
    The last column is (stand-in + held) / stand-in: what frames would cost over pooled output with a
    model at that speed."""
    table = Table(f"FeatureWriter alone, {gigabytes:g} GB of frames (13 layers × 768, 2–20 s files, out of order), "
                  f"model stand-in at {realtime:g}× real time, {rounds} interleaved rounds "
                  "(seconds per GB: min / median (±half-spread))",
                  ["code", "held in add() (parts)", "held in close() (final file)", "total", "(stand-in + held) / stand-in"])
    codes = {"this code": None, **({"baseline code": {"PYTHONPATH": str(baseline)}} if baseline else {})}
    args = {"workdir": str(workdir / "writer"), "gigabytes": gigabytes, "threads": 1, "realtime": realtime}

    def run(env: dict | None) -> dict:
        os.sync()
        return run_child("frames-writer", args, env=env)

    seen = interleaved({code: partial(run, env) for code, env in codes.items()}, rounds)
    for code, results in seen.items():
        gb = results[-1]["gb"]
        table.row(code, *(spread([r[key] / gb for r in results]) for key in ("add", "close", "total")),
                  spread([(r["model"] + r["total"]) / r["model"] for r in results]))


@child("frames-writer")
def frames_writer(args: dict) -> dict:
    import shutil
    import time

    import numpy as np

    from w2v_embed.store import FeatureWriter, RunInfo
    from w2v_embed.store.sink import Row

    out = Path(args["workdir"]) / "frames.h5"
    shutil.rmtree(out.parent, ignore_errors=True)
    out.parent.mkdir(parents=True)
    layers = tuple(range(13))
    rng = np.random.default_rng(0)
    per_frame = 13 * 768 * 4
    lengths: list[int] = []
    while sum(lengths) * per_frame < args["gigabytes"] * 1e9:
        lengths.append(int(rng.integers(100, 1000)))
    block = rng.standard_normal((1000, 768)).astype(np.float32)
    order = np.argsort(np.arange(len(lengths)) + rng.uniform(0, 8, len(lengths)))  # late by up to 8 places
    held = model = 0.0
    started = time.perf_counter()
    writer = FeatureWriter(out, RunInfo("bench", "0" * 64, layers, "none", 768),
                           order={f"f{i}": i for i in range(len(lengths))})
    for i in order.tolist():
        t = time.perf_counter()
        time.sleep(lengths[i] / 50 / args["realtime"])  # the model's turn
        features = {k: block[: lengths[i]] + k for k in layers}  # fresh arrays, as the model's would be
        model += time.perf_counter() - t
        t = time.perf_counter()
        writer.add(Row(i, f"f{i}", lengths[i] * 320, 16_000, features))
        held += time.perf_counter() - t
    closing = time.perf_counter()
    writer.close()
    ended = time.perf_counter()
    return dict(add=held, close=ended - closing, total=held + ended - closing, model=model,
                gb=sum(lengths) * per_frame / 1e9, rss=0.0, wall=ended - started)

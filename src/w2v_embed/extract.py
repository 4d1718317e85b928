"""The main job: audio files → features of the chosen layers in one HDF5 file.

Data flows one way: discovered files (or close segments of one recording, together) are decoded
and resampled in worker threads (ahead of the model, so decoding overlaps inference) and embedded by
the Embedder's chunk/batch/pool stages — both inside an engine (engine.py: this process, or
ray_engine) — and written by a sink (the FeatureWriter keeps finished work safe across crashes and
resumes).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .audio import MAX_OVERSHOOT
from .discover import AudioFile, numbered
from .embedder import Embedder
from .engine import Engine, LocalEngine
from .errors import UsageError, W2VEmbedError
from .store import FeatureWriter, RunInfo
from .store.jsonl import JsonLinesWriter
from .store.layout import Segment
from .store.sink import Row, Sink

if TYPE_CHECKING:
    from .units.stage import Units


@dataclass(frozen=True)
class ExtractOptions:
    """Output-side choices; what to compute lives in the Embedder's EmbedOptions."""

    mode: str = "new"  # new | resume | overwrite
    dtype: str = "float32"  # storage dtype: float32 | float16
    channel: int | None = None  # None: mean of all channels
    # Decoders are threads (libsndfile and soxr release the GIL): half the cores, 2 to 8, keep a GPU fed
    # (a 16-core machine: 8) while CPU inference keeps its threads.
    decode_workers: int = field(default_factory=lambda: min(8, max(2, (os.cpu_count() or 2) // 2)))
    decode_ahead: int = 2  # files decoded or decoding ahead of the model (at least one per decoder): an hour is 230 MB
    save_every_files: int = 64  # finished files are made crash-safe at least this often …
    save_every_seconds: float = 20.0  # … and at least this often
    shard: str = ""  # "I/N" when `files` are one shard of a list of `total_files` (shards.select)
    total_files: int = 0
    shard_deal: str = ""  # shards.Deal.fingerprint, which `merge` compares
    max_overshoot: float = MAX_OVERSHOOT  # seconds a segment may end past its audio and be cut there (Kaldi's)

    def __post_init__(self) -> None:
        if not math.isfinite(self.max_overshoot) or self.max_overshoot < 0:
            raise UsageError(f"--max-overshoot {self.max_overshoot}: expected seconds >= 0")
        if self.channel is not None and self.channel < 0:
            raise UsageError(f"--channel {self.channel}: expected a channel number >= 0 (0 is the first)")
        if self.save_every_files < 1:
            raise UsageError(f"--save-every {self.save_every_files}: expected a number of files >= 1")
        if not math.isfinite(self.save_every_seconds) or self.save_every_seconds < 0:
            raise UsageError(f"save_every_seconds {self.save_every_seconds}: expected a finite number >= 0")


@dataclass
class ExtractSummary:
    output: Path
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    truncated: int = 0  # segments cut at the audio's end (within max_overshoot), counted among `ok`
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def realtime_factor(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


Progress = Callable[[str, float], None]  # (file name, its seconds of audio), once per finished file


def run_info(embedder: Embedder, options: ExtractOptions, files: list[AudioFile]) -> RunInfo:
    """What a run computes, as the output records it (and resume and merge compare it)."""
    info = embedder.info
    return RunInfo(
        model=info.source,
        model_sha256=info.weights_sha256,
        layers=embedder.layers,
        pooling=embedder.options.pool,
        hidden_size=info.hidden_size,
        dtype=options.dtype,
        sample_rate=info.sample_rate,
        frame_rate=info.frame_rate,
        frame_center_offset=info.frame_center_offset,
        chunk_seconds=embedder.options.chunk_seconds,
        context_seconds=embedder.options.context_seconds,
        window_seconds=embedder.options.window_seconds,
        hop_seconds=embedder.options.hop if embedder.options.window_seconds > 0 else 0.0,
        segments=any(f.segment is not None for f in files),
        shard=options.shard,
        shard_files=len(files) if options.shard else 0,
        total_files=options.total_files,
        shard_deal=options.shard_deal,
        model_file_sha256=embedder.model.sha256,
        precision=info.precision,
        channel="mean" if options.channel is None else str(options.channel),
    )


def check_segments_unchanged(files: list[AudioFile], stored: Mapping[str, Segment]) -> None:
    """A resumed --segments run whose list now gives a stored row other times (or another recording)
    is refused: keeping the old row would be silently wrong, re-embedding it would hide the change."""
    changed = []
    for file in files:
        old = stored.get(file.name)
        if old is not None and file.segment is not None and old != (os.fsdecode(file.path), *file.segment):
            changed.append((file, old))
    if changed:
        file, (source, start, end) = changed[0]
        raise W2VEmbedError(
            f"cannot resume: {len(changed)} segment(s) of the list changed since they were stored, e.g. {file.name}: "
            f"stored as {source} {start:g}-{end:g} s, now {os.fsdecode(file.path)} {file.segment[0]:g}-{file.segment[1]:g} s; "
            "give them new ids, or pass --overwrite to start over")


def open_sink(output: str | Path | TextIO, info: RunInfo, options: ExtractOptions, order: Mapping[str, int]) -> Sink:
    """The writer `-o` asks for: a text stream → JSON Lines; else the crash-safe, resumable FeatureWriter
    into HDF5, or into fairseq's .km text for units (units.sinks); `order`: name → input index."""
    if hasattr(output, "write"):
        return JsonLinesWriter(output, info, order.values())
    path, finish = Path(output), None
    if info.units and path.suffix == ".km":
        from .units.sinks import write_km

        if options.shard:
            raise UsageError(f"--shard with -o {path}: write each shard to an .h5 file (-o units.I.h5), then "
                             f"`w2v-embed merge {path} units.*.h5` writes the one .km, in the list's order")
        finish = write_km
    return FeatureWriter(path, info, options.mode, options.save_every_files, options.save_every_seconds, order=order,
                         finish=finish)


def extract(
    files: list[AudioFile],
    output: str | Path | TextIO,
    embedder: Embedder,
    options: ExtractOptions = ExtractOptions(),
    progress: Progress | None = None,
    engine: Engine | None = None,
    units: Units | None = None,
) -> ExtractSummary:
    """Embed every file into `output` (an .h5 path, or a text stream for JSON Lines); bad files are
    recorded under /failed (reported in the summary), never fatal. Rows are stored in the order of
    `files` (or of their `index`, for one shard of a numbered list).

    `engine` runs decoding and inference (default: this process); whatever runs them, results come
    back here to the one sink (open_sink), so every engine has the same resume and crash safety.
    With `units` (units.stage.prepare), each frame of the codebook's layer becomes a unit and
    units are written instead of features (HDF5, .km text or JSON Lines: units.sinks), as resumable,
    shardable and mergeable as features.
    """
    started = time.perf_counter()
    engine = engine or LocalEngine(embedder)
    files = numbered(files)
    info = run_info(embedder, options, files)
    if units is not None:  # discrete units instead of features: the units stage after the frames
        from .units.stage import UnitsEngine

        engine, info = UnitsEngine(engine, units), units.describe(info)
    summary = ExtractSummary(Path("-" if hasattr(output, "write") else output))
    with open_sink(output, info, options, {f.name: f.index for f in files}) as writer:
        embedder.self_check()  # after the writer's resume checks: a changed model file is named as such first
        check_segments_unchanged(files, writer.stored_segments)
        todo = [f for f in files if f.name not in writer.done]
        by_name = {f.name: f for f in todo}
        summary.skipped = len(files) - len(todo)
        for result in engine.results(todo, options, writer.frame_sink):
            if result.name in writer.done:
                continue  # an engine that retried a file may deliver it twice: it is stored once
            file = by_name[result.name]
            seconds = result.num_samples / embedder.info.sample_rate
            if result.features is None:
                writer.add_failure(file.index, result.name, result.error)
                summary.failed += 1
                summary.failures.append((result.name, result.error))
                seconds = 0.0
            else:
                segment = (os.fsdecode(file.path), *file.segment) if file.segment is not None else None
                writer.add(Row(file.index, result.name, result.num_samples, result.source_sample_rate, result.features,
                               segment, result.truncated))
                summary.ok += 1
                summary.truncated += result.truncated > 0
                summary.audio_seconds += seconds
            if progress:
                progress(result.name, seconds)
    summary.wall_seconds = time.perf_counter() - started
    return summary

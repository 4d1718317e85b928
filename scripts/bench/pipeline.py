"""End to end: extract on a corpus (plain, Ray, 2 shards + merge), long files, segments, decoding, reading."""

from __future__ import annotations

import time
from pathlib import Path

from .common import child, peak_rss


def _extract_options(overwrite: bool):
    from w2v_embed.extract import ExtractOptions

    return ExtractOptions(mode="overwrite" if overwrite else "new")


@child("extract")
@child("extract-long")
@child("extract-ray")
def extract_run(args: dict) -> dict:
    """extract() on a corpus, a long file or --segments; -ray: one local actor."""
    from w2v_embed.discover import discover
    from w2v_embed.embedder import EmbedOptions, Embedder
    from w2v_embed.extract import extract
    from w2v_embed.segments import read_segments

    kind = args["kind"]

    layers = args.get("layers", "all")
    options = EmbedOptions(layers, args.get("pool", "mean"))
    embedder = Embedder(args["model"], device=args["device"], threads=args["threads"], options=options)
    files = read_segments(args["segments"]) if args.get("segments") else discover([args["corpus"]])
    pool = args.get("pool", "mean")
    out = Path(args["workdir"]) / f"{kind}{'' if pool == 'mean' else '-' + pool}.h5"
    engine, startup = None, None
    if kind == "extract-ray":  # one actor with the same threads; decode tasks get a CPU of their own
        import ray

        from w2v_embed.ray_engine import RayEngine, RayOptions

        started = time.perf_counter()
        ray.init(num_cpus=args["threads"] + 1, _node_ip_address=args["ray_node_ip"], include_dashboard=False,
                 log_to_driver=False)
        startup = time.perf_counter() - started
        engine = RayEngine(embedder, args["model"], args["device"], RayOptions(threads_per_actor=args["threads"]))
    started = time.perf_counter()
    summary = extract(files, out, embedder, _extract_options(overwrite=True), engine=engine)
    wall = time.perf_counter() - started
    return dict(realtime=summary.audio_seconds / wall, rss=peak_rss(), audio=summary.audio_seconds, wall=wall,
                ray_startup_s=startup, bytes=out.stat().st_size)


@child("extract-shards")
def extract_shards(args: dict) -> dict:
    """2 shards one after the other + merge, vs the plain extract row."""
    from w2v_embed.discover import discover
    from w2v_embed.embedder import EmbedOptions, Embedder
    from w2v_embed.extract import ExtractOptions, extract
    from w2v_embed.shards import Shard, select
    from w2v_embed.store import load, merge

    embedder = Embedder(args["model"], device=args["device"], threads=args["threads"], options=EmbedOptions("all", "mean"))
    files, work = discover([args["corpus"]]), Path(args["workdir"])
    started = time.perf_counter()
    parts = []
    for i in range(2):
        part = work / f"shard.{i}.h5"
        options = ExtractOptions(mode="overwrite", shard=f"{i}/2", total_files=len(files))
        extract(select(files, Shard(i, 2)), part, embedder, options)
        parts.append(part)
    merge(work / "merged.h5", parts, overwrite=True)
    wall = time.perf_counter() - started
    paths, merged = load(work / "merged.h5")
    one_paths, one = load(work / "extract.h5")
    worst = float(abs(merged[[paths.index(p) for p in one_paths]] - one).max())
    return dict(realtime=args["audio"] / wall, rss=peak_rss(), wall=wall, max_diff_vs_one_run=worst,
                same_paths=sorted(paths) == sorted(one_paths))


@child("read")
def read(args: dict) -> dict:
    """Random rows of a generated frame-level file of a few GB."""
    import numpy as np

    from w2v_embed.store import FeatureWriter, RunInfo, open as open_output

    path = Path(args["workdir"]) / "big-frames.h5"
    files, frames, hidden = args["read_files"], args["read_frames"], 768
    if not path.exists():
        info = RunInfo("bench", "0" * 64, (12,), "none", hidden)
        rng = np.random.default_rng(0)
        block = rng.standard_normal((frames, hidden)).astype(np.float32)
        with FeatureWriter(path, info, commit_every_files=8) as writer:
            for i in range(files):
                writer.add(f"f{i:05d}.wav", frames * 320, 16_000, {12: block})
    out = open_output(path)
    order = np.random.default_rng(1).integers(0, len(out), 200)
    times = []
    for i in order:
        t = time.perf_counter()
        out[int(i)][12].sum()
        times.append(time.perf_counter() - t)
    return dict(realtime=float("nan"), rss=peak_rss(), gb=path.stat().st_size / 1e9,
                median_ms=1000 * float(np.median(times)), p95_ms=1000 * float(np.percentile(times, 95)))


@child("segments-decode")
def segments_decode(args: dict) -> dict:
    """One recording's turns: one pass per close group, a seek each, or the file whole."""
    from w2v_embed.audio import decode
    from w2v_embed.engine import decode_group
    from w2v_embed.segments import close_groups, read_segments

    files, how = read_segments(args["segments"]), args["how"]
    started = time.perf_counter()
    if how == "whole":
        samples = len(decode(files[0].path).samples)
    elif how == "seek":
        samples = sum(len(decode(f.path, segment=f.segment).samples) for f in files)
    else:
        samples = sum(len(d.samples) for g in close_groups(files) for d in decode_group([files[i] for i in g], None, 16_000))
    wall = time.perf_counter() - started
    return dict(realtime=samples / 16_000 / wall, rss=peak_rss(), wall=wall)


@child("decode")
def decode(args: dict) -> dict:
    """Decoding + resampling alone, with `workers` threads."""
    from w2v_embed.audio import decode
    from w2v_embed.discover import discover
    from w2v_embed.engine import prefetch

    files = discover([args["corpus"]])
    started = time.perf_counter()
    samples = sum(len(f.result().samples) for _, f in prefetch(lambda f: decode(f.path), files, args["workers"],
                                                               2 * args["workers"]))
    wall = time.perf_counter() - started
    return dict(realtime=samples / 16_000 / wall, rss=peak_rss(), wall=wall)


def segment_decode_rows(table, flac: Path, workdir: Path, minutes: float) -> None:
    """Decoding alone: the recording whole, its turns in close groups, or a seek each; FLAC (libsndfile)
    and, where ffmpeg is found, the same audio as AAC in .m4a (an ffmpeg process per seek)."""
    import shutil
    import subprocess

    from .audio import make_turns
    from .common import NAN, run_child

    recordings = [("FLAC", flac)]
    if shutil.which("ffmpeg"):
        m4a = flac.with_suffix(".m4a")
        if not m4a.exists():
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(flac), "-c:a", "aac", "-b:a", "128k", str(m4a)], check=True)
        recordings.append(("AAC .m4a via ffmpeg", m4a))
    for codec, recording in recordings:
        turns = workdir / f"turns-{recording.suffix[1:]}.tsv"
        count, _ = make_turns(recording, turns, minutes * 60)
        for how, what in (("whole", "the recording whole"), ("groups", f"its {count} turns, close ones in one pass"),
                          ("seek", f"its {count} turns, one seek each")):
            result = run_child("segments-decode", {"segments": str(turns), "how": how, "threads": 1})
            table.row("-", f"decode + resample only, {codec}: {what}", result["realtime"], NAN, NAN, result["rss"], NAN)

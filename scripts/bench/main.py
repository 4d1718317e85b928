"""The command line: which cases to run, on which models; every table names the CPU it was measured on."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from functools import partial
from pathlib import Path

from . import peak
from .audio import make_corpus, make_long_file
from .common import NAN, SIZES, Table, flops_per_second_of_audio, interleaved, make_model, run_child, spread


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark w2v-embed: PyTorch eager vs w2v-embed, runtimes, start-up.")
    parser.add_argument("--sizes", nargs="+", default=["base"], choices=sorted(SIZES))
    parser.add_argument("-m", "--model", type=Path, help="benchmark this ONNX model instead (no PyTorch baseline)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--files", type=int, default=200, help="end-to-end corpus size, with the first model (0 skips)")
    parser.add_argument("--int8", action="store_true", help="also the --quantize int8 export (model-only; with --runtimes)")
    parser.add_argument("--runtimes", action="store_true", help="ONNX Runtime vs OpenVINO, interleaved (fp32; int8 with --int8)")
    parser.add_argument("--startup", action="store_true", help="start-up without and with the cache, interleaved")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every table (each row once per round, a fresh process each)")
    parser.add_argument("--time-export", action="store_true", help="export with verification and report its time and peak RSS")
    parser.add_argument("--ray", action="store_true", help="also extract the corpus on a local Ray (start-up reported apart)")
    parser.add_argument("--ray-node-ip", default=None, help="Ray's node IP where its own guess fails (here: 127.0.0.2)")
    parser.add_argument("--shards", action="store_true", help="also 2 shards + merge on the corpus (time, equality)")
    parser.add_argument("--read-gb", type=float, default=0.0, help="also time open()'s random reads of a file this big")
    parser.add_argument("--long-frames", action="store_true", help="with --long-hours: also its frame-level run, all layers")
    parser.add_argument("--decode", action="store_true", help="also time decoding + resampling alone, 1 and 2 workers")
    parser.add_argument("--long-hours", type=float, default=0.0, help="also extract one file this long with the first model (peak RSS)")
    parser.add_argument("--segments-minutes", type=float, default=0.0,
                        help="also a recording this long as diarization-like turns: --segments vs the whole file")
    parser.add_argument("--frames", action="store_true",
                        help="only this case: the FeatureWriter alone on frames, then (with --files) frame-level "
                             "(--pool none) vs pooled extract of the same layers on the corpus, --rounds interleaved rounds")
    parser.add_argument("--frames-baseline", type=Path, default=None,
                        help="with --frames: also a frame-level run importing w2v_embed from this folder (the src/ of "
                             "another version, e.g. from git archive), in every round")
    parser.add_argument("--units", action="store_true",
                        help="only the units cases: extract --units vs --layers 6 --pool mean on the corpus (--files), "
                             "--rounds interleaved rounds")
    parser.add_argument("--kmeans-frames", type=int, nargs="*", default=[],
                        help="only the units cases: k-means fits of K=500 on this many frames each (needs --files)")
    parser.add_argument("--chunking", nargs="*", metavar="CHUNK:CONTEXT[:conv]",
                        help="long files vs clips per chunking candidate, interleaved (default: scripts/chunking_report.py's)")
    parser.add_argument("--fused-attention", action="store_true",
                        help="only this case: the export with MultiHeadAttention fused in by hand vs as exported")
    parser.add_argument("--workdir", type=Path, default=None)
    return parser.parse_args()


def main() -> None:
    opts = parse()
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="w2v-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = str(opts.threads)  # numpy's BLAS, for its peak below
    ceiling, numpy = peak.ort_matmul_peak(opts.threads), peak.numpy_peak(opts.threads)
    cpu = f"{peak.cpu()}, {os.cpu_count()} cpus, {opts.threads} threads"
    print(f"# {cpu}; ONNX Runtime MatMul peak {ceiling:.0f} GFLOP/s (numpy {numpy:.0f}); "
          f"{opts.clip_seconds:g} s clips, medians of {opts.repeats} per process, {opts.rounds} interleaved rounds")
    base = dict(threads=opts.threads, device=opts.device, clip_seconds=opts.clip_seconds, repeats=opts.repeats,
                workdir=str(workdir), corpus=str(workdir / "corpus"), ray_node_ip=opts.ray_node_ip)
    seconds = make_corpus(workdir / "corpus", opts.files) if opts.files else 0.0
    if opts.frames:
        from .frames import compare_frames, compare_writer

        compare_writer(workdir, opts.rounds, baseline=opts.frames_baseline)
        if opts.files:
            model = opts.model or Path(make_model(opts.sizes[0], workdir)[1]["path"])
            print(f"# corpus: {opts.files} files, {seconds / 60:.1f} min; other work may share the cores")
            compare_frames(model, base, opts.rounds, baseline=opts.frames_baseline)
        return
    if opts.fused_attention:
        from .attention import compare_attention

        model = opts.model or Path(make_model(opts.sizes[0], workdir)[1]["path"])
        compare_attention(model, workdir, opts.rounds, opts.threads, cpu)
        return
    if opts.units or opts.kmeans_frames:
        from .units import kmeans_rows, units_rows

        if not opts.files:
            raise SystemExit("--units and --kmeans-frames run on a generated corpus: give --files N")
        model = opts.model or Path(make_model(opts.sizes[0], workdir)[1]["path"])
        print(f"# corpus: {opts.files} files, {seconds / 60:.1f} min; other work may share the cores")
        args = {**base, "model": str(model), "layer": min(6, _num_layers(model))}
        if opts.units:
            units_rows(args, opts.rounds, seconds)
        if opts.kmeans_frames:
            kmeans_rows(args, opts.kmeans_frames)
        return
    table = Table(f"On {cpu}, device {opts.device}; peak = ONNX Runtime's own MatMul, {ceiling:.0f} GFLOP/s "
                  f"(numpy's GEMM: {numpy:.0f}){f'; corpus: {opts.files} files, {seconds / 60:.1f} min' if opts.files else ''}",
                  ["model", "what", "×real-time", "GFLOP/s", "% of MatMul peak", "peak RSS MiB", "vs PyTorch eager"])
    _io_rows(table, opts, workdir)
    for index, size in enumerate([None] if opts.model else opts.sizes):
        _size_rows(table, opts, base, workdir, size, index, ceiling, seconds)
    if opts.chunking is not None:
        _chunking_rows(opts, workdir, cpu)
    if opts.runtimes or opts.startup:
        from .runtimes import compare_runtimes, compare_startup

        size = None if opts.model else opts.sizes[0]
        fp32 = opts.model or Path(make_model(size, workdir)[1]["path"])
        if opts.runtimes:
            models = {"float32": fp32}
            if opts.int8 and size:
                models["int8"] = Path(make_model(size, workdir, "int8")[1]["path"])
            compare_runtimes(models, base, opts.rounds)
        if opts.startup:
            compare_startup(fp32, base, opts.rounds)


def _size_rows(table, opts, base: dict, workdir: Path, size: str | None, index: int, ceiling: float,
               seconds: float) -> None:
    """Model-only rows of one size (PyTorch eager first), then the end-to-end ones with the first size."""
    if opts.model:
        checkpoint, model, label = None, opts.model, opts.model.name
    else:
        checkpoint, exported = make_model(size, workdir, verify=opts.time_export)
        model, label = Path(exported["path"]), size
        if opts.time_export:
            table.row(label, f"export + verification: {exported['seconds']:.0f} s, {exported['bytes'] / 1e9:.2f} GB "
                      f"(max diff {exported['max_abs_diff']:.1e})", NAN, NAN, NAN, exported["rss"], NAN)
    base = {**base, "model": str(model), "checkpoint": str(checkpoint)}
    mid = min(6, _num_layers(model))  # the early-exit row: layer 6, or the last of a smaller model (-m)
    plan = [("onnx", "w2v-embed model-only, all layers", None, {}),
            ("onnx", f"w2v-embed model-only, --layers {mid}", mid, {"layers": [mid]})]
    if opts.int8 and checkpoint:
        int8 = make_model(size, workdir, "int8")[1]["path"]
        plan += [("onnx", "w2v-embed int8 model-only, all layers", None, {"model": int8}),
                 ("onnx", f"w2v-embed int8 model-only, --layers {mid}", mid, {"model": int8, "layers": [mid]})]
    if checkpoint:
        plan.insert(0, ("torch", "transformers PyTorch eager, all hidden states", None, {}))
    if index == 0:
        plan += _pipeline_plan(opts, workdir, seconds)
    _model_rows(table, opts, base, label, size, plan, ceiling)
    if opts.segments_minutes and index == 0:
        from .pipeline import segment_decode_rows

        segment_decode_rows(table, workdir / "segments" / "recording.flac", workdir, opts.segments_minutes)


def _pipeline_plan(opts, workdir: Path, seconds: float) -> list:
    """End-to-end rows, run in the same interleaved rounds as PyTorch eager: the corpus (pooled and, with
    --long-frames, frame-level), one long file, a recording whole and as its turns (--segments)."""
    plan = []
    if opts.files:
        plan.append(("corpus-model", "w2v-embed model-only on the corpus (pre-decoded), all layers", None, {}))
        plan.append(("extract", "w2v-embed extract on the corpus (decode+model+HDF5), all layers", None, {}))
        if opts.long_frames:
            plan.append(("extract", "w2v-embed extract on the corpus, all layers, --pool none (frames)", None,
                         {"pool": "none"}))
        if opts.ray:
            plan.append(("extract-ray", "w2v-embed extract --ray (local, 1 actor), same corpus, all layers", None, {}))
        if opts.shards:
            plan.append(("extract-shards", "w2v-embed extract as 2 shards (one after the other) + merge, same corpus",
                         None, {"audio": seconds}))
    if opts.long_hours:
        long_dir = workdir / "long"
        long_dir.mkdir(exist_ok=True)
        make_long_file(long_dir / "long.flac", opts.long_hours)
        plan.append(("extract-long", f"w2v-embed extract one {opts.long_hours:g} h 48 kHz stereo file, all layers", None,
                     {"corpus": str(long_dir)}))
        if opts.long_frames:
            plan.append(("extract-long", f"w2v-embed extract one {opts.long_hours:g} h file, all layers, --pool none "
                         "(streamed)", None, {"corpus": str(long_dir), "pool": "none"}))
    if opts.segments_minutes:
        from .audio import make_turns

        folder = workdir / "segments"
        folder.mkdir(exist_ok=True)
        make_long_file(folder / "recording.flac", opts.segments_minutes / 60)
        count, covered = make_turns(folder / "recording.flac", workdir / "turns.tsv", opts.segments_minutes * 60)
        plan.append(("extract-long", f"w2v-embed extract one {opts.segments_minutes:g} min 48 kHz stereo FLAC whole, "
                     "all layers", None, {"corpus": str(folder)}))
        plan.append(("extract-long", f"w2v-embed extract its {count} turns ({covered / 60:.1f} min) as --segments, "
                     "all layers", None, {"corpus": str(folder), "segments": str(workdir / "turns.tsv")}))
    return plan


def _model_rows(table, opts, base: dict, label: str, size: str | None, plan: list, ceiling: float) -> None:
    """The cases of `plan` in `--rounds` interleaved rounds (each a fresh process); with several rounds,
    ×real-time as min / median (±half-spread) and the ratio to PyTorch eager paired per round (min / median);
    peak RSS is the median over rounds (the first process of a model may also write the start-up cache)."""
    by_name = interleaved({name: partial(run_child, kind, {**base, **extra}) for kind, name, _, extra in plan}, opts.rounds)
    seen = [by_name[name] for _, name, _, _ in plan]
    eager = [r["realtime"] for r in seen[0]] if plan[0][0] == "torch" else None
    for results, (kind, name, depth, _) in zip(seen, plan):
        speeds = [r["realtime"] for r in results]
        median = statistics.median(speeds)
        gflops = flops_per_second_of_audio(size, depth) * median / 1e9 if size else NAN
        ratios = [s / e for s, e in zip(speeds, eager or [])]
        if not ratios:
            ratio = NAN
        elif kind == "torch" or len(ratios) == 1:  # eager's own ratios are all 1
            ratio = f"{ratios[0]:.2f}×"
        else:
            ratio = f"{min(ratios):.2f} / {statistics.median(ratios):.2f}×"
        if results[0].get("frontend"):
            name += f" (front end alone {statistics.median(r['frontend'] for r in results):.0f}× real-time)"
        table.row(label, name, median if len(speeds) == 1 else spread(speeds), gflops,
                  f"{100 * gflops / ceiling:.0f}%" if gflops == gflops else NAN,  # NaN: FLOPs unknown for -m
                  statistics.median(r["rss"] for r in results), ratio)


def _num_layers(model: Path) -> int:
    from w2v_embed.graphcut import read_metadata
    from w2v_embed.runtime import ModelInfo

    return ModelInfo.from_metadata(read_metadata(model)).num_layers


def _io_rows(table, opts, workdir: Path) -> None:
    """Reading a big frame-level file back, and decoding alone."""
    if opts.read_gb:
        frames = 3000  # 60 s of frames per file, one layer of 768
        files = max(1, int(opts.read_gb * 1e9 / (frames * 768 * 4)))
        result = run_child("read", {"workdir": str(workdir), "read_files": files, "read_frames": frames, "threads": 1})
        table.row("-", f"open() one random file's frames (60 s × 768) of a {result['gb']:.1f} GB frame-level file: "
                       f"median {result['median_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms", NAN, NAN, NAN, result["rss"], NAN)
    if opts.decode and opts.files:
        for workers in (1, 2):
            result = run_child("decode", {"corpus": str(workdir / "corpus"), "workers": workers, "threads": opts.threads})
            table.row("-", f"decode + resample to 16 kHz only (corpus), {workers} worker thread{'s' * (workers > 1)}",
                      result["realtime"], NAN, NAN, result["rss"], NAN)


def _chunking_rows(opts, workdir: Path, cpu: str) -> None:
    """Long file ×real-time as a fraction of clips', per chunking candidate (scripts/bench/chunking.py)."""
    from .chunking import CANDIDATES, parse_candidate, throughput_table

    model = opts.model or Path(make_model(opts.sizes[0], workdir)[1]["path"])
    candidates = [parse_candidate(c) for c in opts.chunking or CANDIDATES]
    throughput_table(model, candidates, opts.rounds, opts.clip_seconds, opts.threads, workdir, cpu)

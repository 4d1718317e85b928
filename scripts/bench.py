"""Benchmark: transformers PyTorch eager vs w2v-embed, model-only and end-to-end, in one run.

Builds random-weight base- and large-sized wav2vec2 models (or takes -m MODEL.onnx), generates
audio, and prints one table: ×real-time, achieved GFLOP/s, % of this machine's measured sgemm
peak, peak RSS, and the speed-up over PyTorch eager. Each measurement runs in its own process so
its peak RSS is its own. A benchmark, not a test: numbers go to README's performance section.

    python scripts/bench.py                      # base, 2 threads
    python scripts/bench.py --sizes base large --files 200 --long-hours 2
    python scripts/bench.py --sizes xlsr-1b --files 0 --repeats 2 --time-export
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {
    "base": dict(),
    "large": dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
    ),
    # XLS-R 1B / 2B and MMS-1B: over protobuf's 2 GB in float32, so exported with external data.
    "xlsr-1b": dict(
        hidden_size=1280, num_hidden_layers=48, num_attention_heads=16, intermediate_size=5120,
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
    ),
    "xlsr-2b": dict(
        hidden_size=1920, num_hidden_layers=48, num_attention_heads=16, intermediate_size=7680,
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
    ),
    # The other families at base size, as their base checkpoints are configured.
    "hubert-base": dict(model_type="hubert"),
    "wavlm-base": dict(model_type="wavlm"),
    "data2vec-audio-base": dict(model_type="data2vec-audio", conv_bias=True),
    # facebook/wav2vec2-conformer-rel-pos-large and -rope-large.
    **{f"conformer-{name}-large": dict(
        model_type="wav2vec2-conformer", hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
        intermediate_size=4096, feat_extract_norm="layer", conv_bias=True, position_embeddings_type=kind,
    ) for name, kind in (("rel-pos", "relative"), ("rope", "rotary"))},
}


def _config(size: str):
    """The transformers config of a size; wav2vec2 unless the size names another model_type."""
    from transformers import AutoConfig

    values = dict(SIZES[size])
    return AutoConfig.for_model(values.pop("model_type", "wav2vec2"), **values)


def flops_per_second_of_audio(size: str, layers: int | None = None, seconds: float = 10.0) -> float:
    """Multiply-adds × 2 of the conv stack, projection and `layers` transformer layers, per audio second
    (wav2vec2 sizes only; NaN for the other families, whose positional conv and attention differ)."""
    c = _config(size)
    if c.model_type != "wav2vec2":
        return float("nan")
    samples = int(seconds * 16_000)
    total, length, channels = 0.0, samples, 1
    for dim, kernel, stride in zip(c.conv_dim, c.conv_kernel, c.conv_stride):
        length = (length - kernel) // stride + 1
        total += 2 * length * dim * channels * kernel
        channels = dim
    frames, h, ff = length, c.hidden_size, c.intermediate_size
    total += 2 * frames * channels * h  # feature projection
    groups, k = c.num_conv_pos_embedding_groups, c.num_conv_pos_embeddings
    total += 2 * frames * h * (h // groups) * k  # positional conv
    n = c.num_hidden_layers if layers is None else layers
    per_layer = 2 * frames * (4 * h * h + 2 * h * ff) + 2 * 2 * frames * frames * h
    return (total + n * per_layer) / seconds


def sgemm_peak(threads: int) -> float:
    """GFLOP/s of a large float32 matmul with `threads` threads (the ceiling this CPU offers)."""
    import numpy as np

    a = np.random.rand(2048, 2048).astype(np.float32)
    a @ a
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        a @ a
        best = max(best, 2 * 2048**3 / (time.perf_counter() - t) / 1e9)
    return best


def child(kind: str, args: dict) -> dict:
    """One measurement in this process; returns seconds of audio per wall second and peak RSS."""
    import numpy as np

    if kind == "checkpoint":
        import torch
        from transformers import AutoModel

        # Weights allocated once and filled in place (a 2B model is 8.6 GB; transformers' own init holds more).
        torch.manual_seed(0)
        with torch.device("meta"):
            model = AutoModel.from_config(_config(args["size"]))
        model.to_empty(device="cpu")
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.ndim == 1:  # norms' scales 1, biases 0
                    param.fill_(1.0 if name.endswith("weight") else 0.0)
                else:
                    param.normal_(0.0, 0.02)
        model.save_pretrained(args["checkpoint"])
        return dict(rss=_peak_rss())
    if kind == "export":
        from w2v_embed.export import ExportOptions, export_model

        started = time.perf_counter()
        options = ExportOptions(output=Path(args["output"]), verify=args["verify"], quantize=args["quantize"],
                                overwrite=True)
        result = export_model(args["checkpoint"], options)
        worst = result.report.max_abs_diff if result.report else None
        return dict(seconds=time.perf_counter() - started, rss=_peak_rss(), bytes=result.size_bytes,
                    path=str(result.path), max_abs_diff=worst)
    threads = args["threads"]
    rng = np.random.default_rng(0)
    clip = rng.standard_normal(int(args["clip_seconds"] * 16_000)).astype(np.float32)
    repeats = args["repeats"]
    if kind == "torch":
        import torch
        from transformers import AutoModel

        torch.set_num_threads(threads)
        device = "cuda" if args["device"] == "cuda" else "cpu"  # the baseline runs where w2v-embed runs
        model = AutoModel.from_pretrained(args["checkpoint"]).eval().to(device)
        x = torch.from_numpy(clip[None]).to(device)

        def step() -> None:
            with torch.inference_mode():
                model(x, output_hidden_states=True)
            if device == "cuda":
                torch.cuda.synchronize()
    elif kind in ("onnx", "onnx-layer6"):
        from w2v_embed.runtime import OnnxModel

        model = OnnxModel(args["model"], device=args["device"], threads=threads)
        layers = [6] if kind == "onnx-layer6" else list(range(model.info.num_layers + 1))
        lengths = np.array([len(clip)])

        def step() -> None:
            model.run(clip[None], lengths, layers)
    elif kind == "corpus-model":
        from w2v_embed.audio import decode
        from w2v_embed.discover import discover
        from w2v_embed.embedder import EmbedOptions, Embedder

        embedder = Embedder(args["model"], device=args["device"], threads=threads, options=EmbedOptions("all", "mean"))
        signals = [decode(f.path).samples for f in discover([args["corpus"]])]  # not timed
        audio = sum(len(x) for x in signals) / 16_000
        started = time.perf_counter()
        for _ in embedder.embed_stream(enumerate(signals)):
            pass
        wall = time.perf_counter() - started
        return dict(realtime=audio / wall, rss=_peak_rss(), audio=audio, wall=wall)
    elif kind in ("extract", "extract-long", "extract-ray"):
        from w2v_embed.discover import discover
        from w2v_embed.embedder import EmbedOptions, Embedder
        from w2v_embed.extract import extract

        from w2v_embed.segments import read_segments

        layers = args.get("layers", "all")
        options = EmbedOptions(layers, args.get("pool", "mean"))
        embedder = Embedder(args["model"], device=args["device"], threads=threads, options=options)
        files = read_segments(args["segments"]) if args.get("segments") else discover([args["corpus"]])
        out = Path(args["workdir"]) / f"{kind}.h5"
        engine, startup = None, None
        if kind == "extract-ray":  # one actor with the same threads; decode tasks get a CPU of their own
            import ray

            from w2v_embed.ray_engine import RayEngine, RayOptions

            started = time.perf_counter()
            ray.init(num_cpus=threads + 1, _node_ip_address=args["ray_node_ip"], include_dashboard=False,
                     log_to_driver=False)
            startup = time.perf_counter() - started
            engine = RayEngine(embedder, args["model"], args["device"], RayOptions(threads_per_actor=threads))
        started = time.perf_counter()
        summary = extract(files, out, embedder, _extract_options(overwrite=True), engine=engine)
        wall = time.perf_counter() - started
        return dict(realtime=summary.audio_seconds / wall, rss=_peak_rss(), audio=summary.audio_seconds, wall=wall,
                    ray_startup_s=startup)
    elif kind == "extract-shards":  # 2 shards one after the other + merge, vs the plain extract row
        from w2v_embed.discover import discover
        from w2v_embed.embedder import EmbedOptions, Embedder
        from w2v_embed.extract import ExtractOptions, extract
        from w2v_embed.shards import Shard, select
        from w2v_embed.store import load, merge

        embedder = Embedder(args["model"], device=args["device"], threads=threads, options=EmbedOptions("all", "mean"))
        files, work = discover([args["corpus"]]), Path(args["workdir"])
        started = time.perf_counter()
        parts = []
        for i in range(2):
            part = work / f"shard.{i}.h5"
            options = ExtractOptions(mode="overwrite", shard=f"{i}/2", total_files=len(files))
            summary = extract(select(files, Shard(i, 2)), part, embedder, options)
            parts.append(part)
        merge(work / "merged.h5", parts, overwrite=True)
        wall = time.perf_counter() - started
        paths, merged = load(work / "merged.h5")
        one_paths, one = load(work / "extract.h5")
        worst = float(abs(merged[[paths.index(p) for p in one_paths]] - one).max())
        return dict(realtime=args["audio"] / wall, rss=_peak_rss(), wall=wall, max_diff_vs_one_run=worst,
                    same_paths=sorted(paths) == sorted(one_paths))
    elif kind == "read":  # random rows of a generated frame-level file of a few GB
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
        return dict(realtime=float("nan"), rss=_peak_rss(), gb=path.stat().st_size / 1e9,
                    median_ms=1000 * float(np.median(times)), p95_ms=1000 * float(np.percentile(times, 95)))
    elif kind == "segments-decode":  # one recording's turns: one pass per close group, a seek each, or the file whole
        from w2v_embed.audio import decode
        from w2v_embed.extract import decode_group
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
        return dict(realtime=samples / 16_000 / wall, rss=_peak_rss(), wall=wall)
    elif kind == "decode":
        from w2v_embed.audio import decode
        from w2v_embed.discover import discover
        from w2v_embed.extract import prefetch

        files = discover([args["corpus"]])
        started = time.perf_counter()
        samples = sum(len(f.result().samples) for _, f in prefetch(lambda f: decode(f.path), files, args["workers"],
                                                                   2 * args["workers"]))
        wall = time.perf_counter() - started
        return dict(realtime=samples / 16_000 / wall, rss=_peak_rss(), wall=wall)
    else:
        raise ValueError(kind)
    step()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    median = float(np.median(times))
    return dict(realtime=args["clip_seconds"] / median, rss=_peak_rss(), median_s=median)


def _extract_options(overwrite: bool):
    from w2v_embed.extract import ExtractOptions

    return ExtractOptions(mode="overwrite" if overwrite else "new")


def _peak_rss() -> float:
    """This process's peak RSS in MiB (VmHWM: ru_maxrss would include the parent's from before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(kind: str, args: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args["threads"])}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, json.dumps(args)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_model(size: str, workdir: Path, quantize: str | None = None, verify: bool = False) -> tuple[Path, dict, dict]:
    """Random-weight checkpoint and its export, each in a process of its own; returns the export's measurements."""
    checkpoint = workdir / f"{size}-checkpoint"
    if not checkpoint.exists():
        run_child("checkpoint", {"size": size, "checkpoint": str(checkpoint), "threads": 2})
    output = workdir / f"{size}{'-' + quantize if quantize else ''}.onnx"
    result = run_child("export", {"checkpoint": str(checkpoint), "output": str(output), "verify": verify,
                                  "quantize": quantize, "threads": 2})
    return checkpoint, result, SIZES[size]


def make_corpus(folder: Path, files: int, seed: int = 0) -> float:
    """`files` noise-and-tone files of 2–20 s at 8–48 kHz, mono or stereo; returns total seconds."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for i in range(files):
        rate = int(rng.choice([8_000, 16_000, 22_050, 44_100, 48_000]))
        seconds = float(rng.uniform(2, 20))
        channels = int(rng.choice([1, 2]))
        n = int(seconds * rate)
        t = np.arange(n) / rate
        x = 0.1 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.02 * rng.standard_normal(n)
        x = np.repeat(x[:, None], channels, axis=1) if channels == 2 else x
        sf.write(folder / f"f{i:04d}.{'flac' if i % 2 else 'wav'}", x.astype(np.float32), rate)
        total += seconds
    return total


def make_turns(recording: Path, table: Path, seconds: float, seed: int = 2) -> tuple[int, float]:
    """A diarization-like segment list: turns of 1–8 s with 0.1–1.5 s pauses; returns (rows, seconds in turns)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows, covered, t = [], 0.0, 0.0
    while True:
        start = t + rng.uniform(0.1, 1.5)
        end = start + rng.uniform(1.0, 8.0)
        if end > seconds:
            break
        rows.append(f"{recording}\t{start:.3f}\t{end:.3f}\n")
        covered += round(end, 3) - round(start, 3)
        t = end
    table.write_text("path\tstart\tend\n" + "".join(rows))
    return len(rows), covered


def make_long_file(path: Path, hours: float) -> None:
    """A long 48 kHz stereo FLAC, written in blocks so the generator itself stays small."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(1)
    block = 48_000 * 60
    with sf.SoundFile(path, "w", 48_000, 2, format="FLAC") as f:
        for _ in range(int(hours * 60)):
            x = 0.05 * rng.standard_normal((block, 2)).astype(np.float32)
            f.write(x)


def _segment_rows(label: str, base: dict, workdir: Path, minutes: float, torch_rt: float | None) -> list[tuple]:
    """One 48 kHz stereo FLAC recording: extract it whole, then its turns as --segments; and decoding alone."""
    folder = workdir / "segments"
    folder.mkdir(exist_ok=True)
    make_long_file(folder / "recording.flac", minutes / 60)
    count, covered = make_turns(folder / "recording.flac", workdir / "turns.tsv", minutes * 60)
    nan, rows = float("nan"), []
    for kind, what, extra in (
        ("extract-long", f"extract one {minutes:g} min 48 kHz stereo FLAC whole, --layers last", {}),
        ("extract-long", f"extract its {count} turns ({covered / 60:.1f} min) as --segments, --layers last",
         {"segments": str(workdir / "turns.tsv")}),
    ):
        result = run_child(kind, {**base, "corpus": str(folder), "layers": "last", **extra})
        rows.append((label, what, result["realtime"], nan, nan, result["rss"],
                     result["realtime"] / torch_rt if torch_rt else nan))
        print(f"# {label}: {what}: {result}", flush=True)
    return rows + _segment_decode_rows(folder / "recording.flac", workdir, minutes)


def _segment_decode_rows(flac: Path, workdir: Path, minutes: float) -> list[tuple]:
    """Decoding alone: the recording whole, its turns in close groups, or a seek each; FLAC (libsndfile)
    and, where ffmpeg is found, the same audio as AAC in .m4a (an ffmpeg process per seek)."""
    import shutil
    import subprocess

    recordings = [("FLAC", flac)]
    if shutil.which("ffmpeg"):
        m4a = flac.with_suffix(".m4a")
        if not m4a.exists():
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(flac), "-c:a", "aac", "-b:a", "128k", str(m4a)], check=True)
        recordings.append(("AAC .m4a via ffmpeg", m4a))
    nan, rows = float("nan"), []
    for codec, recording in recordings:
        table = workdir / f"turns-{recording.suffix[1:]}.tsv"
        count, _ = make_turns(recording, table, minutes * 60)
        for how, what in (("whole", "the recording whole"), ("groups", f"its {count} turns, close ones in one pass"),
                          ("seek", f"its {count} turns, one seek each")):
            result = run_child("segments-decode", {"segments": str(table), "how": how, "threads": 1,
                                                   "clip_seconds": 1.0, "repeats": 1})
            rows.append(("-", f"decode + resample only, {codec}: {what}", result["realtime"], nan, nan, result["rss"], nan))
            print(f"# {codec}: {what}: {result}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["base"], choices=sorted(SIZES))
    parser.add_argument("-m", "--model", type=Path, help="benchmark this ONNX model instead (no PyTorch baseline)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--files", type=int, default=200, help="end-to-end corpus size, with the first model (0 skips)")
    parser.add_argument("--int8", action="store_true", help="also time the --quantize int8 export, model-only")
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
    parser.add_argument("--workdir", type=Path, default=None)
    opts = parser.parse_args()
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="w2v-bench-"))
    peak = sgemm_peak(opts.threads)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, {opts.threads} threads, "
          f"device {opts.device}; sgemm peak {peak:.0f} GFLOP/s; {opts.clip_seconds:g} s clips, medians of {opts.repeats}")
    if opts.files:
        seconds = make_corpus(workdir / "corpus", opts.files)
        print(f"# corpus: {opts.files} files, {seconds / 60:.1f} min of audio at 8–48 kHz")
    rows = []
    if opts.read_gb:
        frames = 3000  # 60 s of frames per file, one layer of 768
        files = max(1, int(opts.read_gb * 1e9 / (frames * 768 * 4)))
        result = run_child("read", {"workdir": str(workdir), "read_files": files, "read_frames": frames, "threads": 1,
                                    "clip_seconds": 1.0, "repeats": 1})
        rows.append(("-", f"open() one random file's frames (60 s × 768) of a {result['gb']:.1f} GB frame-level file: "
                          f"median {result['median_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms", float("nan"),
                     float("nan"), float("nan"), result["rss"], float("nan")))
        print(f"# read: {result}", flush=True)
    if opts.decode and opts.files:
        for workers in (1, 2):
            result = run_child("decode", {"corpus": str(workdir / "corpus"), "workers": workers, "threads": opts.threads,
                                          "clip_seconds": 1.0, "repeats": 1})
            rows.append(("-", f"decode + resample to 16 kHz only (corpus), {workers} worker thread{'s' * (workers > 1)}",
                         result["realtime"], float("nan"), float("nan"), result["rss"], float("nan")))
            print(f"# decode, {workers} workers: {result}", flush=True)
    for index, size in enumerate([None] if opts.model else opts.sizes):
        if opts.model:
            checkpoint, model, config = None, opts.model, None
            label = opts.model.name
        else:
            checkpoint, exported, config = make_model(size, workdir, verify=opts.time_export)
            model, label = Path(exported["path"]), size
            if opts.time_export:
                rows.append((label, f"export + verification: {exported['seconds']:.0f} s, {exported['bytes'] / 1e9:.2f} GB "
                             f"(max diff {exported['max_abs_diff']:.1e})", float("nan"), float("nan"), float("nan"),
                             exported["rss"], float("nan")))
                print(f"# {label}: export: {exported}", flush=True)
        base = dict(threads=opts.threads, device=opts.device, clip_seconds=opts.clip_seconds, repeats=opts.repeats,
                    model=str(model), checkpoint=str(checkpoint), workdir=str(workdir), corpus=str(workdir / "corpus"),
                    ray_node_ip=opts.ray_node_ip)
        torch_rt = None
        plan = [("onnx", "w2v-embed model-only, all layers", None), ("onnx-layer6", "w2v-embed model-only, --layers 6", 6)]
        if opts.int8 and checkpoint:
            int8 = make_model(size, workdir, "int8")[1]["path"]
            plan += [("onnx", "w2v-embed int8 model-only, all layers", None, int8),
                     ("onnx-layer6", "w2v-embed int8 model-only, --layers 6", 6, int8)]
        if checkpoint:
            plan.insert(0, ("torch", "transformers PyTorch eager, all hidden states", None))
        if opts.files and index == 0:
            plan.append(("corpus-model", "w2v-embed model-only on the corpus (pre-decoded), all layers", None))
            plan.append(("extract", "w2v-embed extract on the corpus (decode+model+HDF5), all layers", None))
            if opts.ray:
                plan.append(("extract-ray", "w2v-embed extract --ray (local, 1 actor), same corpus, all layers", None))
            if opts.shards:
                plan.append(("extract-shards", "w2v-embed extract as 2 shards (one after the other) + merge, same corpus", None))
        for kind, name, depth, *model_override in plan:
            extra = {"audio": seconds} if kind == "extract-shards" else {}
            result = run_child(kind, {**base, **extra, "model": model_override[0]} if model_override else {**base, **extra})
            if kind == "torch":
                torch_rt = result["realtime"]
            gflops = flops_per_second_of_audio(size, depth) * result["realtime"] / 1e9 if config is not None else float("nan")
            rows.append((label, name, result["realtime"], gflops, 100 * gflops / peak, result["rss"],
                         result["realtime"] / torch_rt if torch_rt else float("nan")))
            print(f"# {label}: {name}: {result}", flush=True)
        if opts.long_hours and index == 0:
            long_dir = workdir / "long"
            long_dir.mkdir(exist_ok=True)
            make_long_file(long_dir / "long.flac", opts.long_hours)
            result = run_child("extract-long", {**base, "corpus": str(long_dir), "layers": "last"})
            rows.append((label, f"extract one {opts.long_hours:g} h 48 kHz stereo file", result["realtime"],
                         float("nan"), float("nan"), result["rss"], result["realtime"] / torch_rt if torch_rt else float("nan")))
            if opts.long_frames:
                result = run_child("extract-long", {**base, "corpus": str(long_dir), "layers": "all", "pool": "none"})
                rows.append((label, f"extract one {opts.long_hours:g} h file, --pool none, all layers (streamed)",
                             result["realtime"], float("nan"), float("nan"), result["rss"], float("nan")))
        if opts.segments_minutes and index == 0:
            rows += _segment_rows(label, base, workdir, opts.segments_minutes, torch_rt)
    print("| model | what | ×real-time | GFLOP/s | % of sgemm peak | peak RSS MiB | vs PyTorch eager |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, name, rt, gf, pct, rss, ratio in rows:
        print(f"| {label} | {name} | {rt:.1f} | {gf:.0f} | {pct:.0f}% | {rss:.0f} | {ratio:.2f}× |")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], json.loads(sys.argv[3]))))
    else:
        main()

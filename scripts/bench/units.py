"""Units: `extract --units` against `extract --layers L --pool mean` on the same corpus (interleaved rounds,
with both outputs' sizes), and the k-means fit's time and peak RSS for K=500 as the sample grows."""

from __future__ import annotations

import time
from pathlib import Path

from .common import Table, child, interleaved, paired, peak_rss, run_child, spread

K = 500  # centroids; the layer is base's 6, or the last of a smaller model (-m): args['layer']


def units_rows(base: dict, rounds: int, audio_seconds: float) -> None:
    """Each round runs the units run and the pooled one, each in a fresh process (start-up excluded), in
    alternating order (ABBA…); the ratio is paired per round, so both see the same load."""
    layer = base["layer"]
    table = Table(f"extract --units (K={K} centroids, layer {layer}) vs extract --layers {layer} --pool mean, "
                  f"{audio_seconds / 60:.1f} min corpus, {rounds} interleaved rounds (×real-time min / median (±half-spread))",
                  ["--units", f"--layers {layer} --pool mean", "units / mean per round (min / median)", "output sizes"])
    seen = interleaved({"units": lambda: run_child("extract-units", base),
                        "mean": lambda: run_child("extract", {**base, "layers": str(layer), "pool": "mean"})}, rounds)
    units, mean = ([r["realtime"] for r in seen[case]] for case in ("units", "mean"))
    sizes = {**seen["units"][-1]["sizes"], f"pooled .h5 (layer {layer}, mean)": (Path(base["workdir"]) / "extract.h5").stat().st_size}
    table.row(spread(units), spread(mean), paired(units, mean),
              ", ".join(f"{name} {size / 1e3:.0f} kB" for name, size in sizes.items()))


@child("extract-units")
def extract_units(args: dict) -> dict:
    """extract --units with random (K, D) centroids (a .npy: numpy's argmin, no faiss), into units HDF5;
    the .km text made from it afterwards (untimed) for its size."""
    import numpy as np

    from w2v_embed.discover import discover
    from w2v_embed.embedder import EmbedOptions, Embedder
    from w2v_embed.extract import ExtractOptions, extract
    from w2v_embed.units import prepare
    from w2v_embed.units.sinks import write_km

    work = Path(args["workdir"])
    # as the CLI does: from the smallest graph, re-configured to end at the codebook's layer by prepare()
    embedder = Embedder(args["model"], device=args["device"], threads=args["threads"], options=EmbedOptions("0"))
    codebook = work / "centroids.npy"
    np.save(codebook, np.random.default_rng(0).standard_normal((K, embedder.info.hidden_size)).astype(np.float32))
    units, embedder = prepare(codebook, embedder, str(args["layer"]))
    out = work / "units.h5"
    started = time.perf_counter()
    summary = extract(discover([args["corpus"]]), out, embedder, ExtractOptions(mode="overwrite"), units=units)
    wall = time.perf_counter() - started
    write_km(out, work / "units.km")
    sizes = {"units .h5": out.stat().st_size, ".km": (work / "units.km").stat().st_size}
    return dict(realtime=summary.audio_seconds / wall, rss=peak_rss(), wall=wall, sizes=sizes)


def kmeans_rows(base: dict, counts: list[int]) -> None:
    """Frames of the layer sampled from the model on the corpus once (all of them), then fits of K=500
    on `counts` frames each (the sample repeated with a little noise where the corpus has fewer), each
    fit in a process of its own; the last row extrapolates the largest fit linearly to 10 h of frames."""
    frames = run_child("kmeans-sample", base)
    table = Table(f"k-means fit, K={K}, faiss ({25} iterations, every sampled frame used), frames of layer {base['layer']} of "
                  f"{Path(base['model']).name} (sampled: {frames['frames']} frames from the corpus at "
                  f"{frames['realtime']:.1f}× real-time; more are those again plus noise)",
                  ["frames", "hours of frames", "fit seconds", "peak RSS MiB"])
    last = None
    for count in counts:
        last = run_child("kmeans-fit", {**base, "frames": count})
        table.row(count, count / 50 / 3600, last["seconds"], last["rss"])
    if last:  # faiss' k-means costs N·K·D per iteration and holds the N×D float32 sample: both linear in N
        scale = 10 * 3600 * 50 / last["frames"]
        table.row(f"10 h = {10 * 3600 * 50} (extrapolated ×{scale:.1f} from {last['frames']})", 10.0,
                  last["seconds"] * scale, last["rss"] * scale)


@child("kmeans-sample")
def kmeans_sample(args: dict) -> dict:
    """All frames of the layer on the corpus, through the kmeans sampler (fraction 1), saved for the fits."""
    import numpy as np

    from w2v_embed.discover import discover
    from w2v_embed.embedder import EmbedOptions, Embedder
    from w2v_embed.engine import LocalEngine
    from w2v_embed.extract import ExtractOptions
    from w2v_embed.units.kmeans import FrameSample, SampleOptions

    embedder = Embedder(args["model"], device=args["device"], threads=args["threads"], options=EmbedOptions(str(args["layer"]), "none"))
    sample = FrameSample(SampleOptions(fraction=1.0), embedder.info.frame_rate)
    started, audio = time.perf_counter(), 0.0
    for result in LocalEngine(embedder).results(discover([args["corpus"]]), ExtractOptions()):
        if result.features is not None:
            sample.add(result.name, 0, result.features[args["layer"]])
            audio += result.num_samples / 16_000
    wall = time.perf_counter() - started
    frames = sample.frames()
    np.save(Path(args["workdir"]) / "kmeans-frames.npy", frames)
    return dict(frames=len(frames), realtime=audio / wall, rss=peak_rss())


@child("kmeans-fit")
def kmeans_fit(args: dict) -> dict:
    import faiss
    import numpy as np

    from w2v_embed.units.kmeans import fit

    faiss.omp_set_num_threads(args["threads"])
    sample = np.load(Path(args["workdir"]) / "kmeans-frames.npy")
    rng, count = np.random.default_rng(0), args["frames"]
    frames = np.empty((count, sample.shape[1]), np.float32)
    for start in range(0, count, len(sample)):
        part = frames[start : start + len(sample)]
        part[:] = sample[: len(part)]
        if start:
            part += 0.05 * rng.standard_normal(part.shape, dtype=np.float32)
    del sample
    started = time.perf_counter()
    fit(frames, K, "faiss")
    return dict(frames=count, seconds=time.perf_counter() - started, rss=peak_rss())

"""Model-only ×real-time on one clip: transformers PyTorch eager, and w2v-embed's session (all layers or --layers 6).

Models that eat features rather than the waveform (w2v-BERT 2.0) include their front end on both sides:
transformers' SeamlessM4TFeatureExtractor before PyTorch, w2v-embed's numpy fbank before the session.
"""

from __future__ import annotations

import time

from .common import child, peak_rss


def clip(args: dict):
    import numpy as np

    return np.random.default_rng(0).standard_normal(int(args["clip_seconds"] * 16_000)).astype(np.float32)


def timed(step, args: dict) -> dict:
    """Median of `repeats` runs after a warm-up, as ×real-time of the clip."""
    import numpy as np

    step()
    times = []
    for _ in range(args["repeats"]):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    median = float(np.median(times))
    return dict(realtime=args["clip_seconds"] / median, best=args["clip_seconds"] / min(times), rss=peak_rss(),
                median_s=median)


@child("torch")
def torch_eager(args: dict) -> dict:
    import torch
    from transformers import AutoModel

    torch.set_num_threads(args["threads"])
    device = "cuda" if args["device"] == "cuda" else "cpu"  # the baseline runs where w2v-embed runs
    model = AutoModel.from_pretrained(args["checkpoint"]).eval().to(device)
    x = clip(args)
    waveform = {"input_values": torch.from_numpy(x[None]).to(device)}
    front_end = None
    if model.main_input_name == "input_features":  # w2v-BERT: its feature extractor is part of every step
        from transformers import AutoFeatureExtractor

        extractor = AutoFeatureExtractor.from_pretrained(args["checkpoint"])

        def front_end() -> dict:
            return {k: v.to(device) for k, v in extractor(x, sampling_rate=16_000, return_tensors="pt").items()}

    def step() -> None:
        with torch.inference_mode():
            model(**(front_end() if front_end else waveform), output_hidden_states=True)
        if device == "cuda":
            torch.cuda.synchronize()

    return {**timed(step, args), "frontend": _front_end_only(front_end, args)}


@child("onnx")
def onnx_model(args: dict) -> dict:
    """args: layers (None: all), runtime (auto | onnxruntime | openvino)."""
    import numpy as np

    from w2v_embed.frontends import frontend_for
    from w2v_embed.runtime import OnnxModel

    model = OnnxModel(args["model"], device=args["device"], threads=args["threads"],
                      runtime=args.get("runtime", "auto"))
    layers = args.get("layers") or list(range(model.info.num_layers + 1))
    x = clip(args)
    info = model.info
    front_end = None  # waveform models: the samples as they are, model-only (normalising them is negligible)
    if info.frontend != "waveform":  # w2v-BERT: the numpy fbank is part of every step, as transformers' is
        frontend = frontend_for(info.frontend, info.sample_rate, info.grid, info.do_normalize)

        def front_end():
            return frontend.prepare(x)

    def step() -> None:
        features = front_end() if front_end else x
        model.run(features[None], np.array([len(features)]), layers)

    return {**timed(step, args), "runtime": model.runtime.name, "frontend": _front_end_only(front_end, args)}


def _front_end_only(front_end, args: dict) -> float | None:
    """×real-time of the front end alone, where the step has one (measured with all layers only)."""
    return None if front_end is None or args.get("layers") else timed(front_end, args)["realtime"]


@child("corpus-model")
def corpus_model(args: dict) -> dict:
    from w2v_embed.audio import decode
    from w2v_embed.discover import discover
    from w2v_embed.embedder import EmbedOptions, Embedder

    embedder = Embedder(args["model"], device=args["device"], threads=args["threads"], options=EmbedOptions("all", "mean"))
    signals = [decode(f.path).samples for f in discover([args["corpus"]])]  # not timed
    audio = sum(len(x) for x in signals) / 16_000
    started = time.perf_counter()
    for _ in embedder.embed_stream(enumerate(signals)):
        pass
    wall = time.perf_counter() - started
    return dict(realtime=audio / wall, rss=peak_rss(), audio=audio, wall=wall)

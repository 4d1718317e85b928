"""Model-only ×real-time on one clip: transformers PyTorch eager, and w2v-embed's session (all layers or --layers 6)."""

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
    x = torch.from_numpy(clip(args)[None]).to(device)

    def step() -> None:
        with torch.inference_mode():
            model(x, output_hidden_states=True)
        if device == "cuda":
            torch.cuda.synchronize()

    return timed(step, args)


@child("onnx")
def onnx_model(args: dict) -> dict:
    """args: layers (None: all), runtime (auto | onnxruntime | openvino)."""
    import numpy as np

    from w2v_embed.runtime import OnnxModel

    model = OnnxModel(args["model"], device=args["device"], threads=args["threads"],
                      runtime=args.get("runtime", "auto"))
    layers = args.get("layers") or list(range(model.info.num_layers + 1))
    x = clip(args)
    lengths = np.array([len(x)])
    return {**timed(lambda: model.run(x[None], lengths, layers), args), "runtime": model.runtime.name}


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

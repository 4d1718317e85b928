"""How close default chunking comes to running a long file whole: cosine per layer, stitched vs unchunked.

    python scripts/chunking_report.py -m models/wav2vec2-german.onnx [--seconds 180]
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np

from w2v_embed.embedder import EmbedOptions, Embedder
from w2v_embed.export.verify import cosine_rows


def speech_like(seconds: float) -> np.ndarray:
    spec = importlib.util.spec_from_file_location("example", Path(__file__).with_name("make_example_audio.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pieces = [module.voiced(5.0, 16_000, 100 + 7 * (i % 11), i) for i in range(int(seconds // 5))]
    return np.concatenate(pieces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--chunk-seconds", type=float, default=EmbedOptions.chunk_seconds)
    parser.add_argument("--context-seconds", type=float, default=EmbedOptions.context_seconds)
    args = parser.parse_args()
    x = speech_like(args.seconds)
    whole = Embedder(args.model, device="cpu", options=EmbedOptions("all", "none", chunk_seconds=0))
    chunked = whole.with_options(chunk_seconds=args.chunk_seconds, context_seconds=args.context_seconds)
    a, b = whole.embed(x, 16_000), chunked.embed(x, 16_000)
    print(f"{args.model.name}: {args.seconds:g} s file, chunks of {args.chunk_seconds:g} s "
          f"+ {args.context_seconds:g} s context, {a[0].shape[0]} frames (equal: {a[0].shape == b[0].shape})")
    print("| layer | mean cosine | min cosine | frames with cosine < 0.99 |")
    print("|---:|---:|---:|---:|")
    for k in sorted(a):
        cos = cosine_rows(a[k], b[k])
        print(f"| {k} | {cos.mean():.5f} | {cos.min():.5f} | {(cos < 0.99).sum()} |")


if __name__ == "__main__":
    main()

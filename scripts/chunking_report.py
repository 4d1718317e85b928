"""How close each chunking candidate comes to running a long file whole, and how fast it runs.

Per candidate (seconds kept per chunk, context seconds each side, conv once): the cosine of every
frame, stitched vs unchunked, per layer (mean / min); with --throughput also the long file's
×real-time as a fraction of clips' (scripts/bench/chunking.py, interleaved rounds). Models: your
exports (-m), the tiny random-weight test models (--tiny) and a base-sized random-weight one (--base).
Random weights attend almost uniformly over the whole file: how much context they need is not a
trained model's, so their cosines bound the effect of chunking from the pessimistic side only.

    python scripts/chunking_report.py --tiny --base --throughput
    python scripts/chunking_report.py -m models/wav2vec2-german.onnx --candidates 20:2 20:1 20:2:conv
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.chunking import CANDIDATES, Candidate, ConvOnce, parse_candidate, speech_like, throughput_table  # noqa: E402
from w2v_embed.embedder import EmbedOptions, Embedder  # noqa: E402
from w2v_embed.export.verify import cosine_rows  # noqa: E402

DEFAULT = Candidate(EmbedOptions.chunk_seconds, EmbedOptions.context_seconds)
RANDOM_WEIGHTS = ("Random weights: attention is near uniform over the whole window, unlike a trained model's, "
                  "so these cosines show the size of chunking's effect, not its value on real features.")


def tiny_models(workdir: Path) -> list[Path]:
    """The tests' tiny checkpoints (group norm, base-like; stable layer norm, large-like), exported."""
    from w2v_embed.export import ExportOptions, export_model

    spec = importlib.util.spec_from_file_location("tiny", Path(__file__).with_name("make_tiny_checkpoint.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    paths = []
    for variant in ("group", "stable"):
        out = workdir / f"tiny-wav2vec2-{variant}.onnx"
        if not out.exists():
            checkpoint = module.make_checkpoint(workdir / f"tiny-{variant}", variant, family="wav2vec2")
            export_model(str(checkpoint), ExportOptions(output=out, overwrite=True))
        paths.append(out)
    return paths


def deviation(model: Path, candidates: list[Candidate], seconds: float, workdir: Path) -> dict[Candidate, list[np.ndarray]]:
    """Per candidate, per layer 0..L: each frame's cosine to the unchunked run's."""
    x = speech_like(seconds)
    whole = Embedder(model, device="cpu", options=EmbedOptions("all", "none", chunk_seconds=0))
    reference = whole.embed(x, 16_000)
    layers = sorted(k for k in reference if isinstance(k, int))
    conv_once = ConvOnce(model, workdir, whole.model.threads) if any(c.conv_once for c in candidates) else None
    out = {}
    for c in candidates:
        if c.conv_once:
            frames = conv_once.embed(x, c.chunk, c.context, pool=False)
        else:
            chunked = whole.with_options(chunk_seconds=c.chunk, context_seconds=c.context).embed(x, 16_000)
            frames = [chunked[k] for k in layers]
        out[c] = [cosine_rows(reference[k], f) for k, f in zip(layers, frames)]
    return out


def print_deviation(model: Path, seconds: float, cosines: dict[Candidate, list[np.ndarray]]) -> None:
    layers = len(next(iter(cosines.values())))
    print(f"\n{model.name}: {seconds:g} s speech-like file, cosine per frame of stitched vs unchunked, "
          "mean / min per layer\n")
    print("| candidate | " + " | ".join(f"layer {k}" for k in range(layers)) + " | frames < 0.99 (worst layer) |")
    print("|---|" + "---:|" * (layers + 1))
    for c, per_layer in cosines.items():
        cells = [f"{cos.mean():.5f} / {cos.min():.5f}" for cos in per_layer]
        below = max(int((cos < 0.99).sum()) for cos in per_layer)
        print(f"| {c} | " + " | ".join(cells) + f" | {below} of {len(per_layer[0])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", type=Path, action="append", default=[])
    parser.add_argument("--tiny", action="store_true", help="also the tiny random-weight test models")
    parser.add_argument("--base", nargs="*", choices=["base", "base-stable"], default=None,
                        help="also base-sized random-weight wav2vec2s (group norm; stable layer norm), exported once")
    parser.add_argument("--seconds", type=float, default=120.0, help="the long file (run whole: its attention is seconds² × 50² × heads × 4 bytes)")
    parser.add_argument("--candidates", nargs="+", default=CANDIDATES, help="CHUNK:CONTEXT[:conv] seconds")
    parser.add_argument("--throughput", action="store_true", help="also ×real-time vs clips, on the last model")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="w2v-chunking-"))
    workdir.mkdir(parents=True, exist_ok=True)
    models = list(args.model) + (tiny_models(workdir) if args.tiny else [])
    if args.base is not None:
        from bench.common import make_model

        models += [Path(make_model(size, workdir)[1]["path"]) for size in args.base or ["base", "base-stable"]]
    if not models:
        parser.error("give -m MODEL, --tiny or --base")
    candidates = [parse_candidate(c) for c in args.candidates]
    print(f"Candidates: chunk seconds kept + context seconds each side; the default is {DEFAULT}. {RANDOM_WEIGHTS}")
    for model in models:
        print_deviation(model, args.seconds, deviation(model, candidates, args.seconds, workdir))
    if args.throughput:
        from bench import peak

        cpu = f"{peak.cpu()}, {os.cpu_count()} cpus, {args.threads} threads"
        throughput_table(models[-1], candidates, args.rounds, args.clip_seconds, args.threads, workdir, cpu)


if __name__ == "__main__":
    main()

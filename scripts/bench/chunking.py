"""Long files as a fraction of clip throughput, per chunking candidate, in interleaved rounds.

A candidate is (chunk seconds kept, context seconds each side, conv once). "Conv once" is a prototype
measured here only: the exported graph split at the conv stack's output with `onnx` (the first graph
runs over the file in long pieces overlapping by one receptive field, the second only on the
transformer windows), to learn what running the conv stack once over a file would gain before it is
built into the export. Model-only, on a speech-like signal: a long file's steady state is its interior
chunks, so one interior chunk is timed per candidate (the file's first and last chunks have context on
one side only). Every round runs the clips right before each candidate, so both see the same load
(other work on shared cores comes in bursts); ratios are paired.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import Table, spread

# chunk seconds kept : context seconds each side [: conv once]; the first is the default's
CANDIDATES = ["30:1.5", "20:2", "20:1.5", "20:1", "20:0.5", "30:2", "30:1", "15:1", "10:1", "10:0.5", "20:2:conv"]
CONV_PIECE_SECONDS = 20.0  # conv-once: samples per conv run (its largest tensor is 2 kB per sample)


@dataclass(frozen=True)
class Candidate:
    chunk: float
    context: float
    conv_once: bool = False

    def __str__(self) -> str:
        return f"{self.chunk:g} s + {self.context:g} s context{', conv once' if self.conv_once else ''}"


def parse_candidate(text: str) -> Candidate:
    """CHUNK:CONTEXT[:conv], in seconds."""
    parts = text.split(":")
    return Candidate(float(parts[0]), float(parts[1]), len(parts) > 2 and parts[2] == "conv")


def speech_like(seconds: float) -> np.ndarray:
    """Voiced 5 s pieces of varying pitch (scripts/make_example_audio.py), `seconds` long."""
    path = Path(__file__).resolve().parents[1] / "make_example_audio.py"
    spec = importlib.util.spec_from_file_location("example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pieces = [module.voiced(5.0, 16_000, 100 + 7 * (i % 11), i) for i in range(int(np.ceil(seconds / 5)))]
    return np.concatenate(pieces)[: int(seconds * 16_000)]


def _conv_output(path: Path) -> str:
    """The tensor the conv stack hands the feature projection: the first node reading the projection's
    weights, or its LayerNorm's, takes it (transformers' module names survive the TorchScript export)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for node in model.graph.node:
        if any(name.startswith("model.feature_projection.layer_norm") for name in node.input):
            return node.input[0]
    for node in model.graph.node:
        if node.name == "/projection/MatMul":
            return node.input[0]
    raise ValueError(f"{path}: no feature projection found")


def split_model(path: Path, workdir: Path) -> tuple[Path, Path]:
    """(conv graph: input_values, lengths -> conv features; transformer graph: conv features, lengths -> states)."""
    import onnx
    from onnx.utils import extract_model

    cut = _conv_output(path)
    outputs = [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]
    conv, rest = workdir / f"{path.stem}.conv.onnx", workdir / f"{path.stem}.transformer.onnx"
    if not conv.exists():
        extract_model(str(path), str(conv), ["input_values", "lengths"], [cut])
        extract_model(str(path), str(rest), [cut, "lengths"], outputs)
    return conv, rest


class ConvOnce:
    """The prototype: conv features of a whole file in pieces, then the transformer on chunk windows."""

    def __init__(self, model: Path, workdir: Path, threads: int) -> None:
        import onnxruntime as ort

        from w2v_embed.runtime.base import ModelInfo
        from w2v_embed.graphcut import read_metadata

        self.info = ModelInfo.from_metadata(read_metadata(model))
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.enable_mem_pattern = False
        options.log_severity_level = 3
        conv, rest = split_model(model, workdir)
        self.conv = ort.InferenceSession(str(conv), options, providers=["CPUExecutionProvider"])
        self.rest = ort.InferenceSession(str(rest), options, providers=["CPUExecutionProvider"])
        self.cut = self.rest.get_inputs()[0].name
        self.outputs = [o.name for o in self.rest.get_outputs() if o.name != "last_hidden_state"]

    def features(self, signal: np.ndarray) -> np.ndarray:
        """[frames, C] conv features of the whole (normalised) signal, from pieces overlapping by one receptive field."""
        from w2v_embed.chunking import plan_chunks

        grid = self.info.grid
        pieces = plan_chunks(len(signal), grid, int(CONV_PIECE_SECONDS * 16_000 / grid.hop), 0)
        out = []
        for piece in pieces:
            x = signal[None, piece.start : piece.stop]
            out.append(self.conv.run([self.cut], {"input_values": x, "lengths": np.array([x.shape[1]])})[0][0])
        return np.concatenate(out)

    def embed(self, signal: np.ndarray, chunk: float, context: float, pool: bool) -> list[np.ndarray]:
        """Hidden states 0..L of a long signal: mean-pooled (D,) each, or frames [T, D]."""
        from w2v_embed.chunking import plan_chunks, seconds_to_frames
        from w2v_embed.frontends.waveform import normalize

        grid = self.info.grid
        x = normalize(signal) if self.info.do_normalize else np.asarray(signal, np.float32)
        feats = self.features(x)
        chunks = plan_chunks(len(x), grid, seconds_to_frames(chunk, grid, 16_000), seconds_to_frames(context, grid, 16_000))
        kept: list[list[np.ndarray]] = [[] for _ in self.outputs]
        for c in chunks:
            first, last = c.start // grid.hop, c.start // grid.hop + grid.num_frames(c.stop - c.start)
            feeds = {self.cut: feats[None, first:last], "lengths": np.array([c.stop - c.start])}
            for k, states in enumerate(self.rest.run(self.outputs, feeds)):
                kept[k].append(states[0, c.keep_start : c.keep_stop])
        frames = [np.concatenate(k) for k in kept]
        return [f.mean(axis=0) for f in frames] if pool else frames


def interior_vs_clips(model: Path, candidates: list[Candidate], rounds: int, clip_seconds: float, threads: int,
                      workdir: Path) -> dict[Candidate, list[float]]:
    """Per candidate, audio seconds kept per second of an interior chunk (context on both sides: what
    almost every chunk of an hours-long file is), over the clips' ×real-time in the same round.

    Clips run as extract batches them (20 s of audio per batch on CPU); a plain candidate runs its
    window (chunk + 2 × context) through the whole graph; conv once runs the conv graph over the
    chunk's own audio (the pieces of a file do not overlap beyond one receptive field) and the
    transformer graph over the window's conv features. Each timing is the best of two back to back, and the clips run
    again right before each candidate.
    All layers are computed, as for `--layers all` or `last`.
    """
    from w2v_embed.runtime import OnnxModel

    onnx = OnnxModel(model, device="cpu", threads=threads)
    layers = list(range(onnx.info.num_layers + 1))
    signal = speech_like(max(40.0, 2 * clip_seconds, *(c.chunk + 2 * c.context for c in candidates)))
    clip = int(clip_seconds * 16_000)
    rows = max(1, int(20.0 // clip_seconds))
    clips = (np.stack([signal[i * clip : (i + 1) * clip] for i in range(rows)]), np.full(rows, clip, np.int64))
    conv_once = ConvOnce(model, workdir, threads) if any(c.conv_once for c in candidates) else None

    def best(run) -> float:
        times = []
        for _ in range(2):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return min(times)

    def window_run(c: Candidate):
        n = int((c.chunk + 2 * c.context) * 16_000)
        x = signal[None, :n]
        if not c.conv_once:
            return lambda: onnx.run(x, np.array([n]), layers)
        feats = conv_once.conv.run([conv_once.cut], {"input_values": x, "lengths": np.array([n])})[0]
        piece = signal[None, : int(c.chunk * 16_000)]
        return lambda: (conv_once.conv.run([conv_once.cut], {"input_values": piece, "lengths": np.array([piece.shape[1]])}),
                        conv_once.rest.run(conv_once.outputs, {conv_once.cut: feats, "lengths": np.array([n])}))

    runs = {c: window_run(c) for c in candidates}
    ratios: dict[Candidate, list[float]] = {c: [] for c in candidates}
    for run in [lambda: onnx.run(*clips, layers), *runs.values()]:  # warm-up: arenas at every width
        run()
    for _ in range(rounds):
        for c, run in runs.items():  # the clips right before each candidate: other work on the cores comes in bursts
            clips_rt = rows * clip_seconds / best(lambda: onnx.run(*clips, layers))
            ratios[c].append(c.chunk / best(run) / clips_rt)
        print("# round: " + ", ".join(f"{c}: {r[-1]:.3f}" for c, r in ratios.items()), file=sys.stderr, flush=True)
    return ratios


def throughput_table(model: Path, candidates: list[Candidate], rounds: int, clip_seconds: float, threads: int,
                     workdir: Path, cpu: str) -> dict[Candidate, list[float]]:
    ratios = interior_vs_clips(model, candidates, rounds, clip_seconds, threads, workdir)
    table = Table(f"Long files: audio kept per second of an interior chunk / {clip_seconds:g} s clips' ×real-time in "
                  f"the same round, {model.name}, all layers; {rounds} interleaved rounds; {cpu}",
                  ["candidate", "fraction of clip throughput: min / median (±half-spread)", "median"])
    for c, values in ratios.items():
        table.row(str(c), spread(values), f"{statistics.median(values):.3f}")
    return ratios

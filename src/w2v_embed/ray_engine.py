"""The same job on a Ray cluster: decode tasks on CPU workers → an actor pool of Embedders → this process.

Ray Data streams the file list through `flat_map` (decoding and resampling as tasks, anywhere in the
cluster; close segments of one recording are one task) and `map_batches` with a class (actors that
each hold one ONNX Runtime session, created once), like Ray's batch-inference examples. Results come back to the driver, where `extract`'s one
FeatureWriter stores them: pooled rows are a few kB, and even frame-level rows (~150 kB per audio
second per layer for a base model) are far below what one writer takes in, so the output, resume
and crash safety are exactly a local run's. Actors are restarted and their batches retried when a
worker dies; a file delivered twice is stored once.

Needs the `ray` extra: pip install 'w2v-embed[ray]'.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .discover import AudioFile
from .embedder import Embedder, EmbedOptions
from .errors import W2VEmbedError
from .engine import Result, decode_group
from .extract import ExtractOptions
from .layers import dataset_name
from .ray_connect import RayOptions, connect, one_line_errors, require_ray
from .segments import close_groups

__all__ = ["RayEngine", "RayOptions"]


def _text(value: str) -> bytes:
    """File names and messages cross Arrow as bytes: names need not be UTF-8 (see discover)."""
    return value.encode("utf-8", "surrogateescape")


def _untext(value: bytes) -> str:
    return bytes(value).decode("utf-8", "surrogateescape")


def _decode_group(row: dict[str, Any], channel: int | None, rate: int, max_overshoot: float) -> list[dict[str, Any]]:
    """A Ray task: a file, or close segments of one recording (by their indices in the driver's list)
    → one row each of 16 kHz mono samples, or why it failed."""
    path, problem = Path(os.fsdecode(row["path"])), _untext(row["problem"]) or None
    segments = [(float(a), float(b)) if b >= 0 else None for a, b in zip(row["starts"], row["ends"])]
    files = [AudioFile(path, "", problem, segment) for segment in segments]
    rows = []
    for index, audio in zip(row["indices"], decode_group(files, channel, rate, max_overshoot)):
        if isinstance(audio, W2VEmbedError):
            rows.append({"index": index, "samples": np.zeros(0, np.float32), "source_rate": 0, "error": _text(str(audio))})
        else:
            rows.append({"index": index, "samples": audio.samples, "source_rate": audio.source_sample_rate, "error": b""})
    return rows


class _Embed:
    """An actor of the pool: holds one Embedder (one ONNX Runtime session) for its lifetime."""

    def __init__(self, model: str, options: EmbedOptions, device: str, threads: int, runtime: str) -> None:
        import ray

        self.embedder = Embedder(model, device=device, threads=threads, options=options, runtime=runtime)
        self.hidden = self.embedder.info.hidden_size
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys = [int(i) for i in batch["index"]]
        errors = [bytes(e) for e in batch["error"]]
        samples = list(batch["samples"])
        ok = [(key, np.asarray(x, np.float32)) for key, x, error in zip(keys, samples, errors) if not error]
        results = dict(self.embedder.embed_stream(ok))
        pool = self.embedder.options.pool
        width = 2 * self.hidden if pool == "meanstd" else self.hidden
        empty = np.zeros((0, width) if pool == "none" else (0,), np.float32)
        columns: dict[Any, list] = {layer: [] for layer in self.embedder.layers}
        for i, (key, error) in enumerate(zip(keys, errors)):
            result = results.get(key)
            if isinstance(result, W2VEmbedError):
                errors[i] = error = _text(str(result))
            for layer, column in columns.items():
                column.append(empty if error else result[layer])
        out = {
            "index": np.asarray(keys), "error": np.asarray(errors, dtype=object), "node": np.asarray([self.node] * len(keys)),
            "runtime": np.asarray([self.embedder.model.runtime.name] * len(keys)),
            "num_samples": np.asarray([len(x) for x in samples]), "source_rate": np.asarray(batch["source_rate"]),
        }
        out.update({dataset_name(layer): _column(column) for layer, column in columns.items()})
        return out


def _column(values: list[np.ndarray]) -> np.ndarray:
    """One array per row: stacked when all have one shape, else an object array (frame-level rows)."""
    if len({v.shape for v in values}) == 1:
        return np.stack(values)
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


class RayEngine:
    """Decoding as Ray tasks, inference in an actor pool; `extract(..., engine=RayEngine(...))`."""

    def __init__(self, embedder: Embedder, model: str | Path, device: str, options: RayOptions = RayOptions()) -> None:
        self.embedder = embedder  # this process's: checks the model and the options before anything is sent
        self.model, self.device, self.options = str(Path(model).resolve()), device, options
        self.nodes: Counter[str] = Counter()  # files embedded per Ray node, for the curious (and the tests)
        self.runtimes: Counter[str] = Counter()  # files embedded per runtime the actors ran

    def results(self, files: list[AudioFile], options: ExtractOptions, frame_sink: object = None) -> Iterator[Result]:
        """Frame-level rows come back whole from the actors (the sink is not used across processes)."""
        if not files:
            return
        ray = require_ray()
        connect(self.options)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # extract reports progress itself; Ray Data would log it again
        context.wait_for_min_actors_s = self.options.start_timeout_s  # the whole pool starts before files are
        # handed out, so the first actor to load the model does not take every batch while the others start
        pool = self.options
        rows = [{"indices": group, "path": os.fsencode(Path(files[group[0]].path).resolve()),
                 "problem": _text(files[group[0]].problem or ""),
                 "starts": [files[i].segment[0] if files[i].segment else 0.0 for i in group],
                 "ends": [files[i].segment[1] if files[i].segment else -1.0 for i in group]}
                for group in close_groups(files)]
        data = (
            ray.data.from_items(rows)
            .flat_map(_decode_group, fn_kwargs={"channel": options.channel, "rate": self.embedder.info.sample_rate,
                                                "max_overshoot": options.max_overshoot})
            .map_batches(
                _Embed,
                fn_constructor_args=(self.model, self.embedder.options, self.device, pool.threads_per_actor,
                                     self.embedder.model.requested[1]),  # the runtime asked for (--runtime)
                batch_size=pool.files_per_batch,
                compute=ray.data.ActorPoolStrategy(size=pool.actors),
                num_cpus=pool.threads_per_actor,
                num_gpus=pool.gpus_per_actor or None,
                resources=pool.resources_per_actor,  # actors are restarted and batches retried: Ray Data's default
            )
        )
        layers = self.embedder.layers
        for batch in one_line_errors(data.iter_batches(batch_size=None, batch_format="numpy")):
            self.nodes.update(str(n) for n in batch["node"])
            self.runtimes.update(str(r) for r in batch["runtime"])
            for i, index in enumerate(batch["index"]):
                file = files[int(index)]
                error = _untext(batch["error"][i])
                num_samples, rate = int(batch["num_samples"][i]), int(batch["source_rate"][i])
                if error:  # the worker saw the resolved path: say the file as a local run does
                    yield Result(file.name, num_samples, rate, error=error.replace(str(Path(file.path).resolve()), str(file.path)))
                else:
                    yield Result(file.name, num_samples, rate, {k: np.asarray(batch[dataset_name(k)][i]) for k in layers})

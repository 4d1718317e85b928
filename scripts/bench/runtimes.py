"""ONNX Runtime vs OpenVINO on the same export, and start-up with and without the cache, in interleaved rounds."""

from __future__ import annotations

import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

from .common import Table, child, interleaved, paired, peak_rss, run_child, spread


def compare_runtimes(models: dict[str, Path], base: dict, rounds: int) -> None:
    """Model-only, all layers: each round runs ORT then OpenVINO (each in a fresh process, start-up excluded),
    so both see the same load; the ratio is paired per round."""
    table = Table(f"ONNX Runtime vs OpenVINO, model-only, all layers, {base['clip_seconds']:g} s clip, "
                  f"{rounds} interleaved rounds (×real-time min / median (±half-spread))",
                  ["precision", "ONNX Runtime", "OpenVINO", "OpenVINO / ORT per round (min / median)"])
    for precision, model in models.items():
        seen = interleaved({runtime: partial(_best, {**base, "model": str(model), "runtime": runtime})
                            for runtime in ("onnxruntime", "openvino")}, rounds)
        table.row(precision, spread(seen["onnxruntime"]), spread(seen["openvino"]),
                  paired(seen["openvino"], seen["onnxruntime"]))


def _best(args: dict) -> float:
    return run_child("onnx", args)["best"]


def compare_startup(model: Path, base: dict, rounds: int) -> None:
    """Seconds from OnnxModel() to a session ready for all layers, in a fresh process: no cache, then the
    cache filled by an earlier run; per runtime, interleaved."""
    table = Table(f"Start-up ({model.name}, {rounds} interleaved rounds, seconds min / median (±half-spread))",
                  ["runtime", "without cache", "with the cache", "with / without per round (median)"])
    cache = tempfile.mkdtemp(prefix="w2v-bench-cache-")
    for runtime in ("onnxruntime", "openvino"):
        args = {**base, "model": str(model), "runtime": runtime}
        run_child("startup", args, env={"W2V_EMBED_CACHE": cache})  # fills the cache
        seen = interleaved({where: partial(_startup_seconds, args, where) for where in ("off", cache)}, rounds)
        cold, warm = seen["off"], seen[cache]
        table.row(runtime, spread(cold), spread(warm), f"{statistics.median(w / c for c, w in zip(cold, warm)):.2f}")


def _startup_seconds(args: dict, cache: str) -> float:
    return run_child("startup", args, env={"W2V_EMBED_CACHE": cache})["seconds"]


@child("startup")
def startup(args: dict) -> dict:
    started = time.perf_counter()
    from w2v_embed.runtime import OnnxModel

    model = OnnxModel(args["model"], device=args["device"], threads=args["threads"], runtime=args["runtime"])
    model.prepare(model.info.num_layers)
    return dict(seconds=time.perf_counter() - started, rss=peak_rss(), runtime=model.runtime.name)

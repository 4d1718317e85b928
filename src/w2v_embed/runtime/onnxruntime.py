"""ONNX Runtime: the default runtime, CPU or CUDA."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UsageError, W2VEmbedError
from ..graphcut import cut_model
from .cache import cache_dir, entry_key, publish, temporary, touch

if TYPE_CHECKING:
    from .base import Graph

CUDA_HELP = (
    "install the GPU runtime instead of the CPU one: pip uninstall -y onnxruntime && pip install onnxruntime-gpu "
    "(today's wheels are built for CUDA 13; with CUDA 12 pin 'onnxruntime-gpu<1.27'; both need cuDNN 9: docs/scaling.md)"
)


def select_providers(device: str) -> list[str]:
    """ONNX Runtime execution providers for --device auto|cpu|cuda."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise W2VEmbedError(f"--device cuda: this onnxruntime has no CUDA provider; {CUDA_HELP}")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto":
        return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]
    raise UsageError(f"--device {device}: expected auto, cpu or cuda")


def _check_loadable(path: Path) -> None:
    """Say "truncated or corrupt" for a file that ONNX Runtime cannot parse, rather than "not a w2v-embed model"."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a bad file
        raise W2VEmbedError(
            f"{path}: truncated or corrupt ONNX file ({path.stat().st_size} bytes; {str(exc).splitlines()[0]}); "
            "copy or export it again"
        ) from exc


class OrtSession:
    """An ONNX Runtime InferenceSession behind the Session interface."""

    def __init__(self, session: object) -> None:
        self.session = session
        self.outputs = frozenset(o.name for o in session.get_outputs())
        self.device = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"

    def run(self, names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(list(names), feeds)


class OrtRuntime:
    """ONNX Runtime on CPU or CUDA; on CPU the optimised graph is cached (see runtime/cache.py)."""

    name = "onnxruntime"

    def __init__(self, device: str) -> None:
        self.providers = select_providers(device)
        self.requested_device = device

    def load(self, graph: Graph) -> OrtSession:
        """A session computing `graph.outputs` (None: all), from the cache where an entry fits."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = graph.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Memory patterns are planned per input shape and kept: with chunks of a few different widths
        # they pushed a 5-minute file to 1.9 GB; without them the arena stays at its largest batch.
        options.enable_mem_pattern = False
        entry = self._cache_entry(graph)
        session = self._cached(entry, options) if entry is not None and entry.is_file() else None
        if session is None:
            session = self._build(graph, options, entry)
        if self.requested_device == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
            raise W2VEmbedError(f"--device cuda: the CUDA provider could not start (no GPU visible?); {CUDA_HELP}")
        return OrtSession(session)

    def _cache_entry(self, graph: Graph) -> Path | None:
        """Only CPU sessions of models in one file: CUDA graphs are not portable, >2 GB ones cannot be saved."""
        import onnxruntime as ort

        if graph.external_data or self.providers != ["CPUExecutionProvider"]:
            return None
        folder = cache_dir(self.name)
        if folder is None:
            return None
        key = entry_key(model=graph.sha256(), runtime=f"onnxruntime {ort.__version__}", outputs=graph.outputs,
                        providers=self.providers, threads=graph.threads, level="all", mem_pattern=False)
        return folder / f"{key}.onnx"

    def _cached(self, entry: Path, options: object) -> object | None:
        """The saved graph, already optimised; an entry that fails to load is removed (and rebuilt)."""
        import onnxruntime as ort

        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            session = ort.InferenceSession(str(entry), options, providers=self.providers)
        except Exception:  # a damaged entry: onnxruntime raises its own exception types
            entry.unlink(missing_ok=True)
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            return None
        touch(entry)
        return session

    def _build(self, graph: Graph, options: object, entry: Path | None) -> object:
        """Optimise the model (or its cut) and, with a cache, save the optimised graph for the next run."""
        import onnxruntime as ort

        if graph.outputs is None:
            model: str | bytes = str(graph.path)
        else:
            model = cut_model(graph.path.read_bytes(), list(graph.outputs))
            # A model loaded from bytes finds its external data file only when told where it lives.
            options.add_session_config_entry(
                "session.model_external_initializers_file_folder_path", str(graph.path.resolve().parent)
            )
        if entry is None:
            return self._session(graph, model, options)
        written = temporary(entry.parent, entry.name)
        options.optimized_model_filepath = str(written)
        try:
            session = self._session(graph, model, options)
        except W2VEmbedError:  # perhaps only the saving failed (a full disk): a bad model fails again below
            written.unlink(missing_ok=True)
            options.optimized_model_filepath = ""
            return self._session(graph, model, options)
        try:
            publish(written, entry)
        except OSError:  # a full or vanished cache folder costs the next run its start-up, nothing more
            written.unlink(missing_ok=True)
        return session

    def _session(self, graph: Graph, model: str | bytes, options: object) -> object:
        import onnxruntime as ort

        try:
            return ort.InferenceSession(model, options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            raise W2VEmbedError(f"{graph.path}: cannot load the ONNX model ({str(exc).splitlines()[0]})") from exc

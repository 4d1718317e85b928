"""OpenVINO: runs the same exported ONNX on CPU (the 'openvino' extra); faster than ONNX Runtime in float32 here.

Compiled graphs are cached by OpenVINO itself (its CACHE_DIR), in a folder per OpenVINO version and CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import openvino  # ImportError without the extra: runtime/select.py falls back to ONNX Runtime

from ..errors import W2VEmbedError
from .base import Graph
from .cache import cache_dir, entry_key


class OpenVinoSession:
    """A compiled model and its one infer request behind the Session interface."""

    device = "cpu"

    def __init__(self, compiled: openvino.CompiledModel) -> None:
        self.request = compiled.create_infer_request()
        self.ports = {name: port for port in compiled.outputs for name in port.get_names()}
        self.outputs = frozenset(self.ports)

    def run(self, names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        # share_outputs: the request's buffers are read without a copy, then only the asked-for ones are copied
        results = self.request.infer(feeds, share_inputs=True, share_outputs=True)
        return [np.array(results[self.ports[name]]) for name in names]


class OpenVinoRuntime:
    """OpenVINO's CPU plugin in float32 (no bf16 down-casting), one stream of `threads` threads."""

    name = "openvino"

    def __init__(self) -> None:
        self.core = openvino.Core()
        folder = cache_dir(self.name)
        if folder is not None:  # OpenVINO keys its blobs by model and config; the folder adds version and CPU
            key = entry_key(runtime=f"openvino {openvino.get_version()}")
            (folder / key).mkdir(exist_ok=True)
            self.core.set_property({"CACHE_DIR": str(folder / key)})

    def load(self, graph: Graph) -> OpenVinoSession:
        config = {"INFERENCE_NUM_THREADS": graph.threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "f32"}
        try:
            if graph.outputs is None:
                model: str | openvino.Model = str(graph.path)  # compiled from the path: the cache skips reading it
            else:
                full = self.core.read_model(str(graph.path))
                # Only what the kept outputs depend on is compiled: the graph cut after layer `upto`.
                model = openvino.Model([full.output(name) for name in graph.outputs], full.get_parameters())
            compiled = self.core.compile_model(model, "CPU", config)
        except RuntimeError as exc:  # OpenVINO reports a bad file or unsupported op as RuntimeError
            raise W2VEmbedError(f"{graph.path}: OpenVINO cannot load the model ({str(exc).splitlines()[0]}); "
                                "try --runtime onnxruntime") from exc
        return OpenVinoSession(compiled)

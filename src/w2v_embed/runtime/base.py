"""An exported model and what `extract` needs from its metadata; the runtimes that run it live beside this.

The ONNX contract: inputs `input_values` float32 [batch, samples] (or, for the fbank front end,
`input_features` [batch, frames, 160]) and `lengths` int64 [batch] (valid samples or frames);
outputs `hidden_state_0` … `hidden_state_L` and `last_hidden_state`, each [batch, frames, hidden];
`metadata_props`
describe the model so that no checkpoint is needed at extraction time.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Protocol

import numpy as np

from ..architecture import metadata_problem
from ..chunking import FrameGrid
from ..errors import UsageError, W2VEmbedError
from ..graphcut import read_metadata
from ..layers import LAST, Layer, depth, output_name
from .cache import files_sha256

INPUT_NAMES = ("input_values", "lengths")
METADATA_PREFIX = "w2v_embed."
MODELS_DIR = Path("models")


@dataclass(frozen=True)
class ModelInfo:
    """What an exported model tells about itself (stored as `metadata_props`)."""

    source: str
    revision: str
    model_type: str
    num_layers: int
    hidden_size: int
    conv_kernel: tuple[int, ...]
    conv_stride: tuple[int, ...]
    do_normalize: bool
    feat_extract_norm: str
    do_stable_layer_norm: bool
    exporter_version: str
    weights_sha256: str
    sample_rate: int = 16000
    subfolder: str = ""  # where in the source repository the weights were
    external_data: str = ""  # file beside the .onnx with the weights (models over 2 GB); "" = inline
    external_data_tag: str = ""  # the data file's last bytes: proves it belongs to this .onnx
    precision: str = "float32"  # float32 | int8 (MatMul weights quantized) | float16 (for CUDA)
    adapter: str = ""  # MMS: the language adapter exported (export --adapter); "" = the main file's
    frontend: str = "waveform"  # what the model eats: waveform (input_values) | fbank (input_features, w2v-BERT)

    @property
    def input_name(self) -> str:
        """The graph's first input, named for what the front end feeds it."""
        return "input_features" if self.frontend == "fbank" else INPUT_NAMES[0]

    @property
    def grid(self) -> FrameGrid:
        return FrameGrid(self.conv_kernel, self.conv_stride)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.grid.hop

    @property
    def frame_center_offset(self) -> float:
        """Seconds from the start of the audio to the centre of frame 0."""
        return self.grid.receptive_field / 2 / self.sample_rate

    def to_metadata(self) -> dict[str, str]:
        values = asdict(self)
        values.update(frame_hop=self.grid.hop, receptive_field=self.grid.receptive_field)
        return {METADATA_PREFIX + k: json.dumps(v) for k, v in values.items()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], where: str = "model") -> ModelInfo:
        values = {}
        for field in fields(cls):
            key = METADATA_PREFIX + field.name
            if key not in metadata and field.default is not MISSING:
                continue
            if key not in metadata:
                raise W2VEmbedError(f"{where}: not a w2v-embed model (metadata {key} missing); export it with w2v-embed export")
            try:
                value = json.loads(metadata[key])
            except ValueError:
                value = metadata[key]  # not JSON: metadata_problem names it
            values[field.name] = tuple(value) if isinstance(value, list) else value
        problem = metadata_problem(values, {field.name: field.type for field in fields(cls)})
        if problem:
            raise W2VEmbedError(f"{where}: the model's metadata is invalid ({problem}); export the model again")
        return cls(**values)


def default_threads() -> int:
    """Physical-ish cores available to this process: ONNX Runtime scales badly onto SMT siblings."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:
        return max(os.cpu_count() or 1, 1)


def _check_threads(threads: int) -> int:
    """Refuse what cannot help: far more threads than cores only contend (1000 ran 60x slower)."""
    most = 4 * (os.cpu_count() or 1)
    if not 1 <= threads <= most:
        raise UsageError(f"--threads {threads}: expected 1..{most} (this machine has {os.cpu_count()} cores)")
    return threads


def default_model_path() -> Path:
    """$W2V_EMBED_MODEL, else the one model that `w2v-embed export` wrote under models/."""
    env = os.environ.get("W2V_EMBED_MODEL")
    if env:
        return Path(env)
    found = sorted(p for p in MODELS_DIR.glob("*.onnx") if not p.name.startswith("."))
    if len(found) == 1:
        return found[0]
    if not found:
        raise W2VEmbedError(
            "no model given and none under models/; export one first: w2v-embed export flax-community/wav2vec2-german"
        )
    names = ", ".join(str(p) for p in found)
    raise W2VEmbedError(f"several models under models/ ({names}); pick one with -m or $W2V_EMBED_MODEL")


def check_external_data(path: Path, info: ModelInfo) -> None:
    """A model over 2 GB keeps its weights in a data file beside it, which must be whole and its own."""
    if not info.external_data:
        return
    data = path.parent / info.external_data
    tag = info.external_data_tag.encode()
    try:
        with open(data, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(size - len(tag), 0))
            ok = fh.read() == tag
    except FileNotFoundError as exc:
        raise W2VEmbedError(
            f"{path}: its weights file {data.name} is missing; keep (and move) both files together"
        ) from exc
    if not ok:
        raise W2VEmbedError(
            f"{path}: its weights file {data.name} is truncated or belongs to another export; "
            "copy both files again, or export the model again"
        )


@dataclass(frozen=True)
class Graph:
    """What a runtime loads: the exported file, cut to `outputs` (None: whole), run on `threads` threads."""

    path: Path
    outputs: tuple[str, ...] | None
    threads: int
    external_data: bool
    sha256: Callable[[], str]  # of the file(s); asked only by a cache (hashing costs ~0.3 s a GB)


class Session(Protocol):
    """One loaded graph, ready to run: what every runtime hands OnnxModel."""

    device: str  # where it runs: cpu | cuda
    outputs: frozenset[str]  # the names it can be asked for

    def run(self, names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


class Runtime(Protocol):
    """An inference engine that loads Graphs (runtime/onnxruntime.py, runtime/openvino.py)."""

    name: str

    def load(self, graph: Graph) -> Session: ...


class OnnxModel:
    """An exported wav2vec2 model; one session per depth, so `--layers 6` stops at layer 6.

    `runtime` is auto | onnxruntime | openvino (see runtime/select.py); `note` says why the one asked for
    is not the one used (for the CLI to show), else is None.
    """

    def __init__(
        self, path: str | Path, device: str = "auto", threads: int | None = None, runtime: str = "auto"
    ) -> None:
        from .onnxruntime import _check_loadable
        from .select import open_runtime

        self.path = Path(path)
        if not self.path.is_file():
            raise W2VEmbedError(f"{self.path}: model not found; create one with: w2v-embed export SOURCE")
        self.requested = (device, runtime)  # as asked: what a pickled Embedder asks for again
        self.threads = default_threads() if threads is None else _check_threads(threads)
        try:
            self.info = ModelInfo.from_metadata(read_metadata(self.path), str(self.path))
        except ValueError as exc:
            raise W2VEmbedError(f"{self.path}: not an ONNX model ({exc})") from exc
        except W2VEmbedError:
            _check_loadable(self.path)  # metadata is stored last: a truncated copy loses it first
            raise
        check_external_data(self.path, self.info)
        self.runtime, self.note = open_runtime(runtime, device, self.info.precision)
        self.sessions: dict[int, Session] = {}

    @functools.cached_property
    def sha256(self) -> str:
        """Of the file itself (and its external data file), as loaded: the metadata's weights hash is the
        checkpoint's, the same for its int8 and float16 exports and for a copy with damaged bytes."""
        files = [self.path] + ([self.path.parent / self.info.external_data] if self.info.external_data else [])
        return files_sha256(files)

    @property
    def device(self) -> str:
        session = next(iter(self.sessions.values()), None) or self.prepare(self.info.num_layers)
        return session.device

    def prepare(self, upto: int) -> Session:
        """The session that computes hidden states 0..upto (the full graph cut after layer `upto`)."""
        if upto not in self.sessions:
            outputs = None if upto >= self.info.num_layers else tuple(output_name(k) for k in range(upto + 1))
            graph = Graph(self.path, outputs, self.threads, bool(self.info.external_data), lambda: self.sha256)
            self.sessions[upto] = self.runtime.load(graph)
        return self.sessions[upto]

    def release(self, keep: int) -> None:
        """Drop every session but the one for 0..keep: the memory of graphs no longer run."""
        self.sessions = {upto: session for upto, session in self.sessions.items() if upto == keep}

    def run(self, input_values: np.ndarray, lengths: np.ndarray, layers: Sequence[Layer]) -> dict[Layer, np.ndarray]:
        """Hidden states [batch, frames, hidden] for the requested layers, computed no deeper than needed."""
        numbered = [k for k in layers if k != LAST]
        if not layers or any(not isinstance(k, int) or not 0 <= k <= self.info.num_layers for k in numbered):
            raise W2VEmbedError(f"{self.path}: layers {list(layers)} not in 0..{self.info.num_layers} or last")
        session = self.prepare(depth(layers, self.info.num_layers))
        feeds = {  # input_values [batch, samples], or input_features [batch, frames, dims] for the fbank front end
            self.info.input_name: np.ascontiguousarray(input_values, dtype=np.float32),
            "lengths": np.asarray(lengths, dtype=np.int64),
        }
        return dict(zip(layers, session.run([self._output(k, session) for k in layers], feeds)))

    def _output(self, layer: Layer, session: Session) -> str:
        """Models exported before `last_hidden_state` existed have it only where it equals layer L."""
        name = output_name(layer)
        if layer != LAST or name in session.outputs:
            return name
        if not self.info.do_stable_layer_norm:
            return output_name(self.info.num_layers)
        raise W2VEmbedError(
            f"{self.path}: exported by w2v-embed {self.info.exporter_version}, without last_hidden_state "
            "(for this stable-layer-norm model it differs from layer L); export it again"
        )

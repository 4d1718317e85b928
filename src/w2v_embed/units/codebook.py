"""Codebooks: what turns a layer's frames into discrete units, from whichever file holds them.

- our KM file (`w2v-embed kmeans -o km.npz`): centroids plus what they were fitted on (model sha256,
  layer, K, engine, sample, seed), an .npz that numpy reads without pickle;
- a bare `.npy` of (K, D) centroids (the layer must then be given);
- a faiss index (`.index`/`.faiss`): flat → the nearest stored vector's id; IVF, also behind a pre-transform
  such as OPQ → the coarse list after the transform (how mHuBERT-147's faiss index is used);
- a pickled scikit-learn/joblib `km.bin` (fairseq's simple_kmeans, textlesslib): loading a pickle runs
  code, so it is refused unless trusted explicitly; `w2v-embed convert-km` turns it into a KM file once.

Units are argmin ‖x − c‖², computed like fairseq's ApplyKmeans as one matrix product per batch with
‖c‖² precomputed (‖x‖² is the same for every centroid, so it does not change the argmin).
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .. import __version__
from ..errors import UsageError, W2VEmbedError
from ..layers import Layer, from_text

KM_FORMAT = "w2v-embed-km/1"
FAISS_SUFFIXES = (".index", ".faiss")
PICKLE_SUFFIXES = (".bin", ".pkl", ".pickle", ".joblib")
ASSIGN_ROWS = 4096  # frames per matrix product: 4096 × K floats of distances at a time


def needs_extra(what: str) -> W2VEmbedError:
    return W2VEmbedError(f"{what} needs the 'units' extra: pip install 'w2v-embed[units]'")


@dataclass(frozen=True)
class KMInfo:
    """What a KM file records beside its centroids ("" / 0 where unknown, e.g. converted files)."""

    layer: Layer
    k: int
    dim: int
    model_sha256: str = ""  # the ONNX model's weights sha256 (Embedder.info.weights_sha256)
    model: str = ""
    engine: str = ""  # faiss | sklearn | converted
    sample_frames: int = 0
    sample_hours: float = 0.0  # --sample-hours asked for (0: not used)
    sample_fraction: float = 0.0  # --sample-fraction asked for (0: not used)
    seed: int = 0
    source: str = ""  # what it was fitted on or converted from
    created_by: str = f"w2v-embed {__version__}"
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    format: str = KM_FORMAT

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "layer": str(self.layer)})

    @classmethod
    def from_json(cls, text: str) -> KMInfo:
        values = json.loads(text)
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in values.items() if k in known}
        return cls(**{**values, "layer": from_text(values["layer"])})


class Codebook(Protocol):
    """frames (T, D) of one layer → units (T,)."""

    k: int
    dim: int
    layer: Layer | None  # None: the file does not say (a bare .npy, a faiss index, a pickle)
    info: KMInfo | None  # our KM file's metadata

    def assign(self, frames: np.ndarray) -> np.ndarray: ...


class Centroids:
    """argmin ‖x − c‖² over (K, D) centroids, numpy only."""

    def __init__(self, centroids: np.ndarray, layer: Layer | None = None, info: KMInfo | None = None) -> None:
        c = np.asarray(centroids)
        if c.ndim != 2 or c.shape[0] < 1 or not np.issubdtype(c.dtype, np.floating):
            raise W2VEmbedError(f"centroids: expected a (K, D) float array, got {c.dtype} {c.shape}")
        self.centroids = np.ascontiguousarray(c, np.float32)
        self.k, self.dim = self.centroids.shape
        self.layer, self.info = layer, info
        self._minus_2ct = -2.0 * self.centroids.T
        self._c2 = (self.centroids**2).sum(axis=1)

    def assign(self, frames: np.ndarray) -> np.ndarray:
        x = _frames(frames, self.dim)
        out = np.empty(len(x), np.int64)
        for start in range(0, len(x), ASSIGN_ROWS):
            part = x[start : start + ASSIGN_ROWS]
            out[start : start + len(part)] = np.argmin(part @ self._minus_2ct + self._c2, axis=1)
        return out


class FaissCodebook:
    """A faiss index: flat → nearest vector id; IVF (after its pre-transforms) → coarse list id."""

    def __init__(self, index: Any, faiss: Any) -> None:
        self.faiss, self.index = faiss, index
        self.layer, self.info = None, None
        self.dim = index.d
        self.transforms: list[Any] = []
        ivf = None
        inner = faiss.downcast_index(index)
        if isinstance(inner, faiss.IndexPreTransform):
            self.transforms = [faiss.downcast_VectorTransform(inner.chain.at(i)) for i in range(inner.chain.size())]
            inner = faiss.downcast_index(inner.index)
        try:
            ivf = faiss.extract_index_ivf(inner)
        except RuntimeError:  # not an IVF index
            ivf = None
        if ivf is not None:
            self.search, self.k = ivf.quantizer, ivf.nlist
        elif self.transforms:
            raise W2VEmbedError("faiss index: a pre-transform over a non-IVF index is not a codebook w2v-embed knows")
        else:
            self.search, self.k = index, index.ntotal
        if self.k < 1:
            raise W2VEmbedError("faiss index: it holds no vectors (an untrained or empty index)")

    def assign(self, frames: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(_frames(frames, self.dim), np.float32)
        for transform in self.transforms:
            x = transform.apply(x)
        _, labels = self.search.search(x, 1)
        return labels[:, 0].astype(np.int64)


def _frames(frames: np.ndarray, dim: int) -> np.ndarray:
    x = np.asarray(frames, np.float32)
    if x.ndim != 2 or x.shape[1] != dim:
        raise W2VEmbedError(f"frames of shape {x.shape} do not fit a codebook of dimension {dim}")
    return x


def load_codebook(path: str | Path, trust_pickle: bool = False) -> Codebook:
    """Open any codebook file w2v-embed knows (see the module docstring), by its content and suffix."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--units {path}: no such file")
    if path.suffix.lower() in FAISS_SUFFIXES:
        return _load_faiss(path)
    with path.open("rb") as f:
        magic = f.read(6)
    if magic.startswith(b"PK"):
        return _load_km(path)
    if magic == b"\x93NUMPY":
        return Centroids(np.load(path, allow_pickle=False))
    if magic[:1] == b"\x80" or path.suffix.lower() in PICKLE_SUFFIXES:
        if not trust_pickle:
            raise W2VEmbedError(
                f"{path} is a pickle (fairseq/textlesslib km.bin): loading it runs any code it holds; if you trust "
                f"it, pass --trust-pickle, or convert it once: w2v-embed convert-km {path} -o km.npz --layer L --trust-pickle"
            )
        return Centroids(_pickled_centroids(path))
    raise W2VEmbedError(f"{path}: not a codebook (expected a KM .npz, a .npy of centroids, a faiss .index or a km.bin)")


def _load_km(path: Path) -> Centroids:
    try:
        with np.load(path, allow_pickle=False) as data:
            info = KMInfo.from_json(str(data["info"][()]))
            centroids = data["centroids"]
    except (KeyError, ValueError, zipfile.BadZipFile, json.JSONDecodeError, TypeError) as exc:
        raise W2VEmbedError(f"{path}: not a w2v-embed KM file ({exc})") from exc
    return Centroids(centroids, info.layer, info)


def _load_faiss(path: Path) -> FaissCodebook:
    try:
        import faiss
    except ImportError:
        raise needs_extra(f"{path}: a faiss index") from None
    try:
        index = faiss.read_index(os.fspath(path))
    except RuntimeError as exc:
        raise W2VEmbedError(f"{path}: not a faiss index faiss can read") from exc
    return FaissCodebook(index, faiss)


def _pickled_centroids(path: Path) -> np.ndarray:
    """A trusted pickle's k-means centroids (scikit-learn's cluster_centers_, or a bare array)."""
    try:
        import joblib

        model = joblib.load(path)
    except ImportError:
        import pickle

        with path.open("rb") as f:
            model = pickle.load(f)  # noqa: S301 (trusted explicitly by the user)
    centroids = getattr(model, "cluster_centers_", model)
    if not isinstance(centroids, np.ndarray):
        raise W2VEmbedError(f"{path}: the pickle holds a {type(model).__name__}, not k-means centroids")
    return centroids


def save_km(path: str | Path, centroids: np.ndarray, info: KMInfo) -> Path:
    """Write a KM file (whole or absent: a temporary name, then a rename)."""
    path = Path(path)
    c = np.ascontiguousarray(centroids, np.float32)
    if c.shape != (info.k, info.dim):
        raise W2VEmbedError(f"centroids {c.shape} do not match K={info.k}, D={info.dim}")
    buffer = io.BytesIO()
    np.savez(buffer, centroids=c, info=np.array(info.to_json()))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return path


def layer_for(codebook: Codebook, given: tuple[Layer, ...] | None, path: str | Path) -> Layer:
    """The layer a run assigns: the KM file's own, or exactly one given by --layers for other files."""
    if codebook.layer is not None:
        if given and tuple(given) != (codebook.layer,):
            raise UsageError(f"--units {path} was fitted on layer {codebook.layer}; --layers asks for {list(given)}")
        return codebook.layer
    if not given or len(given) != 1:
        raise UsageError(f"--units {path} does not say which layer it was fitted on: give exactly one --layers L")
    return given[0]


def check_model(codebook: Codebook, weights_sha256: str, path: str | Path) -> None:
    """Units of another model's layer are meaningless: a KM file fitted on a different model is refused."""
    fitted = codebook.info.model_sha256 if codebook.info else ""
    if fitted and weights_sha256 and fitted != weights_sha256:
        model = f" ({codebook.info.model})" if codebook.info and codebook.info.model else ""
        raise W2VEmbedError(
            f"--units {path} was fitted on another model{model}, weights sha256 {fitted[:12]}…; "
            f"this model's is {weights_sha256[:12]}…"
        )


__all__ = ["Centroids", "Codebook", "FaissCodebook", "KMInfo", "check_model", "layer_for", "load_codebook", "save_km"]

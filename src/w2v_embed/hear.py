"""HEAR 2021 API (https://hearbenchmark.com/hear-api.html) over an exported model, so
`hear-validator w2v_embed.hear --model M.onnx` and HEAR's evaluation kit run it by module name.

- `load_model(model_file_path="", layer=None)`: the .onnx file ("" = $W2V_EMBED_MODEL, else the one
  under models/); the layer is `layer`, else $W2V_EMBED_LAYER, else "last" (last_hidden_state, the
  README's default), a number being transformers' hidden_states numbering.
- `get_timestamp_embeddings(audio, model)`: (n_sounds, samples) at 16 kHz → the layer's frames
  (n_sounds, frames, D) and their centres in milliseconds (12.5, 32.5, … : one frame every 20 ms).
- `get_scene_embeddings(audio, model)`: the mean of those frames, (n_sounds, D).

Audio and results are torch tensors, as the API and the validator pass and expect them; torch is
imported when a model is loaded, never by `import w2v_embed`. The model is a torch.nn.Module
holding the Embedder (no torch weights: inference runs in ONNX Runtime, on CPU or CUDA).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import numpy as np

from .embedder import Embedder, EmbedOptions
from .errors import UsageError, W2VEmbedError

LAYER_ENV = "W2V_EMBED_LAYER"


def load_model(model_file_path: str = "", layer: str | int | None = None, **embedder_kwargs: Any) -> Any:
    """The HEAR model object; `embedder_kwargs` go to Embedder (device, threads)."""
    chosen = layer if layer is not None else os.environ.get(LAYER_ENV) or "last"
    embedder = Embedder(model_file_path or None, options=EmbedOptions(layers=str(chosen), pool="none"), **embedder_kwargs)
    if len(embedder.layers) != 1:
        raise UsageError(f"layer {chosen!r}: a HEAR model gives one layer's embeddings")
    return _model_type()(embedder)


@cache
def _model_type() -> type:
    import torch

    class HearModel(torch.nn.Module):
        """What HEAR reads off a model: sample_rate and the two embedding sizes."""

        def __init__(self, embedder: Embedder) -> None:
            super().__init__()
            self.embedder = embedder
            self.sample_rate = int(embedder.info.sample_rate)
            self.scene_embedding_size = self.timestamp_embedding_size = int(embedder.info.hidden_size)

    return HearModel


def get_timestamp_embeddings(audio: Any, model: Any) -> tuple[Any, Any]:
    import torch

    frames = _frames(audio, model.embedder)
    info = model.embedder.info
    centres = (info.frame_center_offset + np.arange(frames.shape[1]) / info.frame_rate) * 1000.0
    timestamps = np.broadcast_to(centres.astype(np.float32), frames.shape[:2]).copy()
    return torch.from_numpy(frames), torch.from_numpy(timestamps)


def get_scene_embeddings(audio: Any, model: Any) -> Any:
    import torch

    return torch.from_numpy(_frames(audio, model.embedder).mean(axis=1, dtype=np.float32))


def _frames(audio: Any, embedder: Embedder) -> np.ndarray:
    """(n_sounds, samples) tensor or array → (n_sounds, frames, D) float32, sounds batched together."""
    signals = np.asarray(audio.detach().cpu().numpy() if hasattr(audio, "detach") else audio, dtype=np.float32)
    if signals.ndim != 2:
        raise W2VEmbedError(f"HEAR audio is (n_sounds, samples); got shape {signals.shape}")
    results: dict[int, np.ndarray] = {}
    for i, features in embedder.embed_stream(enumerate(signals)):
        if isinstance(features, Exception):
            raise W2VEmbedError(f"sound {i}: {features}")
        (results[i],) = features.values()
    if not results:
        return np.zeros((0, 0, embedder.info.hidden_size), np.float32)
    return np.stack([results[i] for i in range(len(signals))]).astype(np.float32, copy=False)

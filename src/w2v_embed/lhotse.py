"""lhotse adapter: a FeatureExtractor registered as "w2v-embed", so lhotse computes, stores and
validates w2v-embed frames like its own fbank:

    import w2v_embed.lhotse                      # registers the extractor
    from w2v_embed.lhotse import W2VEmbed, W2VEmbedConfig
    cuts = cuts.compute_and_store_features(W2VEmbed(W2VEmbedConfig(model="m.onnx", layer=6)), "feats/")

Frame counts follow lhotse's rule, not the model's: lhotse counts round(samples / hop) frames
(`compute_num_frames`), which is one more than the model's convolutions give for most lengths
(16000 samples: lhotse 50, the model 49). The missing frame is the last frame repeated (a copy of
real features, where lhotse's own s3prl extractor pads zeros, which no layer ever outputs); a count
the model exceeds would be trimmed. Needs the `interop` extra (lhotse).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

try:
    from lhotse.features.base import FeatureExtractor, register_extractor
    from lhotse.utils import compute_num_frames_from_samples
except ImportError as exc:  # the module is the adapter: without lhotse there is nothing to register
    raise ImportError("w2v_embed.lhotse needs lhotse: needs the 'interop' extra: pip install 'w2v-embed[interop]'") from exc

from .embedder import Embedder, EmbedOptions
from .errors import UsageError, W2VEmbedError


@dataclass
class W2VEmbedConfig:
    model: str = ""  # the exported .onnx; "" = $W2V_EMBED_MODEL, else the one under models/
    layer: str | int = "last"  # one layer: a number (transformers' hidden_states) or "last"
    frame_shift: float = 0.02  # must match the model's frame rate (50 Hz for every supported family)
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None
    chunk_seconds: float = 30.0  # long cuts are chunked as in extract (0 = whole)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> W2VEmbedConfig:
        return W2VEmbedConfig(**data)


def fit_frames(frames: np.ndarray, count: int) -> np.ndarray:
    """`frames` (T, D) to exactly `count` rows: the last frame repeated, or the tail trimmed."""
    if len(frames) >= count:
        return frames[:count]
    return np.concatenate([frames, np.repeat(frames[-1:], count - len(frames), axis=0)])


@register_extractor
class W2VEmbed(FeatureExtractor):
    """One layer's frames of an exported model, (num_frames, hidden_size) float32 per cut."""

    name = "w2v-embed"
    config_type = W2VEmbedConfig

    def __init__(self, config: W2VEmbedConfig | None = None) -> None:
        super().__init__(config)
        self._embedder: Embedder | None = None  # loaded on first use, in whichever process extracts

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            cfg = self.config
            options = EmbedOptions(layers=str(cfg.layer), pool="none", chunk_seconds=cfg.chunk_seconds)
            embedder = Embedder(cfg.model or None, device=cfg.device, threads=cfg.threads, options=options)
            if len(embedder.layers) != 1:
                raise UsageError(f"layer {cfg.layer!r}: the lhotse extractor stores one layer")
            if abs(1.0 / embedder.info.frame_rate - cfg.frame_shift) > 1e-9:
                raise W2VEmbedError(f"frame_shift {cfg.frame_shift}: the model's frames are {1 / embedder.info.frame_rate:g} s apart")
            self._embedder = embedder
        return self._embedder

    @property
    def frame_shift(self) -> float:
        return self.config.frame_shift

    def feature_dim(self, sampling_rate: int) -> int:
        return self.embedder.info.hidden_size

    def extract(self, samples: np.ndarray, sampling_rate: int) -> np.ndarray:
        """lhotse's (channels, samples) or (samples,) at any rate → (lhotse's frame count, D)."""
        samples = np.asarray(samples, dtype=np.float32)
        audio = samples.T if samples.ndim == 2 else samples  # the Embedder takes (samples, channels)
        (frames,) = self.embedder.embed(audio, sampling_rate).values()
        return fit_frames(frames, compute_num_frames_from_samples(samples.shape[-1], self.frame_shift, sampling_rate))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_embedder": None}  # worker processes load their own model

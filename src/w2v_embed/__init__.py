"""w2v-embed: wav2vec 2.0 embeddings from audio folders, via ONNX Runtime.

    import w2v_embed
    paths, X = w2v_embed.load("feats.h5", layer=6)           # pooled features, one row per file
    out = w2v_embed.open("frames.h5"); out["a.wav"][6]        # one file's frames, read on demand
    emb = w2v_embed.Embedder("models/wav2vec2-german.onnx")   # in-memory use
    feats = emb.embed(audio, sample_rate)                     # {layer: vector}

Names are imported on first use, so `import w2v_embed` stays light and never imports torch. The
pipeline itself is `w2v_embed.extract.extract(discover(...), out, Embedder(...))`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load": "store",
    "open": "store",
    "Output": "store",
    "read_summary": "store",
    "Embedder": "embedder",
    "EmbedOptions": "embedder",
    "ExtractOptions": "extract",
    "export_model": "export",
    "ExportOptions": "export",
    "W2VEmbedError": "errors",
    "load_units": "units",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'w2v_embed' has no attribute {name!r}")

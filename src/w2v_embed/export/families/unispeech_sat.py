"""UniSpeech-SAT: wav2vec2's graph (conv stack, positional conv, post- or pre-norm encoder) unchanged.

Its pre-training heads (quantizer, speaker projection, label embeddings) are dropped by the loader.
"""

from __future__ import annotations

from .wav2vec2 import Exportable

REFERENCE = "UniSpeechSatModel"
__all__ = ["REFERENCE", "Exportable"]

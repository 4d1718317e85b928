"""UniSpeech: wav2vec2's graph (conv stack, positional conv, post- or pre-norm encoder) unchanged.

Its pre-training heads (quantizer, CTC projection) are dropped by the loader.
"""

from __future__ import annotations

from .wav2vec2 import Exportable

REFERENCE = "UniSpeechModel"
__all__ = ["REFERENCE", "Exportable"]

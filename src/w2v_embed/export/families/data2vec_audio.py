"""data2vec-audio: layer-norm conv stack, post-norm encoder, and a stack of positional conv layers."""

from __future__ import annotations

import torch

from . import wav2vec2

REFERENCE = "Data2VecAudioModel"


class Exportable(wav2vec2.Exportable):
    def position(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Each layer is conv → non-affine LayerNorm → GELU; its output on padded frames is not zero, so
        they are zeroed again before the next conv, which must see them as the end of the signal."""
        mask = valid[:, None, :]
        h = x.transpose(1, 2)
        for layer in self.model.encoder.pos_conv_embed.layers:
            h = layer(h * mask)
        return h.transpose(1, 2)

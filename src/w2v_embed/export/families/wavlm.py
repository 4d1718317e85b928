"""WavLM: wav2vec2's data flow with a gated relative position bias in every attention.

The bias is bucketed by relative position, made once by the first layer's embedding and passed to
every layer, which scales it per query frame by a gate computed from its own input. It depends on
positions only, so a padded row sees the same bias on its valid frames; keys are masked as usual.
"""

from __future__ import annotations

import torch
from torch import nn

from . import wav2vec2

REFERENCE = "WavLMModel"


class Exportable(wav2vec2.Exportable):
    def attention_bias(self, x: torch.Tensor, valid: torch.Tensor) -> object:
        steps = x.shape[1]
        first = self.model.encoder.layers[0].attention
        position = first.compute_bias(steps, steps).to(x.dtype)[None]  # [1, heads, T, T]
        return super().attention_bias(x, valid), position

    def _attention(self, attn: nn.Module, x: torch.Tensor, bias: object) -> torch.Tensor:
        key_bias, position = bias
        heads = attn.num_heads
        q, k, v = (wav2vec2.split_heads(proj(x), heads) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
        proj = attn.gru_rel_pos_linear(wav2vec2.split_heads(x, heads))  # [B, heads, T, 8]
        gate = torch.sigmoid(proj.reshape(*proj.shape[:-1], 2, 4).sum(-1))  # [B, heads, T, 2]
        scale = gate[..., :1] * (gate[..., 1:] * attn.gru_rel_pos_const - 1.0) + 2.0  # [B, heads, T, 1]
        scores = torch.matmul(q, k.transpose(2, 3)) * attn.scaling + scale * position + key_bias
        return wav2vec2.attend(attn.out_proj, q, k, v, scores)

"""Wav2Vec2-Conformer: wav2vec2's conv stack and projection, then conformer blocks.

A block is ½ feed-forward → self-attention (relative or rotary positions) → convolution module →
½ feed-forward → LayerNorm, each pre-normed and residual; the encoder's LayerNorm gives `last`.
transformers (like fairseq) builds a positional conv but never runs it, so its weights stay unread.

Padding-exact where transformers is not: its convolution module runs the depthwise conv over
padded frames (nonzero after the pointwise conv and GLU), so a padded row's last frames differ from
the clip alone. Here they are zeroed before the depthwise conv, as the conv's own zero padding of
the clip alone. Both position encodings depend on positions only, so valid frames see the same
values whatever the padded length.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import wav2vec2

REFERENCE = "Wav2Vec2ConformerModel"


class Exportable(wav2vec2.Exportable):
    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.stable = True  # pre-norm blocks; the encoder's LayerNorm on the last one only
        self.positions_kind = model.config.position_embeddings_type  # "relative" | "rotary" | None

    def unread(self) -> tuple[str, ...]:
        return (*super().unread(), "encoder.pos_conv_embed.")

    def embed(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return x  # no positional conv (see the module docstring)

    def attention_bias(self, x: torch.Tensor, valid: torch.Tensor) -> object:
        return super().attention_bias(x, valid), valid, self.positions(x)

    def positions(self, x: torch.Tensor) -> object:
        """rotary: (cos, sin) [T, head]; relative: the sinusoids of relative positions T-1 … -(T-1), [2T-1, hidden]."""
        steps = x.shape[1]
        if self.positions_kind == "rotary":
            inv_freq = self.model.encoder.embed_positions.inv_freq
            freqs = torch.arange(steps, device=x.device).to(inv_freq.dtype)[:, None] * inv_freq
            angles = torch.cat((freqs, freqs), dim=-1)
            return angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        if self.positions_kind == "relative":
            width = self.model.config.hidden_size
            position = torch.arange(steps - 1, -steps, -1, device=x.device).float()[:, None]
            div_term = torch.exp(torch.arange(0, width, 2, device=x.device).float() * -(math.log(10000.0) / width))
            angles = position * div_term
            return torch.stack((torch.sin(angles), torch.cos(angles)), dim=-1).reshape(2 * steps - 1, width).to(x.dtype)
        return None

    def _layer(self, layer: nn.Module, x: torch.Tensor, bias: object) -> torch.Tensor:
        key_bias, valid, positions = bias
        x = layer.ffn1(layer.ffn1_layer_norm(x)) * 0.5 + x
        x = self._self_attention(layer.self_attn, layer.self_attn_layer_norm(x), key_bias, positions) + x
        x = x + self._convolution(layer.conv_module, x, valid)
        x = layer.ffn2(layer.ffn2_layer_norm(x)) * 0.5 + x
        return layer.final_layer_norm(x)

    def _self_attention(self, attn: nn.Module, x: torch.Tensor, key_bias: torch.Tensor, positions: object) -> torch.Tensor:
        heads = attn.num_heads
        query_key = _rotate(x, *positions, heads) if self.positions_kind == "rotary" else x
        q, k = (wav2vec2.split_heads(proj(query_key), heads) for proj in (attn.linear_q, attn.linear_k))
        v = wav2vec2.split_heads(attn.linear_v(x), heads)
        if self.positions_kind == "relative":
            scores = torch.matmul(q + attn.pos_bias_u[None, :, None, :], k.transpose(2, 3)) * attn.scaling
            scores = scores + _relative_scores(attn, q, positions) * attn.scaling
        else:
            scores = torch.matmul(q, k.transpose(2, 3)) * attn.scaling
        return wav2vec2.attend(attn.linear_out, q, k, v, scores + key_bias)

    def _convolution(self, conv: nn.Module, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        h = conv.glu(conv.pointwise_conv1(conv.layer_norm(x).transpose(1, 2)))
        h = conv.depthwise_conv(h * valid[:, None, :])  # padded frames zero, as the clip alone's conv padding
        return conv.pointwise_conv2(conv.activation(conv.batch_norm(h))).transpose(1, 2)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, heads: int) -> torch.Tensor:
    """Rotary embedding of each head's halves, applied to the attention input as transformers does."""
    batch, steps, width = x.shape
    h = x.reshape(batch, steps, heads, width // heads)
    begin, end = h[..., : width // heads // 2], h[..., width // heads // 2 :]
    rotated = torch.cat((-end, begin), dim=-1)
    return (h * cos[:, None, :] + rotated * sin[:, None, :]).reshape(batch, steps, width)


def _relative_scores(attn: nn.Module, q: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(q + v) · P[i - j] for query i and key j (Transformer-XL's b + d terms), by the pad-and-reshape
    shift over the [T, 2T-1] scores against every relative position. -> [B, heads, T, T]"""
    steps = q.shape[2]
    projected = attn.linear_pos(table).reshape(-1, attn.num_heads, attn.head_size).permute(1, 2, 0)  # [H, hs, 2T-1]
    scores = torch.matmul(q + attn.pos_bias_v[None, :, None, :], projected[None])  # [B, H, T, 2T-1]
    batch, heads = scores.shape[:2]
    shifted = nn.functional.pad(scores, (1, 0)).reshape(batch, heads, 2 * steps, steps)
    return shifted[:, :, 1:].reshape(batch, heads, steps, 2 * steps - 1)[..., :steps]

"""HuBERT: the wav2vec2 conv stack, positional conv and encoder; the projection's LayerNorm is optional,
and the positional conv may be batch-normed instead of weight-normed (mHuBERT 25 Hz)."""

from __future__ import annotations

import torch

from . import wav2vec2

REFERENCE = "HubertModel"


class Exportable(wav2vec2.Exportable):
    def project(self, x: torch.Tensor) -> torch.Tensor:
        projection = self.model.feature_projection
        if projection.feat_proj_layer_norm:  # hubert-base: off; hubert-large: on
            x = projection.layer_norm(x)
        return projection.projection(x)

    def position(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """conv_pos_batch_norm: BatchNorm → plain conv. The BatchNorm's shift makes padded frames nonzero,
        so they are zeroed again: the conv must see them as the end of the clip, as it does alone."""
        embed = self.model.encoder.pos_conv_embed
        if embed.batch_norm is None:
            return super().position(x, valid)
        h = embed.batch_norm(x.transpose(1, 2)) * valid[:, None, :]
        return embed.activation(embed.padding(embed.conv(h))).transpose(1, 2)

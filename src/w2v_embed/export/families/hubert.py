"""HuBERT: the wav2vec2 conv stack, positional conv and encoder; the projection's LayerNorm is optional."""

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

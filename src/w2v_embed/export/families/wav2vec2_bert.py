"""w2v-BERT 2.0 (Wav2Vec2BertModel): a conformer encoder over fbank features instead of a conv stack.

The graph takes the fbank front end's stacked features (`input_features` [batch, frames, 160], which
`extract` computes in numpy; see frontends/fbank.py) and `lengths` in frames. It restates transformers'
data flow with the model's own submodules and weights: feature projection, then per conformer layer
half-step FFN, self-attention with relative_key position bias, the convolution module, half-step FFN
and LayerNorm. Padding-exact: padded frames are zero before the encoder and again before each
depthwise conv, and are masked as attention keys, so a row of a padded batch equals the row alone.

The relative_key bias is q · E[clamp(j - i)] with E only left + right + 1 embeddings long; transformers
gathers E into a [T, T, head] tensor first (360 MB per layer for a 20 s chunk), here q · Eᵀ is
[T, left + right + 1] and is gathered into [T, T] scores.

Imports torch: only the export path uses this module.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...errors import W2VEmbedError
from ...frontends.fbank import GRID
from ...layers import LAST, Layer
from .wav2vec2 import _time_mask, split_heads

REFERENCE = "Wav2Vec2BertModel"
INPUT_NAMES = ("input_features", "lengths")


def front_end(config: object) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """The model eats fbank rows: 2 frames of 10 ms stacked, i.e. a frame grid of hop 320, field 560."""
    return "fbank", GRID.conv_kernel, GRID.conv_stride


def reference_hidden_states(model: nn.Module, samples: np.ndarray) -> dict[Layer, np.ndarray]:
    """transformers' own pipeline on one clip: SeamlessM4TFeatureExtractor, then the model with its
    attention mask; the frames it masks (an unpaired last fbank frame) are left out."""
    from transformers import SeamlessM4TFeatureExtractor

    inputs = SeamlessM4TFeatureExtractor()(samples, sampling_rate=16000, return_tensors="pt")
    frames = int(inputs["attention_mask"].sum())
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    states: dict[Layer, np.ndarray] = {k: h[0, :frames].numpy() for k, h in enumerate(out.hidden_states)}
    states[LAST] = out.last_hidden_state[0, :frames].numpy()
    return states


class Exportable(nn.Module):
    """Wraps a transformers Wav2Vec2BertModel; forward(input_features, lengths) -> hidden states 0..L, last.

    Hidden state 0 is the feature projection's output (the first layer's input), k the output of
    conformer layer k, `last` that of layer L (the intermediate FFN exists only with the adapter).
    """

    input_names = INPUT_NAMES

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        config = model.config
        if config.add_adapter:
            raise W2VEmbedError(
                "wav2vec2-bert models with an adapter (add_adapter) are not supported: it subsamples "
                "last_hidden_state to another frame rate than the layers' (w2v-bert-2.0 has none)"
            )
        if config.position_embeddings_type not in ("relative_key", None):
            raise W2VEmbedError(
                f"wav2vec2-bert with position_embeddings_type {config.position_embeddings_type!r} is not supported "
                "(relative_key, as w2v-bert-2.0, and none are)"
            )
        self.model = model
        self.relative = config.position_embeddings_type == "relative_key"
        self.num_layers = config.num_hidden_layers
        self.dtype = next(model.parameters()).dtype

    def example_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """What the export traces with: two rows of fbank features, one padded."""
        return torch.zeros(2, 50, 160), torch.tensor([50, 37], dtype=torch.int64)

    def unread(self) -> tuple[str, ...]:
        """Weights transformers' forward ignores too: the SpecAugment vector (training only)."""
        return ("masked_spec_embed",)

    def forward(self, input_features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        projection = self.model.feature_projection
        x = projection.projection(projection.layer_norm(input_features.to(self.dtype)))
        valid = _time_mask(lengths, x, 1)[:, :, None]  # [B, T, 1]
        x = x * valid
        key_bias = ((1.0 - valid[:, :, 0]) * torch.finfo(x.dtype).min)[:, None, None, :]
        distance = self._distance(x.shape[1], x.device) if self.relative else None
        states = [x]
        for layer in self.model.encoder.layers:
            x = self._layer(layer, x, valid, key_bias, distance)
            states.append(x)
        return tuple(state.float() for state in (*states, x))  # last_hidden_state is layer L's output

    def _distance(self, steps: int, device: torch.device) -> torch.Tensor:
        """[T, T] index into the distance embedding: clamp(key - query, -left, right) + left."""
        attn = self.model.encoder.layers[0].self_attn
        left, right = attn.left_max_position_embeddings, attn.right_max_position_embeddings
        positions = torch.arange(steps, device=device)
        return torch.clamp(positions[None, :] - positions[:, None], -left, right) + left

    def _layer(
        self, layer: nn.Module, x: torch.Tensor, valid: torch.Tensor, key_bias: torch.Tensor, distance: torch.Tensor | None
    ) -> torch.Tensor:
        x = x + 0.5 * layer.ffn1(layer.ffn1_layer_norm(x))
        x = x + self._attention(layer.self_attn, layer.self_attn_layer_norm(x), key_bias, distance)
        x = x + self._convolution(layer.conv_module, x, valid)
        x = x + 0.5 * layer.ffn2(layer.ffn2_layer_norm(x))
        return layer.final_layer_norm(x)

    def _attention(
        self, attn: nn.Module, x: torch.Tensor, key_bias: torch.Tensor, distance: torch.Tensor | None
    ) -> torch.Tensor:
        q, k, v = (split_heads(proj(x), attn.num_heads) for proj in (attn.linear_q, attn.linear_k, attn.linear_v))
        scores = torch.matmul(q, k.transpose(2, 3)) * attn.scaling + key_bias
        if distance is not None:
            by_distance = torch.matmul(q, attn.distance_embedding.weight.to(q.dtype).t())  # [B, H, T, P]
            index = distance[None, None].expand(q.shape[0], q.shape[1], -1, -1)
            scores = scores + torch.gather(by_distance, 3, index) * attn.scaling
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        batch, heads, steps, width = out.shape
        return attn.linear_out(out.transpose(1, 2).reshape(batch, steps, heads * width))

    def _convolution(self, conv: nn.Module, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The conformer convolution module; padded frames are zeroed before its (causal) depthwise conv."""
        h = (conv.layer_norm(x) * valid).transpose(1, 2)
        h = conv.glu(conv.pointwise_conv1(h))
        h = conv.depthwise_conv(nn.functional.pad(h, (conv.depthwise_conv.kernel_size[0] - 1, 0)))
        h = conv.activation(conv.depthwise_layer_norm(h.transpose(1, 2)).transpose(1, 2))
        return conv.pointwise_conv2(h).transpose(1, 2)

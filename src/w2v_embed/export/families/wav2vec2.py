"""The exportable forward pass: a padding-exact re-statement of transformers' Wav2Vec2Model.

Why not trace `Wav2Vec2Model(output_hidden_states=True)` directly: transformers 5 collects hidden
states through forward hooks, which tracing does not reliably follow (one export differed by ~4), and
its first GroupNorm normalises over the padded time axis, so a row's features would depend on the
batch it sits in. This module calls the reference model's own submodules and weights, but owns the
data flow: it returns every hidden state itself, normalises over valid frames only and masks
attention, so a row of a padded batch equals the same row run alone.

Imports torch: only the export path uses this module.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import W2VEmbedError
from ...runtime import INPUT_NAMES
from . import feat_extract_norm, stable_layer_norm


def conv_output_lengths(lengths: torch.Tensor, kernels: list[int], strides: list[int]) -> list[torch.Tensor]:
    """Valid output frames after each conv layer (0 when the input is shorter than the kernel)."""
    out = []
    for kernel, stride in zip(kernels, strides):
        lengths = torch.clamp(torch.div(lengths - kernel, stride, rounding_mode="floor") + 1, min=0)
        out.append(lengths)
    return out


def _time_mask(lengths: torch.Tensor, like: torch.Tensor, time_dim: int) -> torch.Tensor:
    """[batch, time] float mask of valid positions for a tensor whose time axis is `time_dim`."""
    steps = torch.arange(like.shape[time_dim], device=like.device)
    return (steps[None, :] < lengths[:, None]).to(like.dtype)


def normalized_first_conv(
    samples: torch.Tensor, frames: torch.Tensor, conv: nn.Conv1d, norm: nn.GroupNorm
) -> torch.Tensor:
    """First conv + GroupNorm(one group per channel), statistics over valid frames only. -> [B, C, T].

    Why not conv then norm: the conv output is the largest tensor of the model (C=512 channels at
    3.2 kHz), and normalising it takes four passes over it. The conv is linear in the k-sample input
    patches p, so a channel's mean is w·mean(p) and its variance wᵀ·cov(p)·w: statistics of the tiny
    [k, T] patch matrix. Folding them into per-row weights leaves one matmul (bias as an extra row of
    ones) that writes the normalised output once. The conv bias cancels in the normalisation.

    The statistics are float64: for band-limited audio (a sine, 8 kHz material) cov(p) is nearly
    singular and a high-pass filter's wᵀ·cov·w cancels; in float32 that was 10-100× less accurate
    than normalising the conv output directly. In float64 it is on par, for < 1.5 ms per 10 s clip.
    """
    kernel = conv.kernel_size[0]
    identity = torch.eye(kernel, dtype=samples.dtype, device=samples.device)[:, None, :]
    patches = torch.nn.functional.conv1d(samples[:, None, :], identity, stride=conv.stride[0])  # [B, k, T]
    p64 = patches.double()
    mask = _time_mask(frames, p64, 2)  # [B, T]: valid conv output frames
    m = mask[:, None, :]
    count = torch.clamp(mask.sum(dim=1), min=1.0)[:, None]  # [B, 1]
    mean = (p64 * m).sum(dim=2) / count  # [B, k]
    centred = (p64 - mean[:, :, None]) * m
    cov = torch.matmul(centred, centred.transpose(1, 2)) / count[:, :, None]  # [B, k, k]
    weight = conv.weight[:, 0, :].double()  # [C, k]
    var = (torch.matmul(weight, cov) * weight).sum(dim=2)  # [B, C]
    scale = norm.weight.double() / torch.sqrt(var + norm.eps)  # [B, C]
    shift = norm.bias.double() - scale * torch.matmul(mean, weight.t())  # [B, C]
    folded = torch.cat([scale[:, :, None] * weight, shift[:, :, None]], dim=2).to(samples.dtype)  # [B, C, k+1]
    ones = torch.ones_like(patches[:, :1, :])
    return torch.matmul(folded, torch.cat([patches, ones], dim=1))


REFERENCE = "Wav2Vec2Model"  # the transformers class this family is checked against


class Exportable(nn.Module):
    """Wraps a transformers Wav2Vec2Model; forward(input_values, lengths) -> hidden states 0..L, last_hidden_state.

    Hidden state k follows transformers' numbering: 0 is the input to the first transformer layer,
    k the output of layer k (for stable-layer-norm models without the encoder's final LayerNorm,
    which transformers 5 applies only to `last_hidden_state`, the extra last output).

    The other families share this data flow and override the step that differs: `project`, `embed` /
    `position`, `attention_bias` + `_attention`, or `_layer`; `unread` names the reference's weights that
    its own forward pass ignores (coverage.py refuses a graph that leaves any other unread).

    A float16 `model` gives a float16 graph with float32 inputs and outputs, except the first conv
    block of group-norm models: its statistics sum over every frame of a chunk, beyond float16's range,
    so its weights are put back to float32 and it runs in float32.
    """

    input_names = INPUT_NAMES

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        config = model.config
        if getattr(config, "add_adapter", False):
            raise W2VEmbedError(f"{config.model_type} models with an adapter (add_adapter) are not supported")
        self.model = model
        self.kernels = list(config.conv_kernel)
        self.strides = list(config.conv_stride)
        self.group_norm = feat_extract_norm(config) == "group"
        self.stable = stable_layer_norm(config)
        self.num_layers = config.num_hidden_layers
        self.dtype = next(model.parameters()).dtype
        if self.group_norm:
            model.feature_extractor.conv_layers[0].float()

    def example_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """What the export traces with: two rows of samples, one padded."""
        return torch.zeros(2, 16000), torch.tensor([16000, 12000], dtype=torch.int64)

    def forward(self, input_values: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        frame_lengths = conv_output_lengths(lengths, self.kernels, self.strides)
        x = self.project(self.conv_features(input_values, frame_lengths))
        valid = _time_mask(frame_lengths[-1], x, 1)  # [B, T]
        x = x * valid[:, :, None]  # padded frames are zeros, exactly like the conv's own zero padding
        encoder = self.model.encoder
        x = self.embed(x, valid)
        bias = self.attention_bias(x, valid)
        states = [x]
        for layer in encoder.layers:
            x = self._layer(layer, x, bias)
            states.append(x)
        last = encoder.layer_norm(x) if self.stable else x
        return tuple(state.float() for state in (*states, last))

    def unread(self) -> tuple[str, ...]:
        """Name prefixes of weights transformers' forward ignores too: the SpecAugment vector (training
        only) and, under group norm, the first conv's bias (the normalisation cancels it)."""
        return ("masked_spec_embed", *(["feature_extractor.conv_layers.0.conv.bias"] if self.group_norm else []))

    def conv_features(self, input_values: torch.Tensor, frame_lengths: list[torch.Tensor]) -> torch.Tensor:
        """The conv stack, [B, T, C]; group norm over valid frames only."""
        x = input_values[:, None, :].to(self.dtype)
        for i, layer in enumerate(self.model.feature_extractor.conv_layers):
            if self.group_norm and i == 0:
                x = normalized_first_conv(input_values, frame_lengths[0], layer.conv, layer.layer_norm).to(self.dtype)
            else:
                x = layer.conv(x)
            if not self.group_norm:
                x = layer.layer_norm(x.transpose(1, 2)).transpose(1, 2)
            x = layer.activation(x)
        return x.transpose(1, 2)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        projection = self.model.feature_projection
        return projection.projection(projection.layer_norm(x))

    def embed(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The first transformer layer's input: frames plus their positional conv embedding (post-norm
        models: then the encoder's LayerNorm)."""
        x = x + self.position(x, valid)
        return x if self.stable else self.model.encoder.layer_norm(x)

    def position(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Positional conv embedding of frames whose padding is zero (as the conv's own padding)."""
        return self.model.encoder.pos_conv_embed(x)

    def attention_bias(self, x: torch.Tensor, valid: torch.Tensor) -> object:
        """Additive key mask: exp(lowest - max) underflows to exactly 0, so padded keys carry no weight."""
        return ((1.0 - valid) * torch.finfo(x.dtype).min)[:, None, None, :]

    def _layer(self, layer: nn.Module, x: torch.Tensor, bias: object) -> torch.Tensor:
        if self.stable:
            x = x + layer.dropout(self._attention(layer.attention, layer.layer_norm(x), bias))
            x = x + layer.feed_forward(layer.final_layer_norm(x))
            adapter = getattr(layer, "adapter_layer", None)  # MMS: a per-language attention adapter, residual
            return x if adapter is None else x + adapter(x)
        x = layer.layer_norm(x + self._attention(layer.attention, x, bias))
        return layer.final_layer_norm(x + layer.feed_forward(x))

    def _attention(self, attn: nn.Module, x: torch.Tensor, bias: object) -> torch.Tensor:
        q, k, v = (split_heads(proj(x), attn.num_heads) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
        return attend(attn.out_proj, q, k, v, torch.matmul(q, k.transpose(2, 3)) * attn.scaling + bias)


def split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, T, W] -> [B, heads, T, W / heads]"""
    batch, steps, width = t.shape
    return t.reshape(batch, steps, heads, width // heads).transpose(1, 2)


def attend(out_proj: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """softmax(scores) · v, heads merged, through the output projection."""
    out = torch.matmul(torch.softmax(scores, dim=-1), v)
    batch, heads, steps, width = out.shape
    return out_proj(out.transpose(1, 2).reshape(batch, steps, heads * width))

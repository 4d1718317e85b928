"""Write a tiny random-weight checkpoint (wav2vec2, HuBERT, WavLM, data2vec-audio, conformer, UniSpeech(-SAT)).

Used by the quick start when the hub cannot be reached, and by the tests. The weights are random:
features from it are meaningless (plumbing only); only the shapes, the pipeline and the file
formats are real.

    python scripts/make_tiny_checkpoint.py OUT_DIR [--family wav2vec2|hubert|wavlm|data2vec-audio|
        wav2vec2-conformer|unispeech-sat|unispeech] [--variant group|stable|layer|mms|25hz|relative|rotary]
        [--format safetensors|bin]

Checkpoints of the families and variants added after the first four (all but LEGACY) have their
norms, BatchNorm statistics and adapters away from identity, so that a graph that skips one of them
cannot pass; the "mms" variant also writes adapter.eng/.fra.safetensors and adapter.deu.bin beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# Real conv stack (hop 320, receptive field 400); everything else tiny.
TINY = dict(
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
VARIANTS = {
    "group": dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False),  # base-like
    "stable": dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),  # large/XLS-R-like
}
# Each family's variants as the published checkpoints have them (configs of transformers 5).
FAMILIES = {
    "wav2vec2": {**VARIANTS, "mms": dict(VARIANTS["stable"], adapter_attn_dim=8)},  # mms-1b(-all): attention adapters
    "hubert": {  # hubert-base-ls960 / hubert-large-ll60k; both settings of the projection's LayerNorm
        "group": dict(VARIANTS["group"], feat_proj_layer_norm=False),
        "stable": dict(VARIANTS["stable"], feat_proj_layer_norm=True),
        "25hz": dict(  # slprl/mhubert-base-25hz: 8 convs (hop 640, field 720), batch-normed positional conv
            VARIANTS["group"], feat_proj_layer_norm=False, conv_pos_batch_norm=True, conv_dim=(16,) * 8,
            conv_kernel=(10, 3, 3, 3, 3, 2, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2, 2),
        ),
    },
    "wavlm": {  # wavlm-base(-plus) / wavlm-large; few buckets so that short tests reach the log-spaced ones
        name: dict(values, num_buckets=32, max_bucket_distance=64) for name, values in VARIANTS.items()
    },
    "data2vec-audio": {  # data2vec-audio-base/-large: layer-norm conv stack, post-norm encoder
        "layer": dict(conv_bias=True, num_conv_pos_embeddings=3, conv_pos_kernel_size=19),
    },
    "wav2vec2-conformer": {  # wav2vec2-conformer-rel-pos-large / -rope-large (no do_stable_layer_norm field)
        kind: dict(feat_extract_norm="layer", conv_bias=True, position_embeddings_type=name, conv_depthwise_kernel_size=7)
        for kind, name in (("relative", "relative"), ("rotary", "rotary"))
    },
    "unispeech-sat": VARIANTS,  # unispeech-sat-base(-plus) / -large
    "unispeech": VARIANTS,  # unispeech-large-1500h-cv (stable); group as the base config
}
# Written before the away-from-identity rule; kept as they were so that their tests' numbers stay comparable.
LEGACY = {("wav2vec2", "group"), ("wav2vec2", "stable"), ("hubert", "group"), ("hubert", "stable"),
          ("wavlm", "group"), ("wavlm", "stable"), ("data2vec-audio", "layer")}
# How each family is saved by training scripts (transformers class names); default: *ForCTC.
SAVED_AS = {"wav2vec2": "Wav2Vec2ForPreTraining", "wavlm": "WavLMModel",
            "wav2vec2-conformer": "Wav2Vec2ConformerForPreTraining", "unispeech-sat": "UniSpeechSatForPreTraining",
            "unispeech": "UniSpeechForPreTraining"}
ADAPTER_LANGUAGES = {"eng": 40, "fra": 36}  # language -> its lm_head's vocabulary (each MMS language has its own)


def make_checkpoint(
    folder: Path, variant: str = "group", fmt: str = "safetensors", seed: int = 0, family: str = "wav2vec2",
    **overrides: object,
) -> Path:
    """Save the family's model with heads, as training scripts do (SAVED_AS; MMS as Wav2Vec2ForCTC with
    its adapter files), and its preprocessor config."""
    import torch
    import transformers

    values = {**TINY, **FAMILIES[family][variant], **overrides}
    config = transformers.AutoConfig.for_model(family, **values)
    torch.manual_seed(seed)
    adapters = config.to_dict().get("adapter_attn_dim") is not None
    name = "Wav2Vec2ForCTC" if adapters else SAVED_AS.get(family, "")
    model = (getattr(transformers, name)(config) if name else transformers.AutoModelForCTC.from_config(config)).eval()
    if (family, variant) not in LEGACY:
        away_from_identity(model, torch.Generator().manual_seed(seed + 1))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        model.save_pretrained(folder)
    else:
        config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    if adapters:
        write_adapters(model, folder, seed)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=variant != "stable").save_pretrained(folder)
    return folder


def away_from_identity(model: object, generator: object) -> None:
    """Norms with random scale and shift, BatchNorms with random running statistics, adapters with
    weights large enough to matter: what a trained checkpoint has, and what fresh init does not."""
    import torch

    def noise(t: torch.Tensor, scale: float) -> torch.Tensor:
        return torch.randn(t.shape, generator=generator) * scale

    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.BatchNorm1d)) and module.weight is not None:
                module.weight.copy_(1 + noise(module.weight, 0.2))
                module.bias.copy_(noise(module.bias, 0.1))
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.copy_(noise(module.running_mean, 0.2))
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
                module.num_batches_tracked.fill_(1234)
            if name.endswith("adapter_layer"):  # transformers inits them near zero: a skipped one would pass
                for linear in (module.linear_1, module.linear_2):
                    linear.weight.copy_(noise(linear.weight, 0.3))
                    linear.bias.copy_(noise(linear.bias, 0.1))


def write_adapters(model: object, folder: Path, seed: int) -> None:
    """adapter.LANG.safetensors per ADAPTER_LANGUAGES (and adapter.deu.bin), in transformers' load_adapter
    naming (the encoder's adapter_layer weights + that language's lm_head), each different from the
    adapters in the main file."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed + 2)
    hidden = model.config.hidden_size
    for language, vocab in (*ADAPTER_LANGUAGES.items(), ("deu", 30)):
        weights = {}
        for name, param in model._get_adapters().items():
            if name.startswith("lm_head."):
                continue
            weights[name] = torch.randn(param.shape, generator=generator) * 0.3 + name.endswith("norm.weight")
        weights["lm_head.weight"] = torch.randn((vocab, hidden), generator=generator) * 0.02
        weights["lm_head.bias"] = torch.zeros(vocab)
        if language == "deu":  # transformers' fallback format
            torch.save(weights, folder / f"adapter.{language}.bin")
        else:
            save_file(weights, str(folder / f"adapter.{language}.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--family", choices=sorted(FAMILIES), default="wav2vec2")
    parser.add_argument("--variant", default="group",
                        help="group | stable; data2vec-audio: layer; wav2vec2: mms; hubert: 25hz; conformer: relative | rotary")
    parser.add_argument("--format", choices=["safetensors", "bin"], default="safetensors")
    args = parser.parse_args()
    print(make_checkpoint(args.out, args.variant, args.format, family=args.family))


if __name__ == "__main__":
    main()

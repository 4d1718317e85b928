"""Write a tiny random-weight checkpoint (wav2vec2, HuBERT, WavLM, data2vec-audio) with the real architecture.

Used by the quick start when the hub cannot be reached, and by the tests. The weights are random:
features from it are meaningless (plumbing only); only the shapes, the pipeline and the file
formats are real.

    python scripts/make_tiny_checkpoint.py OUT_DIR [--family wav2vec2|hubert|wavlm|data2vec-audio]
        [--variant group|stable|layer] [--format safetensors|bin]
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
    "wav2vec2": VARIANTS,
    "hubert": {  # hubert-base-ls960 / hubert-large-ll60k; both settings of the projection's LayerNorm
        "group": dict(VARIANTS["group"], feat_proj_layer_norm=False),
        "stable": dict(VARIANTS["stable"], feat_proj_layer_norm=True),
    },
    "wavlm": {  # wavlm-base(-plus) / wavlm-large; few buckets so that short tests reach the log-spaced ones
        name: dict(values, num_buckets=32, max_bucket_distance=64) for name, values in VARIANTS.items()
    },
    "data2vec-audio": {  # data2vec-audio-base/-large: layer-norm conv stack, post-norm encoder
        "layer": dict(conv_bias=True, num_conv_pos_embeddings=3, conv_pos_kernel_size=19),
    },
}


def make_checkpoint(
    folder: Path, variant: str = "group", fmt: str = "safetensors", seed: int = 0, family: str = "wav2vec2",
    **overrides: object,
) -> Path:
    """Save the family's model with heads, as training scripts do (Wav2Vec2ForPreTraining; ForCTC for the
    others, except WavLM saved bare), and its preprocessor config."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCTC, Wav2Vec2FeatureExtractor, Wav2Vec2ForPreTraining

    config = AutoConfig.for_model(family, **{**TINY, **FAMILIES[family][variant], **overrides})
    torch.manual_seed(seed)
    if family == "wav2vec2":
        model = Wav2Vec2ForPreTraining(config)
    elif family == "wavlm":
        model = AutoModel.from_config(config)
    else:
        model = AutoModelForCTC.from_config(config)
    model.eval()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        model.save_pretrained(folder)
    else:
        config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    Wav2Vec2FeatureExtractor(do_normalize=variant != "stable").save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--family", choices=sorted(FAMILIES), default="wav2vec2")
    parser.add_argument("--variant", default="group", help="group | stable (data2vec-audio: layer)")
    parser.add_argument("--format", choices=["safetensors", "bin"], default="safetensors")
    args = parser.parse_args()
    print(make_checkpoint(args.out, args.variant, args.format, family=args.family))


if __name__ == "__main__":
    main()

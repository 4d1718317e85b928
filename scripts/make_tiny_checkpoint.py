"""Write a tiny random-weight wav2vec2 checkpoint with the real architecture (plumbing only).

Used by the quick start when the hub cannot be reached, and by the tests. The weights are random:
features from it are meaningless; only the shapes, the pipeline and the file formats are real.

    python scripts/make_tiny_checkpoint.py OUT_DIR [--variant group|stable] [--format safetensors|bin]
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


def make_checkpoint(
    folder: Path, variant: str = "group", fmt: str = "safetensors", seed: int = 0, **overrides: object
) -> Path:
    """Save Wav2Vec2ForPreTraining (encoder + pretraining heads, as pretraining scripts do) and its preprocessor."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForPreTraining

    config = Wav2Vec2Config(**{**TINY, **VARIANTS[variant], **overrides})
    torch.manual_seed(seed)
    model = Wav2Vec2ForPreTraining(config).eval()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        model.save_pretrained(folder)
    else:
        config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    Wav2Vec2FeatureExtractor(do_normalize=variant == "group").save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="group")
    parser.add_argument("--format", choices=["safetensors", "bin"], default="safetensors")
    args = parser.parse_args()
    print(make_checkpoint(args.out, args.variant, args.format))


if __name__ == "__main__":
    main()

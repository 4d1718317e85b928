"""Write the Flax and TF test fixtures with the REAL Flax/TF implementations of transformers 4.x.

transformers 5 has no Flax or TF models, so this runs once in a throwaway venv and its small outputs
are committed under tests/fixtures/checkpoints/. The tests then prove that our msgpack/h5 readers
understand the real formats (not just a writer of our own), against what transformers 4.x itself
converted, and that the exported ONNX model reproduces the Flax/TF hidden states.

    python3.11 -m venv /tmp/fxvenv
    /tmp/fxvenv/bin/pip install torch==2.13.0          # the CPU wheel on this machine's disk: install it first
    /tmp/fxvenv/bin/pip install transformers==4.46.3 jax==0.4.13 jaxlib==0.4.13 flax==0.7.0 \
        tensorflow-cpu==2.15.1 'numpy<2' h5py msgpack safetensors
    /tmp/fxvenv/bin/python scripts/make_format_fixtures.py

Each folder (stable-flax, stable-nobias-flax, group-tf, stable-tf) holds config.json, preprocessor_config.json, the weights file,
expected_state_dict.npz (the PyTorch Wav2Vec2Model state dict transformers 4.x made from it with
from_flax/from_tf) and reference.npz (per-row inputs and the Flax/TF hidden states, each row run
alone, unpadded). Note: transformers 4.x returns, for stable-layer-norm models, the last hidden
state AFTER the encoder's final LayerNorm; transformers 5 (our reference) returns it before. The
tests account for it; this script records what 4.x returns.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "checkpoints"
LENGTHS = (8_000, 5_000)


def _tiny():
    spec = importlib.util.spec_from_file_location("tiny", ROOT / "scripts" / "make_tiny_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TINY, module.VARIANTS


def main() -> None:
    import tensorflow as tf
    import torch
    import transformers as tr

    tiny, variants = _tiny()
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(n).astype(np.float32) for n in LENGTHS]
    # Flax wav2vec2 exists only with stable layer norm ("layer" feature norm), like the seed model.
    kinds = [
        ("stable-flax", "flax", tr.FlaxWav2Vec2ForPreTraining, "stable", {}),  # what Flax pretraining saves
        ("stable-nobias-flax", "flax", tr.FlaxWav2Vec2Model, "stable", {"conv_bias": False}),
        ("group-tf", "tf", tr.TFWav2Vec2ForCTC, "group", {}),
        ("stable-tf", "tf", tr.TFWav2Vec2Model, "stable", {}),
    ]
    for name, framework, cls, variant, overrides in kinds:
        folder = OUT / name
        shutil.rmtree(folder, ignore_errors=True)
        config = tr.Wav2Vec2Config(**{**tiny, **variants[variant], **overrides}, vocab_size=12)
        if framework == "flax":
            model = cls(config, seed=1)
            outputs = [model(x[None], output_hidden_states=True) for x in inputs]
        else:
            tf.random.set_seed(1)
            model = cls(config)
            outputs = [model(tf.constant(x[None]), output_hidden_states=True, training=False) for x in inputs]
        model.save_pretrained(folder)
        tr.Wav2Vec2FeatureExtractor(do_normalize=variant == "group").save_pretrained(folder)
        reference = {"lengths": np.array(LENGTHS)}
        for row, (x, out) in enumerate(zip(inputs, outputs)):
            reference[f"row{row}_input_values"] = x
            for k, h in enumerate(out.hidden_states):
                reference[f"row{row}_hidden_state_{k}"] = np.asarray(h)[0]
            if hasattr(out, "last_hidden_state"):
                reference[f"row{row}_last_hidden_state"] = np.asarray(out.last_hidden_state)[0]
        np.savez_compressed(folder / "reference.npz", **reference)
        flag = {"from_flax": True} if framework == "flax" else {"from_tf": True}
        converted = tr.Wav2Vec2Model.from_pretrained(folder, **flag).eval()
        state = {k: v.detach().numpy() for k, v in converted.state_dict().items()}
        np.savez_compressed(folder / "expected_state_dict.npz", **state)
        with torch.no_grad():  # the 4.x PyTorch port agrees with the Flax/TF model it came from
            pt = converted(torch.from_numpy(inputs[0][None]), output_hidden_states=True).hidden_states
        diff = max(float(np.abs(a[0].numpy() - reference[f"row0_hidden_state_{k}"]).max()) for k, a in enumerate(pt))
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(f"{folder.relative_to(ROOT)}: {size / 1024:.0f} KiB, 4.x PyTorch vs {framework} max diff {diff:.1e}")


if __name__ == "__main__":
    main()

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

(TF 2.15 still ships Keras 2, so no tf-keras is needed; with TF >= 2.16 add tf-keras of the same minor.)

transformers 4.x Flax wav2vec2 implements only feat_extract_norm="layer" + do_stable_layer_norm=True
(it raises NotImplementedError for "group"), so both Flax fixtures are stable-layer-norm models:
stable-flax is FlaxWav2Vec2ForPreTraining (what the Flax seed model flax-community/wav2vec2-german
saves: `wav2vec2/` prefix plus quantizer/project_hid/project_q), stable-nobias-flax is
FlaxWav2Vec2Model with conv_bias=False. TF has both variants (group-tf: TFWav2Vec2ForCTC, stable-tf:
TFWav2Vec2Model).

Each of those four folders holds config.json, preprocessor_config.json (do_normalize True for the
group variant, False for the stable one), the weights file, expected_state_dict.npz (the PyTorch
Wav2Vec2Model state dict transformers 4.x made from it with from_flax/from_tf, float32, keys exactly as 4.46 names them: with torch >= 2.1 the pos conv weight norm
is `encoder.pos_conv_embed.conv.parametrizations.weight.original0/1`, as in transformers 5; older
torch gives `weight_g/weight_v`) and reference.npz: `lengths`, `input_values`
[B, N] float32 (rows zero-padded), `row{r}_input_values` (unpadded) and the Flax/TF outputs of each
row run alone, unpadded, with output_hidden_states=True: `row{r}_hidden_state_{i}` for i in 0..L
and `row{r}_last_hidden_state`.

Note: transformers 4.x returns, for stable-layer-norm models, hidden_states[L] (and the last hidden
state) AFTER the encoder's final LayerNorm; transformers 5 (our reference) returns hidden_states[L]
before it. This script records what 4.x returns; the tests account for it.

The same models are also saved in the other layouts transformers 4.x writes, weights + config only
(their expected state dict is the sibling folder's): group-tf-sharded (tf_model.h5.index.json +
shards: datasets under their names, no per-layer weight_names), group-tf-safetensors
(model.safetensors with metadata format "tf" and TF names), stable-nobias-flax-sharded
(flax_model.msgpack.index.json + shards), stable-nobias-flax-safetensors (model.safetensors with
metadata format "flax" and dotted Flax names).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "checkpoints"
LENGTHS = (8_000, 5_000)
# Small pretraining heads, so the ForPreTraining file stays small (defaults are 320 x 2 codevectors of 256).
SMALL_HEADS = dict(num_codevectors_per_group=8, codevector_dim=16, proj_codevector_dim=16)
SHARD_SIZE = "40KB"


def _tiny():
    spec = importlib.util.spec_from_file_location("tiny", ROOT / "scripts" / "make_tiny_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TINY, module.VARIANTS


def _same_state(folder: Path, flag: dict, expected: dict) -> str:
    """Whether transformers 4.x reads an extra layout to the same PyTorch weights (informational)."""
    import transformers as tr

    try:
        state = tr.Wav2Vec2Model.from_pretrained(folder, **flag).state_dict()
    except Exception as exc:  # not every 4.x loader reads every layout it writes
        return f"4.x cannot load it ({type(exc).__name__})"
    same = set(state) == set(expected) and all(np.array_equal(v.numpy(), expected[k]) for k, v in state.items())
    return "4.x loads it to the same weights" if same else "4.x loads it to DIFFERENT weights"


def main() -> None:
    import tensorflow as tf
    import torch
    import transformers as tr

    tiny, variants = _tiny()
    tiny = {**tiny, "num_hidden_layers": 2}
    rng = np.random.default_rng(0)
    # float16-exact values stored as float32: the zero low mantissa bits halve the compressed size
    inputs = [rng.standard_normal(n).astype(np.float16).astype(np.float32) for n in LENGTHS]
    padded = np.zeros((len(inputs), max(LENGTHS)), np.float32)
    for row, x in enumerate(inputs):
        padded[row, : len(x)] = x
    kinds = [
        ("stable-flax", "flax", tr.FlaxWav2Vec2ForPreTraining, "stable", SMALL_HEADS, False),
        ("stable-nobias-flax", "flax", tr.FlaxWav2Vec2Model, "stable", {"conv_bias": False}, True),
        ("group-tf", "tf", tr.TFWav2Vec2ForCTC, "group", {}, True),
        ("stable-tf", "tf", tr.TFWav2Vec2Model, "stable", {}, False),
    ]
    for path in OUT.glob("*"):
        shutil.rmtree(path)
    for name, framework, cls, variant, overrides, extra_layouts in kinds:
        folder = OUT / name
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
        reference = {"lengths": np.array(LENGTHS), "input_values": padded}
        for row, (x, out) in enumerate(zip(inputs, outputs)):
            reference[f"row{row}_input_values"] = x
            for k, h in enumerate(out.hidden_states):
                reference[f"row{row}_hidden_state_{k}"] = np.asarray(h)[0]
            last = out.last_hidden_state if hasattr(out, "last_hidden_state") else out.hidden_states[-1]
            reference[f"row{row}_last_hidden_state"] = np.asarray(last)[0]
        np.savez_compressed(folder / "reference.npz", **reference)
        flag = {"from_flax": True} if framework == "flax" else {"from_tf": True}
        converted = tr.Wav2Vec2Model.from_pretrained(folder, **flag).eval()
        state = {k: v.detach().numpy().astype(np.float32) for k, v in converted.state_dict().items()}
        np.savez_compressed(folder / "expected_state_dict.npz", **state)
        with torch.no_grad():  # the 4.x PyTorch port agrees with the Flax/TF model it came from
            pt = converted(torch.from_numpy(inputs[0][None]), output_hidden_states=True).hidden_states
        diff = max(float(np.abs(a[0].numpy() - reference[f"row0_hidden_state_{k}"]).max()) for k, a in enumerate(pt))
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(f"{folder.relative_to(ROOT)}: {size / 1024:.0f} KiB, 4.x PyTorch vs {framework} max diff {diff:.1e}")
        if not extra_layouts:
            continue
        for suffix, kwargs in (("sharded", {"max_shard_size": SHARD_SIZE}), ("safetensors", {"safe_serialization": True})):
            extra = OUT / f"{name}-{suffix}"
            model.save_pretrained(extra, **kwargs)
            files = sorted(p.name for p in extra.iterdir())
            print(f"  {extra.relative_to(ROOT)}: {', '.join(files)}; {_same_state(extra, flag, state)}")


if __name__ == "__main__":
    main()

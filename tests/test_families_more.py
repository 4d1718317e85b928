"""Issue 20's families: MMS adapters, mHuBERT 25 Hz, Wav2Vec2-Conformer, UniSpeech(-SAT).

Each is a tiny random-weight checkpoint saved with its real class and heads, norms, BatchNorm
statistics and adapters away from identity (scripts/make_tiny_checkpoint.py). The contract: two clips
of different lengths extracted in one padded batch equal transformers on each clip alone, every
layer and `last`. transformers itself breaks it for the batch-normed HuBERT and the conformer
(test_transformers_own_padded_batch_differs), so the reference is always the clip alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import MORE_FAMILY_VARIANTS, make_checkpoint
from test_families import _reference
from test_hub_layout import cli, hub_cache
from w2v_embed.embedder import EmbedOptions, Embedder
from w2v_embed.errors import UsageError, W2VEmbedError
from w2v_embed.export import ExportOptions, export_model
from w2v_embed.export.checkpoint import resolve
from w2v_embed.export.reference import load_reference_model
from w2v_embed.export.verify import probe_lengths
from w2v_embed.runtime import OnnxModel

LENGTHS = (21_000, 8_765)


def _clips(seed: int = 31) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in LENGTHS]


def _alone(model, folder: Path, x: np.ndarray) -> dict:
    """transformers on one clip, its input made by transformers' own feature extractor."""
    from transformers import Wav2Vec2FeatureExtractor

    values = Wav2Vec2FeatureExtractor.from_pretrained(folder)(x, sampling_rate=16_000, return_tensors="np")
    return _reference(model, values.input_values[0].astype(np.float32))


def _extract_in_one_batch(path: Path, clips: list[np.ndarray], monkeypatch) -> dict:
    """Embedder features of `clips`, every layer and last, asserting that they ran as one padded batch."""
    layers = (*range(OnnxModel(path, device="cpu").info.num_layers + 1), "last")
    embedder = Embedder(path, device="cpu", options=EmbedOptions(layers, "none", chunk_seconds=0))
    batches, run = [], embedder.model.run
    monkeypatch.setattr(embedder.model, "run", lambda b, lengths, layers: batches.append(sorted(lengths)) or run(b, lengths, layers))
    got = dict(embedder.embed_stream(enumerate(clips)))
    assert batches == [sorted(len(c) for c in clips)]
    return got


@pytest.mark.parametrize("family,variant", MORE_FAMILY_VARIANTS)
def test_two_clips_in_one_padded_batch_equal_each_clip_alone(family, variant, onnx_model, reference_model,
                                                             checkpoint_dir, monkeypatch):
    path = onnx_model(variant, family)
    assert OnnxModel(path, device="cpu").info.model_type == family
    clips = _clips()
    got = _extract_in_one_batch(path, clips, monkeypatch)
    worst = 0.0
    for i, x in enumerate(clips):
        ref = _alone(reference_model(variant, family), checkpoint_dir(variant, family), x)
        assert set(got[i]) == set(ref)  # every layer and last
        for k, want in ref.items():
            assert got[i][k].shape == want.shape
            worst = max(worst, float(np.abs(got[i][k] - want).max()))
    assert worst <= 1e-4, worst


@pytest.mark.parametrize("family,variant", [("hubert", "25hz"), ("wav2vec2-conformer", "relative")])
def test_transformers_own_padded_batch_differs(family, variant, reference_model, checkpoint_dir):
    """Why the reference is the clip alone: transformers' padded batch changes the shorter clip."""
    import torch

    model = reference_model(variant, family)
    short = _clips()[1]
    batch = np.zeros((2, LENGTHS[0]), np.float32)
    batch[1, : len(short)] = short
    mask = (np.arange(LENGTHS[0])[None] < np.array([[LENGTHS[0]], [len(short)]])).astype(np.int64)
    with torch.no_grad():
        padded = model(torch.from_numpy(batch), attention_mask=torch.from_numpy(mask)).last_hidden_state[1].numpy()
        alone = model(torch.from_numpy(short[None])).last_hidden_state[0].numpy()
    assert np.abs(padded[: len(alone)] - alone).max() > 1e-2


def test_25hz_layout_verifies_and_refuses_files_under_its_receptive_field(onnx_model):
    path = onnx_model("25hz", "hubert")
    info = OnnxModel(path, device="cpu").info
    assert (info.grid.hop, info.grid.receptive_field) == (640, 720)
    assert probe_lengths(info.grid)[0] == 720  # the shortest length export verification runs
    embedder = Embedder(path, device="cpu", options=EmbedOptions("last", "none"))
    with pytest.raises(W2VEmbedError, match=r"too short: 719 samples .* needs at least 720"):
        embedder.embed(np.full(719, 0.1, np.float32), 16_000)
    shortest = embedder.embed(np.random.default_rng(1).standard_normal(720).astype(np.float32), 16_000)
    assert shortest["last"].shape == (1, info.hidden_size)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_batch_normed_pos_conv_loads_as_transformers_loads_it(fmt, tmp_path):
    import torch
    from transformers import AutoModel

    folder = make_checkpoint(tmp_path, "25hz", fmt, family="hubert")
    ours = load_reference_model(resolve(str(folder))).state_dict()
    theirs = AutoModel.from_pretrained(folder).state_dict()
    assert ours.keys() == theirs.keys() and "encoder.pos_conv_embed.conv.weight" in ours
    for key, want in theirs.items():
        assert ours[key].shape == want.shape and ours[key].dtype == want.dtype, key  # 0-d stays 0-d
        if fmt == "bin" and key.endswith("num_batches_tracked"):
            continue  # an integer counter, skipped by the .bin reader; inference never reads it
        assert torch.equal(ours[key], want), key


def test_adapter_languages_give_their_own_features_each_equal_to_transformers(checkpoint_dir, onnx_model, tmp_path):
    from transformers import Wav2Vec2ForCTC

    folder = checkpoint_dir("mms")
    x = _clips()[0]
    layers = [0, 1, 2, 3, "last"]
    main = OnnxModel(onnx_model("mms"), device="cpu")
    assert main.info.adapter == ""
    features = {"main": main.run(x[None], [len(x)], layers)}
    for language in ("eng", "fra"):
        result = export_model(str(folder), ExportOptions(output=tmp_path / f"{language}.onnx", adapter=language))
        model = OnnxModel(result.path, device="cpu")
        assert result.report.ok and result.info.adapter == model.info.adapter == language
        features[language] = got = model.run(x[None], [len(x)], layers)
        reference = Wav2Vec2ForCTC.from_pretrained(folder, target_lang=language).wav2vec2.eval()
        want = _reference(reference, x)  # both given the same input values
        assert max(float(np.abs(got[k][0] - want[k]).max()) for k in layers) <= 1e-4
    for a, b in (("main", "eng"), ("main", "fra"), ("eng", "fra")):
        assert np.abs(features[a]["last"] - features[b]["last"]).max() > 0.1, (a, b)


def test_without_adapter_a_note_says_which_and_bin_adapters_load(checkpoint_dir):
    import torch
    from transformers import Wav2Vec2ForCTC

    folder = checkpoint_dir("mms")
    (note,) = resolve(str(folder)).notes
    assert "adapters stored in model.safetensors" in note and "3 adapter languages there: deu, eng, fra" in note
    checkpoint = resolve(str(folder), adapter="deu")
    assert checkpoint.adapter_file.name == "adapter.deu.bin"  # transformers' fallback after .safetensors
    ours = load_reference_model(checkpoint).state_dict()
    theirs = Wav2Vec2ForCTC.from_pretrained(folder, target_lang="deu").wav2vec2.state_dict()
    adapter_keys = [k for k in theirs if ".adapter_layer." in k]
    assert len(adapter_keys) == 3 * 6 and all(torch.equal(ours[k], theirs[k]) for k in adapter_keys)
    assert checkpoint.weights_sha256() != resolve(str(folder)).weights_sha256()


def test_missing_or_misplaced_adapter_is_a_clear_error(checkpoint_dir, tmp_path):
    folder = checkpoint_dir("mms")
    with pytest.raises(W2VEmbedError, match=r"no adapter\.xyz\.safetensors \(or \.bin\); 3 adapter languages there: deu, eng, fra"):
        export_model(str(folder), ExportOptions(output=tmp_path / "m.onnx", adapter="xyz"))
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(UsageError, match="has no attention adapters"):
        resolve(str(checkpoint_dir("stable")), adapter="eng")
    with pytest.raises(UsageError, match="expected a language id"):
        resolve(str(folder), adapter="../eng")
    from safetensors.numpy import load_file, save_file

    other = tmp_path / "other"
    other.mkdir()
    for f in folder.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(folder / "adapter.eng.safetensors"))
    weights.pop("wav2vec2.encoder.layers.2.adapter_layer.linear_2.bias")
    save_file(weights, str(other / "adapter.eng.safetensors"))
    with pytest.raises(W2VEmbedError, match="not an adapter file for this checkpoint: it lacks encoder.layers.2"):
        load_reference_model(resolve(str(other), adapter="eng"))


def test_adapter_from_the_hub_cache_offline(checkpoint_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    folder = checkpoint_dir("mms")
    files = {f.name: f.read_bytes() for f in folder.iterdir() if f.name != "adapter.deu.bin"}
    cache = hub_cache(tmp_path / "cache", files, "tiny/mms-1b-all")
    checkpoint = resolve("tiny/mms-1b-all", cache_dir=str(cache), adapter="fra")
    assert checkpoint.adapter == "fra" and checkpoint.adapter_file.name == "adapter.fra.safetensors"
    with pytest.raises(W2VEmbedError, match="tiny/mms-1b-all has no adapter.deu.safetensors .*: eng, fra"):
        resolve("tiny/mms-1b-all", cache_dir=str(cache), adapter="deu")


def test_cli_recipe_adapter_from_the_hub_cache(checkpoint_dir, tmp_path):
    """docs/families.md's recipe, offline from a hub cache holding a stand-in for facebook/mms-1b-all."""
    files = {f.name: f.read_bytes() for f in checkpoint_dir("mms").iterdir()}
    cache = hub_cache(tmp_path / "cache", files, "facebook/mms-1b-all")
    proc = cli("export", "facebook/mms-1b-all", "--adapter", "fra", "-o", "models/mms-fra.onnx", cache=cache, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert OnnxModel(tmp_path / "models" / "mms-fra.onnx", device="cpu").info.adapter == "fra"
    proc = cli("export", "facebook/mms-1b-all", "--adapter", "xyz", "-o", "x.onnx", cache=cache, cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "no adapter.xyz.safetensors" in proc.stderr and "deu, eng, fra" in proc.stderr


def test_buffers_computed_from_the_config_need_not_be_in_the_checkpoint(checkpoint_dir, reference_model, tmp_path):
    """Rotary frequencies absent from a checkpoint (older conversions) are computed as transformers does;
    the relative sinusoid table is never saved (non-persistent) and is built the same way."""
    import torch
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "rope"
    folder.mkdir()
    source = checkpoint_dir("rotary", "wav2vec2-conformer")
    for f in source.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(source / "model.safetensors"))
    del weights["wav2vec2_conformer.encoder.embed_positions.inv_freq"]
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    ours = load_reference_model(resolve(str(folder)))
    want = reference_model("rotary", "wav2vec2-conformer").encoder.embed_positions.inv_freq
    assert torch.equal(ours.encoder.embed_positions.inv_freq, want)
    relative = load_reference_model(resolve(str(checkpoint_dir("relative", "wav2vec2-conformer"))))
    table = relative.encoder.embed_positions.pe
    assert table.device.type == "cpu" and torch.equal(table, reference_model("relative", "wav2vec2-conformer").encoder.embed_positions.pe)

"""The seed model as it is really published: weights in a sub-folder of the hub repository.

`flax-community/wav2vec2-german` keeps config.json, preprocessor_config.json, the training scripts and
the model card at the root of `main`, and the Flax pretraining output (config.json +
flax_model.msgpack + TensorBoard events) in `german-1st/`. The offline hub cache below is laid out
as huggingface_hub writes it (refs/, blobs/ addressed by hash, snapshots/<commit>/ of symlinks), with
weights written by the real Flax implementation (tests/fixtures, scripts/make_format_fixtures.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from w2v_embed.errors import W2VEmbedError
from w2v_embed.export import ExportOptions, export_model
from w2v_embed.export.checkpoint import resolve, weight_folders
from w2v_embed.runtime import OnnxModel

FLAX = ROOT / "tests" / "fixtures" / "checkpoints" / "stable-flax"
REPO = "flax-community/wav2vec2-german"
COMMIT = "93b0c01" + "0" * 33
# The root config the repository was later "adapted" to: not what german-1st/ was trained with.
ROOT_CONFIG_CHANGES = {"hidden_size": 1024, "num_hidden_layers": 24, "feat_extract_norm": "layer"}


def seed_repository(extra_checkpoints: tuple[str, ...] = ()) -> dict[str, bytes]:
    """path in the repository -> content, as the seed repository is laid out."""
    config = json.loads((FLAX / "config.json").read_text())
    files = {
        ".gitattributes": b"*.msgpack filter=lfs diff=lfs merge=lfs -text\n",
        "README.md": b"---\nlanguage: de\n---\n# wav2vec2-german\n`model(input_values).last_hidden_state`\n",
        "config.json": json.dumps({**config, **ROOT_CONFIG_CHANGES}, indent=2).encode(),
        "preprocessor_config.json": json.dumps({
            "do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
            "padding_side": "right", "padding_value": 0.0, "return_attention_mask": True, "sampling_rate": 16000,
        }).encode(),
        "requirements.txt": b"jax\nflax\noptax\ntransformers\n",
        "run_dummy.sh": b"#!/bin/sh\npython run_wav2vec2_pretrain_flax.py --output_dir=./dummy\n",
        "run_german.sh": b"#!/bin/sh\npython run_wav2vec2_pretrain_flax.py --output_dir=./german-1st\n",
        "run_wav2vec2_pretrain_flax.py": b"# transformers' Flax wav2vec2 pretraining example\n",
    }
    for folder in ("german-1st", *extra_checkpoints):
        files[f"{folder}/config.json"] = (FLAX / "config.json").read_bytes()
        files[f"{folder}/flax_model.msgpack"] = (FLAX / "flax_model.msgpack").read_bytes()
        files[f"{folder}/events.out.tfevents.1625761231.t1v-n-a8e6d2cf-w-0.1234.3.v2"] = b"\x00" * 64
    return files


def hub_cache(root: Path, files: dict[str, bytes], repo_id: str = REPO, commit: str = COMMIT) -> Path:
    """huggingface_hub's cache layout: blobs by content hash, a snapshot of relative symlinks, refs/main."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    for name, content in files.items():
        blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return root


def cli(*args: str, cache: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(cwd / "hf-home")}
    return subprocess.run([sys.executable, "-m", "w2v_embed", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_weight_folders_of_the_real_listing():
    listing = list(seed_repository())
    assert weight_folders(listing) == ["german-1st"]
    assert weight_folders(listing, "german-1st") == []  # the asked-for folder itself is not a sub-folder
    assert weight_folders([*listing, "b/config.json", "b/model.safetensors.index.json", "c/model.safetensors"]) == [
        "b", "german-1st"]  # c has no config.json


def test_seed_layout_exports_with_no_flag(tmp_path):
    cache = hub_cache(tmp_path / "hub", seed_repository())
    proc = cli("export", REPO, "-o", "german.onnx", cache=cache, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 2 and "german-1st/" in notes[0], proc.stderr
    assert "root config.json differs" in notes[1] and "hidden_size 1024 vs 32" in notes[1], proc.stderr
    model = OnnxModel(tmp_path / "german.onnx", device="cpu")
    info = model.info
    assert (info.source, info.revision, info.subfolder) == (REPO, COMMIT, "german-1st")
    assert info.do_stable_layer_norm and info.hidden_size == 32  # german-1st/config.json, not the root one
    assert info.do_normalize  # the root preprocessor_config.json: none beside the weights
    # `last` is the Flax model's own last_hidden_state.
    reference = np.load(FLAX / "reference.npz")
    for row in range(len(reference["lengths"])):
        x = reference[f"row{row}_input_values"]
        got = model.run(x[None], [len(x)], ["last"])["last"][0]
        assert np.abs(got - reference[f"row{row}_last_hidden_state"]).max() <= 1e-4


def test_several_checkpoint_folders_need_subfolder(tmp_path):
    cache = hub_cache(tmp_path / "hub", seed_repository(extra_checkpoints=("german-2nd",)))
    proc = cli("export", REPO, "-o", "x.onnx", cache=cache, cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr
    assert "german-1st, german-2nd" in errors[0] and "--subfolder" in errors[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "x.onnx").exists()
    proc = cli("export", REPO, "--subfolder", "german-2nd", "-o", "x.onnx", "--no-verify", cache=cache, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "note:" not in proc.stderr and OnnxModel(tmp_path / "x.onnx", device="cpu").info.subfolder == "german-2nd"


def test_no_weights_anywhere_is_todays_error(tmp_path):
    files = {k: v for k, v in seed_repository().items() if not k.endswith(".msgpack")}
    proc = cli("export", REPO, "-o", "x.onnx", cache=hub_cache(tmp_path / "hub", files), cwd=tmp_path)
    assert proc.returncode == 1 and "none of the weights files" in proc.stderr, proc.stderr


def test_cloned_repository_folder(tmp_path):
    clone = tmp_path / "wav2vec2-german"
    for name, content in seed_repository().items():
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        (clone / name).write_bytes(content)
    (clone / ".git" / "german-9th").mkdir(parents=True)  # git internals are not looked at
    shutil.copy(FLAX / "config.json", clone / ".git" / "german-9th" / "config.json")
    shutil.copy(FLAX / "flax_model.msgpack", clone / ".git" / "german-9th" / "flax_model.msgpack")
    checkpoint = resolve(str(clone))
    assert checkpoint.folder == clone / "german-1st" and checkpoint.subfolder == "german-1st"
    assert checkpoint.preprocessor == clone / "preprocessor_config.json" and len(checkpoint.notes) == 2
    notes: list[str] = []
    result = export_model(str(clone), ExportOptions(output=tmp_path / "clone.onnx"), notify=notes.append)
    assert result.report.ok and result.info.subfolder == "german-1st" and notes == list(checkpoint.notes)


def test_subfolder_asked_for_of_a_local_folder(tmp_path):
    clone = tmp_path / "repo"
    shutil.copytree(FLAX, clone / "german-1st")
    assert resolve(str(clone), subfolder="german-1st").notes == ()
    with pytest.raises(W2VEmbedError, match="no config.json"):
        resolve(str(clone))  # a folder without config.json is not a checkpoint (nor a repository root)


def test_a_name_that_is_neither_a_folder_nor_cached_says_both(tmp_path):
    """`export nosuchdir`: a mistyped folder reads as a hub id; the one line says it is neither."""
    proc = cli("export", "nosuchdir", "-o", "x.onnx", cache=hub_cache(tmp_path / "hub", seed_repository()), cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "no folder nosuchdir here" in errors[0] and "HF_HUB_OFFLINE" in errors[0]


def test_a_checkpoint_only_in_a_sub_folder_is_named_with_subfolder_cached_or_cloned(tmp_path):
    """No root config.json: the one line names the sub-folder that holds a checkpoint, for the hub cache
    (it used to say the repository was not cached) and for a cloned folder alike; --subfolder then works."""
    files = {k: v for k, v in seed_repository().items() if k != "config.json"}
    proc = cli("export", REPO, "-o", "x.onnx", cache=hub_cache(tmp_path / "hub", files), cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr
    assert "no config.json at its root" in errors[0] and "--subfolder german-1st" in errors[0], errors[0]
    clone = tmp_path / "clone"
    for name, content in files.items():
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        (clone / name).write_bytes(content)
    with pytest.raises(W2VEmbedError, match=r"clone: no config\.json at its root, but sub-folder german-1st holds a "
                                            r"checkpoint: pick it with --subfolder german-1st"):
        resolve(str(clone))
    assert resolve(str(clone), subfolder="german-1st").folder == clone / "german-1st"


def test_revision_with_a_local_folder_is_refused_not_recorded(tmp_path):
    """A folder has no revisions: --revision would be written into the model's metadata as its provenance."""
    from w2v_embed.errors import UsageError

    with pytest.raises(UsageError, match=r"--revision abc: .* is a local folder"):
        resolve(str(FLAX), revision="abc")

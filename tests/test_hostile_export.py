"""Issue 17, export and model metadata: hostile checkpoints, configs and edited models are refused with
one line naming what is wrong, and nothing in a checkpoint is dropped silently."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from audio_utils import sine, write_audio
from conftest import make_checkpoint
from w2v_embed.errors import UsageError, W2VEmbedError


def _edited_checkpoint(source: Path, folder: Path, config: object) -> Path:
    """A copy of `source` whose config.json is `config` (a dict of changes, or any JSON value instead)."""
    shutil.copytree(source, folder)
    path = folder / "config.json"
    value = {**json.loads(path.read_text()), **config} if isinstance(config, dict) else config
    path.write_text(json.dumps(value))
    return folder


def _export(folder: Path, out: Path, **options: object):
    from w2v_embed.export import ExportOptions, export_model

    return export_model(str(folder), ExportOptions(output=out, **options))


def test_config_with_fewer_layers_than_the_checkpoint_is_refused(checkpoint_dir, tmp_path):
    folder = _edited_checkpoint(checkpoint_dir("group"), tmp_path / "one-layer", {"num_hidden_layers": 1})
    with pytest.raises(W2VEmbedError) as caught:
        _export(folder, tmp_path / "x.onnx")
    message = str(caught.value)
    # 2 unused layers × 16 tensors each (q, k, v, out, 2 FFN: weight + bias; 2 LayerNorms)
    assert message.startswith("model.safetensors: 32 weights (encoder.layers.1.")
    assert "the checkpoint has 3 encoder layers, config.json's num_hidden_layers is 1" in message
    assert "\n" not in message and not (tmp_path / "x.onnx").exists()


def _with_extra_tensors(source: Path, folder: Path, extra: dict[str, np.ndarray]) -> Path:
    from safetensors.numpy import load_file, save_file

    shutil.copytree(source, folder)
    weights = folder / "model.safetensors"
    save_file({**load_file(weights), **extra}, weights, metadata={"format": "pt"})
    return folder


@pytest.mark.parametrize("name", ["wav2vec2.encoder.layers.0.attention.gate.weight", "wav2vec2.adapter.proj.weight",
                                  "mystery_head.weight"])
def test_weights_neither_of_the_encoder_nor_a_known_head_are_refused_by_name(checkpoint_dir, tmp_path, name):
    # The fixture is Wav2Vec2ForPreTraining: its quantizer, project_q and project_hid are known heads (dropped).
    folder = _with_extra_tensors(checkpoint_dir("group"), tmp_path / "extra", {name: np.ones((4, 4), np.float32)})
    shown = name.removeprefix("wav2vec2.") if ".encoder." in name else name
    with pytest.raises(W2VEmbedError, match=rf"^model\.safetensors: 1 weight \({re.escape(shown)}\) not used by the model"):
        _export(folder, tmp_path / "x.onnx")


def test_known_heads_are_still_dropped(checkpoint_dir, tmp_path):
    from w2v_embed.export.weights import find_weights, read_state_dict

    heads = {"lm_head.weight": np.ones((8, 32), np.float32), "wav2vec2.masked_spec_embed": np.ones(32, np.float32),
             "classifier.weight": np.ones((2, 8), np.float32), "layer_weights": np.ones(4, np.float32),
             "feature_extractor.weight": np.ones((8, 8), np.float32)}  # ForXVector's own Linear, outside wav2vec2.
    folder = _with_extra_tensors(checkpoint_dir("group"), tmp_path / "heads", heads)
    names = set(read_state_dict(find_weights(folder)))
    assert "masked_spec_embed" in names and not names & {"lm_head.weight", "classifier.weight", "layer_weights",
                                                         "feature_extractor.weight"}
    assert not any(n.startswith(("quantizer", "project_q", "project_hid")) for n in names)


def test_weights_the_exported_graph_does_not_apply_are_refused(tmp_path, monkeypatch):
    # MMS-style attention adapters: Wav2Vec2Model applies them; a forward pass that skips them (as the
    # export's did before issue 20) must be refused by name, not found as a verification mismatch.
    from w2v_embed.export.families import wav2vec2

    def without_adapters(self, layer, x, bias):
        x = x + layer.dropout(self._attention(layer.attention, layer.layer_norm(x), bias))
        return x + layer.feed_forward(layer.final_layer_norm(x))

    monkeypatch.setattr(wav2vec2.Exportable, "_layer", without_adapters)
    folder = make_checkpoint(tmp_path / "adapters", "stable", adapter_attn_dim=8)
    with pytest.raises(W2VEmbedError, match=r"^\d+ weights \(encoder\.layers\.0\.adapter_layer\..*not used by the wav2vec2 export"):
        _export(folder, tmp_path / "x.onnx", verify=False)  # verification would catch it; --no-verify must too


HOSTILE_CONFIGS = [
    ({"num_hidden_layers": 0}, "num_hidden_layers 0: expected an integer from 1 to 1024"),
    ({"hidden_size": -32}, "hidden_size -32: expected an integer from 1 to 65536"),
    ({"num_attention_heads": 0}, "num_attention_heads 0: expected an integer from 1"),
    ({"conv_stride": [5, 2, 2, 2, 2, 2, 0]}, r"conv_stride \[5, 2, 2, 2, 2, 2, 0\]: expected a non-empty list of integers"),
    ({"hidden_size": 1e12}, r"hidden_size 1000000000000\.0: expected an integer"),
    ({"hidden_size": 10**12}, "hidden_size 1000000000000: expected an integer from 1 to 65536"),
    ({"hidden_size": "32"}, "hidden_size '32': expected an integer"),
    ({"hidden_size": 33}, "hidden_size 33 is not divisible by num_attention_heads 2"),
    ({"num_conv_pos_embedding_groups": 3}, "hidden_size 32 is not divisible by num_conv_pos_embedding_groups 3"),
    ({"conv_kernel": [10, 3, 3]}, r"conv layer lists of different lengths \(conv_dim 7, conv_kernel 3, conv_stride 7\)"),
    ({"conv_dim": [], "conv_kernel": [], "conv_stride": []}, r"conv_dim \[\]: expected a non-empty list"),
    ({"intermediate_size": 0}, "intermediate_size 0: expected an integer"),
    ([], r"expected a JSON object \{\.\.\.\}, found a list"),
    (None, r"expected a JSON object \{\.\.\.\}, found null"),
    ({"hidden_act": "no-such-activation"}, r"cannot build the model it describes \(KeyError: 'no-such-activation'\)"),
]


@pytest.mark.parametrize("config, expected", HOSTILE_CONFIGS, ids=[str(c)[:40] for c, _ in HOSTILE_CONFIGS])
def test_hostile_config_is_one_line_naming_the_field_before_the_weights_are_read(
    checkpoint_dir, tmp_path, monkeypatch, config, expected
):
    from w2v_embed.export import reference

    def heavy(*_: object) -> None:
        raise AssertionError("the weights were read")

    monkeypatch.setattr(reference, "read_state_dict", heavy)
    folder = _edited_checkpoint(checkpoint_dir("group"), tmp_path / "ckpt", config)
    with pytest.raises(W2VEmbedError, match=rf"^{re.escape(str(folder / 'config.json'))}: {expected}") as caught:
        _export(folder, tmp_path / "x.onnx")
    assert "\n" not in str(caught.value)


def test_hostile_config_through_the_cli_is_one_red_line(checkpoint_dir, tmp_path):
    from typer.testing import CliRunner

    from w2v_embed.cli import app

    folder = _edited_checkpoint(checkpoint_dir("group"), tmp_path / "ckpt", {"num_hidden_layers": 0})
    result = CliRunner().invoke(app, ["export", str(folder), "-o", str(tmp_path / "x.onnx")])
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(lines) == 1 and "num_hidden_layers 0" in lines[0], result.output
    assert "Traceback" not in result.output


# --- torch's weights_only loader refusing a .bin ---------------------------------------------------


class _NotATensor:
    """Pickles as a call of os.getcwd: harmless, and exactly what weights_only refuses to run."""

    def __reduce__(self) -> tuple:
        return (os.getcwd, ())


@pytest.mark.parametrize("extra", [_NotATensor(), np.zeros(3)], ids=["callable", "numpy-array"])
def test_bin_with_objects_is_refused_for_safety_not_called_damaged(checkpoint_dir, tmp_path, extra):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(checkpoint_dir("group"), folder)
    weights = folder / "model.safetensors"
    torch.save({**load_file(weights), "extra": extra}, folder / "pytorch_model.bin")
    weights.unlink()
    with pytest.raises(W2VEmbedError) as caught:
        _export(folder, tmp_path / "x.onnx")
    message = str(caught.value)
    assert "pytorch_model.bin: holds Python code or objects besides tensors" in message
    assert "not loaded for safety" in message and "safetensors" in message
    assert "damaged" not in message and "truncated" not in message  # a zip-format file is whole


def test_the_documented_conversion_of_a_trusted_bin_makes_it_exportable(checkpoint_dir, tmp_path):
    import shlex
    import subprocess
    import sys

    import torch
    from safetensors.torch import load_file

    from conftest import ROOT

    folder = tmp_path / "trusted"
    shutil.copytree(checkpoint_dir("group"), folder)
    weights = folder / "model.safetensors"
    torch.save({"state_dict": {**load_file(weights), "step": np.int64(7)}}, folder / "pytorch_model.bin")
    weights.unlink()
    with pytest.raises(W2VEmbedError, match="not loaded for safety"):
        _export(folder, tmp_path / "x.onnx", verify=False)
    doc = (ROOT / "docs" / "export-checks.md").read_text()
    command = shlex.split(re.search(r"```bash\n(python -c .*?)\n```", doc, re.S).group(1))
    subprocess.run([sys.executable, *command[1:]], cwd=folder, check=True, timeout=120)
    assert _export(folder, tmp_path / "x.onnx").report.ok


# --- --subfolder must stay inside the repository ---------------------------------------------------


@pytest.fixture
def repository(checkpoint_dir, tmp_path) -> Path:
    """repo/ (a checkpoint in sub-folder inner/) beside another checkpoint, sibling/."""
    repo = tmp_path / "repo"
    shutil.copytree(checkpoint_dir("group"), repo / "inner")
    shutil.copytree(checkpoint_dir("stable"), tmp_path / "sibling")
    return repo


@pytest.mark.parametrize("subfolder", ["../sibling", "inner/../../sibling", "ABSOLUTE", "link"])
def test_subfolder_escaping_the_repository_is_refused(repository, subfolder):
    from w2v_embed.export.checkpoint import resolve

    sibling = repository.parent / "sibling"
    (repository / "link").symlink_to(sibling, target_is_directory=True)
    subfolder = str(sibling) if subfolder == "ABSOLUTE" else subfolder
    with pytest.raises(UsageError, match=rf"^--subfolder {re.escape(subfolder)}: not inside {re.escape(str(repository))}; give a folder within the repository$"):
        resolve(str(repository), subfolder=subfolder)


def test_subfolder_inside_the_repository_still_works(repository):
    from w2v_embed.export.checkpoint import resolve

    (repository / "alias").symlink_to(repository / "inner", target_is_directory=True)  # a link that stays inside
    assert resolve(str(repository), subfolder="inner").folder == repository / "inner"
    assert resolve(str(repository), subfolder="alias").subfolder == "alias"


def test_subfolder_of_a_hub_id_cannot_climb_out_of_it():
    from w2v_embed.export.checkpoint import resolve

    with pytest.raises(UsageError, match=r"^--subfolder \.\./other: not inside owner/name"):
        resolve("owner/name", subfolder="../other")


# --- an exported model with edited metadata ---------------------------------------------------------


def _edited_model(source: Path, path: Path, **values: str) -> Path:
    """A copy of an exported model with some metadata values replaced (raw strings, as stored)."""
    import onnx

    proto = onnx.load(str(source))
    for prop in proto.metadata_props:
        key = prop.key.removeprefix("w2v_embed.")
        if key in values:
            prop.value = values[key]
    onnx.save_model(proto, str(path))
    return path


EDITED_METADATA = [
    ({"conv_kernel": "[]"}, r"conv_kernel \(\): expected a non-empty list of integers"),
    ({"num_layers": "1000000"}, "num_layers 1000000: expected an integer from 1 to 1024"),
    ({"sample_rate": '"16000"'}, "sample_rate '16000': expected an integer from 1000 to 768000"),
    ({"sample_rate": "sixteen thousand"}, "sample_rate 'sixteen thousand': expected an integer"),
    ({"conv_stride": "[0, 0, 0, 0, 0, 0, 0]"}, r"conv_stride \(0, 0, 0, 0, 0, 0, 0\): expected a non-empty list"),
    ({"hidden_size": "-1"}, "hidden_size -1: expected an integer from 1 to 65536"),
    ({"do_normalize": '"yes"'}, "do_normalize 'yes': expected a bool"),
    ({"conv_kernel": "[10, 3]"}, r"conv layer lists of different lengths \(conv_kernel 2, conv_stride 7\)"),
]


@pytest.mark.parametrize("values, expected", EDITED_METADATA, ids=[next(iter(v)) + "=" + next(iter(v.values())) for v, _ in EDITED_METADATA])
def test_model_with_invalid_metadata_is_refused_when_loaded(onnx_model, tmp_path, values, expected):
    from w2v_embed.runtime import OnnxModel

    model = _edited_model(onnx_model("group"), tmp_path / "edited.onnx", **values)
    with pytest.raises(W2VEmbedError, match=rf"^{re.escape(str(model))}: the model's metadata is invalid \({expected}"):
        OnnxModel(model, device="cpu")


@pytest.mark.parametrize("command", ["info", "extract"])
def test_info_and_extract_on_a_model_with_invalid_metadata_are_one_line_exit_1(onnx_model, tmp_path, command):
    from typer.testing import CliRunner

    from w2v_embed.cli import app

    model = _edited_model(onnx_model("group"), tmp_path / "edited.onnx", hidden_size="-1")
    wav = write_audio(tmp_path / "a.wav", sine(1.0, 16_000), 16_000)
    args = [str(model)] if command == "info" else [str(wav), "-o", str(tmp_path / "o.h5"), "-m", str(model)]
    result = CliRunner().invoke(app, [command, *args], env={"COLUMNS": "400"})
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"error: {model}: the model's metadata is invalid (hidden_size -1: expected an integer from 1 to 65536); "
        "export the model again"
    ]


# --- `info` on outputs shows what applies; `extract --help` reads right -----------------------------


def _info_keys(path: Path) -> set[str]:
    from typer.testing import CliRunner

    from w2v_embed.cli import app

    result = CliRunner().invoke(app, ["info", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return {line.strip("│ ").split(" ")[0] for line in result.output.splitlines() if line.startswith("│")}


def test_info_shows_only_the_fields_that_apply_to_the_run(onnx_model, tmp_path):
    from typer.testing import CliRunner

    from w2v_embed.cli import app

    wav = write_audio(tmp_path / "a.wav", sine(1.5, 16_000), 16_000)
    segments = tmp_path / "segments.tsv"
    segments.write_text(f"path\tstart\tend\n{wav}\t0.0\t1.0\n")
    runs = {
        "plain": [], "window": ["--window", "0.5"], "shard": ["--shard", "0/1"], "segments": ["--segments", str(segments)],
    }
    keys = {}
    for name, options in runs.items():
        out = tmp_path / f"{name}.h5"
        inputs = [] if name == "segments" else [str(wav)]
        result = CliRunner().invoke(app, ["extract", *inputs, "-o", str(out), "-m", str(onnx_model("group")), *options])
        assert result.exit_code == 0, result.output
        keys[name] = _info_keys(out)
    optional = {"shard", "shard_files", "total_files", "window_seconds", "hop_seconds", "segments"}
    assert "model" in keys["plain"] and "pooling" in keys["plain"]
    assert keys["plain"] & optional == set()
    assert keys["window"] & optional == {"window_seconds", "hop_seconds"}
    assert keys["shard"] & optional == {"shard", "shard_files", "total_files"}
    assert keys["segments"] & optional == {"segments"}


def test_extract_help_has_no_stray_space_before_a_period():
    from typer.testing import CliRunner

    from w2v_embed.cli import app

    for command in ("extract", "export"):
        text = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "300"}).output
        stray = re.findall(r".{0,40}\w \.(?=\s|$)", text, re.M)  # a sentence ending " ." (not "an .rttm", "./x")
        assert not stray, stray
    text = CliRunner().invoke(app, ["extract", "--help"], env={"COLUMNS": "300"}).output
    assert "(default: --window, no overlap)" in text and "(default: 4 on CPU, 32 on GPU)" in text

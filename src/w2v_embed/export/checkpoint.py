"""Find a checkpoint (local folder or Hugging Face hub id) and load it as the reference PyTorch model.

Export-only: imports of huggingface_hub, torch and transformers happen inside the functions and
fail with an actionable message when the `export` extra is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import W2VEmbedError
from .weights import WEIGHT_FILES, find_weights, read_state_dict

SUPPORTED_MODEL_TYPES = ("wav2vec2",)
# Keys of Wav2Vec2Model that inference never reads; checkpoints may lack them.
OPTIONAL_KEYS = ("masked_spec_embed",)


def require_export_extra(module: str) -> Any:
    """Import a heavy export-time dependency, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise W2VEmbedError(
            f"`{module}` is needed to export models; install the export extra: "
            "pip install torch==2.13.0 && pip install 'w2v-embed[export]'"
        ) from exc


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint on local disk, with where it came from."""

    folder: Path
    source: str
    revision: str | None
    weights: list[Path]

    @property
    def config(self) -> dict[str, Any]:
        return _read_json(self.folder / "config.json")

    @property
    def do_normalize(self) -> bool:
        """From preprocessor_config.json; transformers' feature extractor defaults to True."""
        path = self.folder / "preprocessor_config.json"
        return bool(_read_json(path).get("do_normalize", True)) if path.exists() else True

    def weights_sha256(self) -> str:
        digest = hashlib.sha256()
        for path in self.weights:
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise W2VEmbedError(f"{path}: not found (a checkpoint folder needs config.json)") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise W2VEmbedError(f"{path}: not valid JSON ({exc})") from exc


def resolve(
    source: str, revision: str | None = None, subfolder: str | None = None, cache_dir: str | None = None
) -> Checkpoint:
    """A local folder is used as is; anything else is taken as a hub id and downloaded (or read from cache)."""
    local = Path(source) / (subfolder or "")
    if local.is_dir():
        if not (local / "config.json").exists():
            raise W2VEmbedError(f"{local}: no config.json here; is this a wav2vec2 checkpoint folder?")
        return Checkpoint(local, source, revision, find_weights(local))
    if Path(source).exists() or source.startswith((".", "/")) or source.count("/") > 1:
        raise W2VEmbedError(f"{source}: not a checkpoint folder (and not a hub id like owner/name)")
    return _download(source, revision, subfolder, cache_dir)


def _download(repo_id: str, revision: str | None, subfolder: str | None, cache_dir: str | None) -> Checkpoint:
    """Fetch config, preprocessor config and the first weights format the repo has."""
    hub = require_export_extra("huggingface_hub")
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    def fetch(name: str) -> Path:
        return Path(
            hub.hf_hub_download(repo_id, name, subfolder=subfolder, revision=revision, cache_dir=cache_dir)
        )

    try:
        config = fetch("config.json")
    except LocalEntryNotFoundError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        why = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached"
        raise W2VEmbedError(
            f"cannot download {repo_id}: {why} and it is not in the local cache; "
            "download the checkpoint elsewhere and pass its folder instead: w2v-embed export path/to/checkpoint"
        ) from exc
    except (RepositoryNotFoundError, EntryNotFoundError) as exc:
        raise W2VEmbedError(f"{repo_id}: no such model repository (or no config.json in it) on the hub") from exc
    folder = config.parent
    for optional in ("preprocessor_config.json",):
        try:
            fetch(optional)
        except (EntryNotFoundError, LocalEntryNotFoundError):
            pass
    for name in WEIGHT_FILES:
        for candidate in (f"{name}.index.json", name):
            try:
                path = fetch(candidate)
            except (EntryNotFoundError, LocalEntryNotFoundError):
                continue
            if candidate.endswith(".index.json"):
                for shard in sorted(set(_read_json(path).get("weight_map", {}).values())):
                    fetch(shard)
            snapshot_revision = folder.name if subfolder is None else folder.parent.name
            return Checkpoint(folder, repo_id, revision or snapshot_revision, find_weights(folder))
    raise W2VEmbedError(f"{repo_id}: the repository has none of the weights files {', '.join(WEIGHT_FILES)}")


def load_reference_model(checkpoint: Checkpoint) -> Any:
    """The transformers PyTorch Wav2Vec2Model with the checkpoint's encoder weights (heads dropped)."""
    torch = require_export_extra("torch")
    transformers = require_export_extra("transformers")
    config_dict = checkpoint.config
    model_type = config_dict.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise W2VEmbedError(
            f"{checkpoint.folder / 'config.json'}: model_type {model_type!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    try:
        config = transformers.Wav2Vec2Config.from_pretrained(checkpoint.folder)
    except Exception as exc:  # transformers raises several kinds for a bad config
        raise W2VEmbedError(f"{checkpoint.folder / 'config.json'}: cannot read config ({exc})") from exc
    model = transformers.Wav2Vec2Model(config).eval()
    arrays = read_state_dict(checkpoint.weights)
    expected = model.state_dict()
    weights_name = checkpoint.weights[0].name
    missing = [k for k in expected if k not in arrays and k not in OPTIONAL_KEYS]
    if missing:
        raise W2VEmbedError(
            f"{weights_name}: {len(missing)} encoder weights missing (e.g. {missing[0]}); "
            "does it belong to this config.json?"
        )
    for key, tensor in expected.items():
        if key in arrays and tuple(arrays[key].shape) != tuple(tensor.shape):
            raise W2VEmbedError(
                f"{weights_name}: {key} has shape {tuple(arrays[key].shape)} but config.json implies "
                f"{tuple(tensor.shape)}"
            )
    state = {k: torch.from_numpy(v) for k, v in arrays.items() if k in expected}
    model.load_state_dict(state, strict=False)
    return model

"""Find a checkpoint: a local folder or a Hugging Face hub id (its files, sub-folder, adapter); reference.py
loads it as the PyTorch model.

Export-only: imports of huggingface_hub, torch and transformers happen inside the functions and
fail with an actionable message when the `export` extra is missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError, W2VEmbedError
from ..runtime.cache import hash_files
from . import adapters
from .weights import INDEX_SUFFIX, WEIGHT_FILES, find_weights


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


# Config fields that change the network; a root config.json that differs in one of them from the one
# saved beside the weights is worth a note (the one beside the weights is what they were trained with).
ARCHITECTURE_FIELDS = (
    "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "conv_dim", "conv_kernel", "conv_stride", "conv_bias", "feat_extract_norm", "feat_extract_activation",
    "do_stable_layer_norm", "num_conv_pos_embeddings", "num_conv_pos_embedding_groups", "layer_norm_eps",
)
CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
# What `extract` feeds each front end, in the feature extractor's own words (Wav2Vec2FeatureExtractor,
# SeamlessM4TFeatureExtractor); a checkpoint asking for something else is refused at export.
FED_INPUT: dict[str, dict[str, object]] = {
    "waveform": {"sampling_rate": 16000, "feature_size": 1},
    "fbank": {"sampling_rate": 16000, "feature_size": 80, "num_mel_bins": 80, "stride": 2},
}


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint on local disk, with where it came from."""

    folder: Path
    source: str
    revision: str | None
    weights: list[Path]
    subfolder: str = ""  # where in the repository (or folder) the weights are; "" = its root
    preprocessor: Path | None = None  # beside the weights, else the repository root's
    notes: tuple[str, ...] = ()  # what the user should be told: a folder found for them, a differing config
    adapter: str = ""  # the MMS language whose adapter file replaces the main file's adapters ("" = none)
    adapter_file: Path | None = None

    @property
    def config(self) -> dict[str, Any]:
        return _read_json(self.folder / CONFIG)

    @property
    def do_normalize(self) -> bool:
        """From preprocessor_config.json; transformers' feature extractor defaults to True."""
        path = self.preprocessor
        return bool(_read_json(path).get("do_normalize", True)) if path is not None and path.exists() else True

    def check_feature_extractor(self, frontend: str) -> None:
        """Refuse a preprocessor_config.json that asks for input other than what `extract` feeds this
        front end: an 8 kHz telephony model would get 16 kHz audio silently (transformers' feature
        extractor refuses the mismatched rate), a w2v-BERT with other fbank settings the wrong features."""
        path = self.preprocessor
        if path is None or not path.exists():
            return
        settings = _read_json(path)
        for field, fed in FED_INPUT[frontend].items():
            if field in settings and settings[field] != fed:
                raise W2VEmbedError(f"{path}: {field} {settings[field]}, but w2v-embed feeds {frontend} models "
                                    f"{field} {fed}; this model is not supported")

    def weights_sha256(self) -> str:
        """Of the weights the model is built from: the files, then the adapter file if any."""
        return hash_files([*self.weights, *([self.adapter_file] if self.adapter_file else [])])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise W2VEmbedError(f"{path}: not found (a checkpoint folder needs config.json)") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise W2VEmbedError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(value, dict):  # `null` or a list parse, then fail on the first .get()
        kind = "null" if value is None else {list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")
        raise W2VEmbedError(f"{path}: expected a JSON object {{...}}, found {kind}")
    return value


def weight_folders(files: Iterable[str], under: str = "") -> list[str]:
    """Folders of a repository listing ('a/b/file' paths) below `under` that hold config.json and weights.

    Pretraining scripts save into an output folder, so published repositories often keep the weights
    in a sub-folder beside the training scripts (flax-community/wav2vec2-german: `german-1st/`).
    """
    names: dict[str, set[str]] = {}
    for file in files:
        folder, _, name = file.strip("/").rpartition("/")
        names.setdefault(folder, set()).add(name)
    weights = {*WEIGHT_FILES, *(f"{n}{INDEX_SUFFIX}" for n in WEIGHT_FILES)}
    prefix = under.strip("/") + "/" if under.strip("/") else ""
    return sorted(
        folder for folder, found in names.items()
        if folder.startswith(prefix) and folder != under.strip("/") and CONFIG in found and found & weights
    )


def local_files(root: Path) -> list[str]:
    """Every file below `root` as a relative 'a/b/file' path, hidden folders (.git) skipped."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(folder).relative_to(root)
        out.extend((rel / f).as_posix() for f in files)
    return out


def _pick_folder(candidates: list[str], where: str) -> str:
    if len(candidates) > 1:
        raise W2VEmbedError(
            f"{where}: no weights here, but several sub-folders hold a checkpoint ({', '.join(candidates)}); "
            "pick one with --subfolder"
        )
    return candidates[0]


def _no_config(where: str, candidates: list[str]) -> W2VEmbedError:
    """No config.json where asked: name the sub-folders that hold a checkpoint, which --subfolder picks."""
    if not candidates:
        return W2VEmbedError(f"{where}: no config.json here; is this a checkpoint folder?")
    holds = f"sub-folder {candidates[0]} holds" if len(candidates) == 1 else f"sub-folders {', '.join(candidates)} hold"
    return UsageError(f"{where}: no config.json at its root, but {holds} a checkpoint: pick it with "
                      f"--subfolder {candidates[0]}")


def _notes(found: str, root_config: Path, config: Path) -> tuple[str, ...]:
    notes = [f"using the weights in sub-folder {found}/ (none at the folder asked for; --subfolder picks another)"]
    root, used = _read_json(root_config), _read_json(config)
    differ = [k for k in ARCHITECTURE_FIELDS if k in root and root.get(k) != used.get(k)]
    if differ:
        shown = ", ".join(f"{k} {root[k]!r} vs {used.get(k)!r}" for k in differ)
        notes.append(f"the root config.json differs from {found}/config.json ({shown}); using the one beside the weights")
    return tuple(notes)


def _subfolder(*parts: str | None) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def _check_inside(source: str, subfolder: str | None) -> None:
    """A sub-folder is a place inside the repository: `..`, an absolute path, or (locally) a link that
    leads out of it would read another checkpoint under this one's name."""
    if not subfolder:
        return
    root = Path(source)
    escapes = Path(subfolder).is_absolute() or ".." in Path(subfolder).parts
    if not escapes and root.is_dir():
        escapes = not (root / subfolder).resolve().is_relative_to(root.resolve())
    if escapes:
        raise UsageError(f"--subfolder {subfolder}: not inside {source}; give a folder within the repository")


def resolve(
    source: str, revision: str | None = None, subfolder: str | None = None, cache_dir: str | None = None,
    adapter: str | None = None,
) -> Checkpoint:
    """A local folder is used as is; anything else is taken as a hub id and downloaded (or read from cache).

    When the folder asked for has config.json but no weights, the one sub-folder below it that holds
    both is used (several: an error listing them). `adapter`: an MMS language whose adapter file,
    beside the weights, is fetched too (adapters.py).
    """
    _check_inside(source, subfolder)
    local = Path(source) / (subfolder or "")
    if local.is_dir():
        if revision:
            raise UsageError(f"--revision {revision}: {source} is a local folder, which has no revisions (the model's "
                             "metadata would record a false one); check the revision out there, or export the hub id")
        checkpoint = _local(source, local, subfolder)
        return adapters.attach(
            checkpoint, adapter, lambda name: _file(checkpoint.folder / name), lambda: local_files(checkpoint.folder)
        )
    if Path(source).exists() or source.startswith((".", "/")) or source.count("/") > 1:
        raise W2VEmbedError(f"{source}: not a checkpoint folder (and not a hub id like owner/name)")
    hub = _Hub(source, revision, cache_dir)
    checkpoint = hub.checkpoint(_subfolder(subfolder))
    return adapters.attach(
        checkpoint, adapter, lambda name: hub.optional(name, checkpoint.subfolder),
        lambda: hub.listing(checkpoint.folder, checkpoint.subfolder),
    )


def _names(folder: Path) -> list[str]:
    try:
        return [entry.name for entry in folder.iterdir()]
    except OSError:
        return []


def _file(path: Path) -> Path | None:
    return path if path.is_file() else None


def _local(source: str, local: Path, subfolder: str | None) -> Checkpoint:
    if not (local / CONFIG).exists():  # sub-folders one level down only: `local` may be any folder
        below = [f"{d.name}/{name}" for d in sorted(local.iterdir()) if d.is_dir() for name in _names(d)]
        raise _no_config(str(local), weight_folders(below))
    preprocessor = local / PREPROCESSOR
    try:
        weights = find_weights(local)
    except W2VEmbedError:
        candidates = weight_folders(local_files(local))
        if not candidates:
            raise
        found = _pick_folder(candidates, str(local))
        folder = local / found
        own = folder / PREPROCESSOR
        return Checkpoint(
            folder, source, None, find_weights(folder), _subfolder(subfolder, found),
            own if own.exists() else preprocessor, _notes(found, local / CONFIG, folder / CONFIG),
        )
    return Checkpoint(local, source, None, weights, _subfolder(subfolder), preprocessor)  # a folder: no revision


class _Hub:
    """Files of one hub repository at one revision, through huggingface_hub (its cache when offline)."""

    def __init__(self, repo_id: str, revision: str | None, cache_dir: str | None) -> None:
        self.hub = require_export_extra("huggingface_hub")
        from huggingface_hub import errors

        self.missing = (errors.EntryNotFoundError, errors.LocalEntryNotFoundError)
        self.repo_id, self.revision, self.cache_dir = repo_id, revision, cache_dir

    def fetch(self, name: str, subfolder: str) -> Path:
        return Path(self.hub.hf_hub_download(
            self.repo_id, name, subfolder=subfolder or None, revision=self.revision, cache_dir=self.cache_dir
        ))

    def optional(self, name: str, subfolder: str) -> Path | None:
        try:
            return self.fetch(name, subfolder)
        except self.missing:
            return None

    def weights(self, subfolder: str) -> Path | None:
        """Fetch the first weights format present (all shards of a sharded one); its folder, or None."""
        for name in WEIGHT_FILES:
            for candidate in (f"{name}{INDEX_SUFFIX}", name):
                path = self.optional(candidate, subfolder)
                if path is None:
                    continue
                if candidate.endswith(INDEX_SUFFIX):
                    for shard in sorted(set(_read_json(path).get("weight_map", {}).values())):
                        self.fetch(shard, subfolder)
                return path.parent
        return None

    def cached_snapshot(self) -> Path | None:
        """The repository's snapshot in the local cache at the revision, if there is one."""
        try:
            return Path(self.hub.snapshot_download(self.repo_id, revision=self.revision, cache_dir=self.cache_dir,
                                                   local_files_only=True))
        except Exception:  # not cached, or a cache huggingface_hub cannot read: say what we said before
            return None

    def files(self, snapshot: Path) -> list[str]:
        """The repository's file listing at the revision; offline (or unreachable), the cached snapshot's."""
        from huggingface_hub import constants

        if not constants.HF_HUB_OFFLINE:
            try:
                return self.hub.HfApi().list_repo_files(self.repo_id, revision=self.revision)
            except Exception:  # any network or hub failure: the cache is the best we have
                pass
        return local_files(snapshot)

    def listing(self, folder: Path, subfolder: str) -> list[str]:
        """Names of the repository's files in `subfolder` (`folder`: its place in the cached snapshot)."""
        snapshot = folder.parents[len(Path(subfolder).parts) - 1] if subfolder else folder
        prefix = f"{subfolder}/" if subfolder else ""
        return [f[len(prefix):] for f in self.files(snapshot) if f.startswith(prefix)]

    def checkpoint(self, subfolder: str) -> Checkpoint:
        from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

        try:
            config = self.fetch(CONFIG, subfolder)
        except LocalEntryNotFoundError as exc:
            cached = self.cached_snapshot()
            if cached is not None:  # the repository is there, without a config.json where asked
                raise _no_config(self.repo_id + (f"/{subfolder}" if subfolder else ""),
                                 weight_folders(local_files(cached), subfolder)) from exc
            offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
            why = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached"
            raise W2VEmbedError(
                f"cannot download {self.repo_id}: {why} and it is not in the local cache (and there is no folder "
                f"{self.repo_id} here); "
                "download the checkpoint elsewhere and pass its folder instead: w2v-embed export path/to/checkpoint"
            ) from exc
        except (RepositoryNotFoundError, *self.missing) as exc:
            raise W2VEmbedError(f"{self.repo_id}: no such model repository (or no config.json in it) on the hub") from exc
        snapshot = config.parents[len(Path(subfolder).parts)] if subfolder else config.parent
        revision = self.revision or snapshot.name
        preprocessor = self.optional(PREPROCESSOR, subfolder)
        folder = self.weights(subfolder)
        if folder is not None:
            return Checkpoint(folder, self.repo_id, revision, find_weights(folder), subfolder, preprocessor)
        candidates = weight_folders(self.files(snapshot), subfolder)
        if not candidates:
            raise W2VEmbedError(
                f"{self.repo_id}: the repository has none of the weights files {', '.join(WEIGHT_FILES)}"
            )
        found = _pick_folder(candidates, self.repo_id + (f"/{subfolder}" if subfolder else ""))
        own_config = self.fetch(CONFIG, found)
        folder = self.weights(found)
        if folder is None:
            raise W2VEmbedError(f"{self.repo_id}/{found}: listed with weights, but they cannot be downloaded")
        relative = found[len(subfolder):].strip("/")
        return Checkpoint(
            folder, self.repo_id, revision, find_weights(folder), found,
            self.optional(PREPROCESSOR, found) or preprocessor, _notes(relative, config, own_config),
        )

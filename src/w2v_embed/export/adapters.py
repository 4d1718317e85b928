"""MMS language adapters: `export --adapter LANG` puts adapter.LANG.safetensors into the encoder.

facebook/mms-1b-all (and its fine-tunes) keep one small file per language beside the main weights:
the attention adapter of every encoder layer plus that language's CTC head. transformers'
`load_adapter(LANG)` reads adapter.LANG.safetensors, else adapter.LANG.bin, from the model's
repository and requires exactly the model's adapter weights in it; the same rules apply here (the
CTC head is dropped with the other heads). Without --adapter, the adapters stored in the main file
are used, as transformers does, and a note says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UsageError, W2VEmbedError
from .weights import read_state_dict

if TYPE_CHECKING:
    from .checkpoint import Checkpoint

ADAPTER_FILES = ("adapter.{}.safetensors", "adapter.{}.bin")  # transformers' order
ADAPTER_NAME = re.compile(r"adapter\.([^./]+)\.(?:safetensors|bin)$")
ADAPTER_KEY = ".adapter_layer."
SHOWN_LANGUAGES = 12


def languages(files: list[str]) -> list[str]:
    """The languages of the adapter files in a folder listing (names, or paths relative to the folder)."""
    return sorted({m.group(1) for f in files if "/" not in f and (m := ADAPTER_NAME.match(f))})


def _available(files: list[str]) -> str:
    found = languages(files)
    if not found:
        return "no adapter.LANG.safetensors files are there"
    more = f" and {len(found) - SHOWN_LANGUAGES} more" if len(found) > SHOWN_LANGUAGES else ""
    return f"{len(found)} adapter languages there: {', '.join(found[:SHOWN_LANGUAGES])}{more}"


def attach(
    checkpoint: Checkpoint, language: str | None, find: Callable[[str], Path | None], listing: Callable[[], list[str]]
) -> Checkpoint:
    """The checkpoint with its adapter file for `language` (`find` fetches a file beside the weights,
    None when absent; `listing` names the files there), or with a note on which adapters are used."""
    has_adapters = checkpoint.config.get("adapter_attn_dim") is not None
    where = checkpoint.source + (f"/{checkpoint.subfolder}" if checkpoint.subfolder else "")
    if language is None:
        if not has_adapters:
            return checkpoint
        note = (f"no --adapter given: using the attention adapters stored in {checkpoint.weights[0].name} "
                f"(what transformers loads by default); {_available(listing())}")
        return replace(checkpoint, notes=(*checkpoint.notes, note))
    if not re.fullmatch(r"[A-Za-z0-9_-]+", language):
        raise UsageError(f"--adapter {language!r}: expected a language id such as eng or fra")
    if not has_adapters:
        raise UsageError(f"--adapter {language}: {where} has no attention adapters (no adapter_attn_dim in its config.json)")
    for pattern in ADAPTER_FILES:
        path = find(pattern.format(language))
        if path is not None:
            return replace(checkpoint, adapter=language, adapter_file=path)
    raise W2VEmbedError(f"--adapter {language}: {where} has no adapter.{language}.safetensors (or .bin); {_available(listing())}")


def merge(arrays: dict[str, np.ndarray], expected: list[str], path: Path) -> None:
    """Overwrite the encoder's adapter weights in `arrays` with those of the adapter file, which must
    hold every one of them and nothing else (apart from its CTC head)."""
    adapter = read_state_dict([path])
    wanted = {k for k in expected if ADAPTER_KEY in k}
    missing, unexpected = sorted(wanted - set(adapter)), sorted(set(adapter) - wanted)
    if missing or unexpected:
        what = f"lacks {missing[0]}" if missing else f"has {unexpected[0]}, which is not an adapter weight of this model"
        raise W2VEmbedError(f"{path}: not an adapter file for this checkpoint: it {what}")
    arrays.update(adapter)

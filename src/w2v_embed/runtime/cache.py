"""Where runtimes keep what they compiled, so a short job does not pay ~1 s of graph optimisation every run.

An entry's name is a hash of everything that shaped it (model file sha256, runtime version, CPU model
and flags, graph cut, session options), so a changed model, runtime or CPU never meets a stale entry;
entries are written under a temporary name and renamed (readers see a whole file or none), and the
least recently used go once the folder holds more than `CACHE_BYTES`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

CACHE_BYTES = 4 << 30  # a base model's optimised graph is ~0.4 GB, large's ~1.3 GB
CPU_FLAGS_SHOWN = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cache_dir(runtime: str) -> Path | None:
    """$W2V_EMBED_CACHE (off: no cache), else $XDG_CACHE_HOME/w2v-embed or ~/.cache/w2v-embed; None if unwritable."""
    root = os.environ.get("W2V_EMBED_CACHE")
    if root == "off":
        return None
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "w2v-embed")
    folder = Path(root) / runtime
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home on a cluster: run without a cache rather than fail
        return None
    return folder if os.access(folder, os.W_OK) else None


@functools.cache
def cpu_info() -> tuple[str, frozenset[str]]:
    """This CPU's model name and instruction-set flags (Linux: /proc/cpuinfo; elsewhere the platform's name)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), frozenset()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    model = fields.get("model name") or fields.get("Model") or platform.machine()
    if "cpu family" in fields:  # "AMD EPYC" alone names Zen 2, 3, 4 and 5 alike
        model = f"{model}, family {fields['cpu family']} model {fields.get('model', '?')}"
    return model, frozenset(fields.get("flags", fields.get("Features", "")).split())


def files_sha256(files: Sequence[Path]) -> str:
    """sha256 of the files' bytes in order, remembered per file identity (device, inode, size, mtime and
    ctime in ns: ctime moves with every write and cannot be set back), so a run does not re-read a model
    it has hashed before (~0.3 s a GB: 0.3 s of a base model's ~1.1 s start-up, 3 s for XLS-R 1B)."""
    stamp = []
    for file in files:
        st = os.stat(file)
        stamp.append([os.fspath(Path(file).resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
    folder = cache_dir("sha256")
    entry = folder / hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:32] if folder else None
    try:
        known = entry.read_text() if entry else ""
    except OSError:
        known = ""
    if len(known) == 64:
        return known
    digest = hash_files(files)
    if entry is not None:
        written = temporary(entry.parent, entry.name)
        try:
            written.write_text(digest)
            os.replace(written, entry)
        except OSError:  # a full or read-only cache: the next run hashes again, nothing more
            written.unlink(missing_ok=True)
    return digest


def hash_files(files: Sequence[Path]) -> str:
    """sha256 of the files' bytes in order, read a MB at a time (models and indexes run to GBs)."""
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def cpu_description() -> str:
    """E.g. "AMD EPYC, family 26 model 2 (avx2 avx512f avx512_vnni avx512_bf16)": what benchmark tables name."""
    model, flags = cpu_info()
    shown = [flag for flag in CPU_FLAGS_SHOWN if flag in flags]
    return f"{model} ({' '.join(shown) or 'none of ' + ', '.join(CPU_FLAGS_SHOWN[:3])})"


def entry_key(**parts: object) -> str:
    """A file name from everything that shaped an entry (plus this CPU's model and full flag list)."""
    model, flags = cpu_info()
    described = json.dumps({**parts, "cpu": [model, sorted(flags), platform.machine()]}, sort_keys=True)
    return hashlib.sha256(described.encode()).hexdigest()[:32]


def temporary(folder: Path, name: str) -> Path:
    """A name no other process writes to; renamed over `name` once whole."""
    return folder / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def publish(written: Path, entry: Path) -> None:
    """Make a whole entry visible in one step, then keep the folder under CACHE_BYTES."""
    os.replace(written, entry)
    evict(entry.parent, keep=entry)


def touch(entry: Path) -> None:
    """Mark an entry used, so eviction takes the least recently used first."""
    try:
        os.utime(entry)
    except OSError:
        pass


def evict(folder: Path, keep: Path, budget: int = CACHE_BYTES) -> None:
    """Remove the least recently used entries (and leftovers of crashed writers) beyond `budget` bytes."""
    entries, recent = [], time.time() - 3600
    for path in folder.iterdir():
        try:
            stat = path.stat()
        except OSError:
            continue
        if not (path.name.startswith(".") and stat.st_mtime > recent):  # another process may be writing it
            entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries, key=lambda e: e[0]):
        if total <= budget:
            break
        if path != keep:
            path.unlink(missing_ok=True)
            total -= size

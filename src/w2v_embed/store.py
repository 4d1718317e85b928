"""The output file (format "w2v-embed/1"): writing it crash-safely, resuming it, and reading it back.

HDF5 files are not crash-safe: a process killed mid-write can leave the whole file unreadable. So a
run never writes OUT.h5 while it works. Finished files are buffered in memory and committed as
small segment files in `OUT.h5.parts/`, each written under a temporary name and renamed into place,
so a segment is either whole or absent. Only `close()` builds OUT.h5: it streams the old OUT.h5 (when
resuming a finished file) and the segments into `OUT.h5.tmp-<pid>` and renames that over OUT.h5. A
kill at any moment therefore loses at most the buffered, uncommitted files, which `--resume` redoes.
`--overwrite` leaves the old OUT.h5 alone until that rename; a marker file in the parts folder says
the segments replace it rather than extend it, so a resumed overwrite never merges the old rows in.

Segments use the very layout of the final file, so one merge routine reads both.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import __version__
from .errors import UsageError, W2VEmbedError
from .layers import LAST, Layer, dataset_name, from_text

try:  # POSIX only; without it (Windows) runs are not protected against a second writer
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

FORMAT = "w2v-embed/1"
POOLINGS = ("mean", "max", "meanstd", "none")
DTYPES = ("float32", "float16")
MODES = ("new", "resume", "overwrite")

_STR = h5py.string_dtype()
_SEGMENT = re.compile(r"seg-(\d+)\.h5")
_REPLACES = "replaces-output"  # in OUT.h5.parts/: these parts are an --overwrite run; OUT.h5 is not merged in
_CHUNK_BYTES = 1 << 20  # HDF5 chunk size target: fits the default 1 MiB chunk cache
_COPY_BYTES = 64 << 20  # merge copies at most this much at a time
_BUFFER_BYTES = 256 << 20  # commit early when buffered features grow past this (long frame-level files)
# What must match to continue a run, with the words an error message uses for it.
# Not in files written before they were recorded: "" there means unknown, not a mismatch.
_RECORDED_SINCE_ISSUE_9 = ("model_file_sha256", "precision", "channel")
_RESUME_FIELDS = {
    "model_sha256": "model sha256",
    "hidden_size": "hidden size",
    "layers": "layers",
    "pooling": "pooling",
    "dtype": "dtype",
    "chunk_seconds": "chunk seconds",
    "context_seconds": "context seconds",
    "model_file_sha256": "model file sha256",
    "precision": "model precision",
    "channel": "channel",
    "shard": "shard",
}


@dataclass(frozen=True)
class RunInfo:
    """What a run computes; stored as the file's attributes and compared on resume."""

    model: str
    model_sha256: str
    layers: tuple[Layer, ...]  # numbered layers, then "last" (last_hidden_state)
    pooling: str  # "mean" | "max" | "meanstd" | "none"
    hidden_size: int
    dtype: str = "float32"
    sample_rate: int = 16000
    frame_rate: float = 50.0
    frame_center_offset: float = 0.0125
    chunk_seconds: float = 0.0
    context_seconds: float = 0.0
    # Recorded since issue 9; "" = not recorded (an older file), which resume does not compare.
    model_file_sha256: str = ""  # of the .onnx file itself: an int8/fp16 export or a damaged copy differs
    precision: str = ""  # the model's float32 | int8 | float16
    channel: str = ""  # "mean" of all channels, or the 0-based channel number used
    shard: str = ""  # "I/N" for a job of an array (extract --shard), "" otherwise
    shard_files: int = 0  # files assigned to this shard: stored + failed must reach it before a merge
    total_files: int = 0  # files in the whole list the shards split

    @property
    def frame_level(self) -> bool:
        return self.pooling == "none"

    @property
    def width(self) -> int:
        """Columns of each layer dataset (meanstd stores mean and std side by side)."""
        return 2 * self.hidden_size if self.pooling == "meanstd" else self.hidden_size

    def validate(self) -> None:
        if self.pooling not in POOLINGS:
            raise W2VEmbedError(f"pooling {self.pooling!r}: expected one of {', '.join(POOLINGS)}")
        if self.dtype not in DTYPES:
            raise W2VEmbedError(f"dtype {self.dtype!r}: expected one of {', '.join(DTYPES)}")
        valid = all(k == LAST or (isinstance(k, int) and k >= 0) for k in self.layers)
        if not self.layers or len(set(self.layers)) != len(self.layers) or not valid:
            raise W2VEmbedError(f"layers {list(self.layers)}: expected distinct layer numbers >= 0 or 'last'")
        if self.hidden_size < 1:
            raise W2VEmbedError(f"hidden size {self.hidden_size}: expected a positive number")

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "layers": list(self.layers)}, indent=1)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunInfo:
        """Build from run.json or HDF5 attributes; unknown keys (newer versions) are ignored."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                continue
            if key == "layers":
                kwargs[key] = tuple(from_text(v) for v in np.atleast_1d(value))
            elif isinstance(value, bytes):
                kwargs[key] = value.decode()
            elif isinstance(value, np.generic):
                kwargs[key] = value.item()
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def attrs(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "sample_rate": np.int64(self.sample_rate),
            "frame_rate": float(self.frame_rate),
            "frame_center_offset": float(self.frame_center_offset),
            "pooling": self.pooling,
            "layers": np.asarray([str(k) for k in self.layers], dtype=_STR),
            "hidden_size": np.int64(self.hidden_size),
            "w2v_embed_version": __version__,
            "chunk_seconds": float(self.chunk_seconds),
            "context_seconds": float(self.context_seconds),
            "dtype": self.dtype,
            "model_file_sha256": self.model_file_sha256,
            "precision": self.precision,
            "channel": self.channel,
            "shard": self.shard,
            "shard_files": np.int64(self.shard_files),
            "total_files": np.int64(self.total_files),
        }


@dataclass
class _Entry:
    name: str
    num_samples: int
    source_sample_rate: int
    features: dict[int, np.ndarray]


@dataclass
class _Buffer:
    """Results not yet committed to a segment."""

    entries: list[_Entry] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    nbytes: int = 0

    def __len__(self) -> int:
        return len(self.entries) + len(self.failures)


class FeatureWriter:
    """Collects per-file results into OUT.h5, crash-safely (see the module docstring).

    `done` holds the names already stored (from an earlier run when resuming, plus those added
    since), so the caller can skip them; names that failed before are not in it and get retried.
    Use it as a context manager: a normal exit merges (close), an exception keeps the parts (abort).
    """

    def __init__(
        self,
        path: Path,
        info: RunInfo,
        mode: str = "new",
        commit_every_files: int = 64,
        commit_every_seconds: float = 20.0,
    ) -> None:
        info.validate()
        if mode not in MODES:
            raise W2VEmbedError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        if commit_every_files < 1 or commit_every_seconds < 0:
            raise W2VEmbedError("commit_every_files must be >= 1 and commit_every_seconds >= 0")
        self.path = Path(path)
        if self.path.is_dir():
            raise UsageError(f"{self.path} is a folder; give a file name, e.g. {self.path / 'features.h5'}")
        self.info = info
        self.parts = _parts_dir(self.path)
        self.commit_every_files = commit_every_files
        self.commit_every_seconds = commit_every_seconds
        self.done: set[str] = set()
        self._buffer = _Buffer()
        self._dtype = np.dtype(info.dtype)
        self._closed = False
        with _writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = _Lock(self.path)
            try:
                self._prepare(mode)
            except BaseException:
                self._lock.release()
                raise
        self._next_segment = max(_segment_numbers(self.parts), default=0) + 1
        self._last_commit = time.monotonic()

    # -- setup -----------------------------------------------------------------------------------

    def _prepare(self, mode: str) -> None:
        """Apply the mode; runs with the lock held, so every leftover temp file is stale."""
        _remove_merge_temps(self.path)
        if mode == "new" and (self.path.exists() or self.parts.exists()):
            existing = self.path if self.path.exists() else self.parts
            raise W2VEmbedError(f"{existing} exists; pass --resume to continue it or --overwrite to replace it")
        if mode == "overwrite":  # OUT.h5 itself stays readable until close() renames the new one over it
            shutil.rmtree(self.parts, ignore_errors=True)
            self.parts.mkdir()
            _atomic_write_text(self.parts / _REPLACES, "")
        if mode == "resume":
            self.done = self._scan_existing()
        self.parts.mkdir(exist_ok=True)
        run_json = self.parts / "run.json"
        if not run_json.exists():
            _atomic_write_text(run_json, self.info.to_json())

    def _scan_existing(self) -> set[str]:
        """Names already stored in OUT.h5 and the segments, after checking they match this run."""
        done: set[str] = set()
        if self._merges_output():
            with _open_output(self.path) as f:
                _check_resumable(self.path, _stored_info(f), self.info)
                done.update(_read_strings(f["paths"]))
        if not self.parts.exists():
            return done
        for stale in self.parts.glob("*.tmp"):
            stale.unlink(missing_ok=True)  # a commit killed half-way
        run_json = self.parts / "run.json"
        if run_json.exists():
            try:
                stored = RunInfo.from_dict(json.loads(run_json.read_text()))
            except (ValueError, TypeError) as exc:
                raise W2VEmbedError(f"{run_json}: unreadable ({exc}); pass --overwrite to start over") from exc
            _check_resumable(self.parts, stored, self.info)
        for segment in _segments(self.parts):
            with _open_output(segment) as f:
                _check_resumable(segment, _stored_info(f), self.info)
                done.update(_read_strings(f["paths"]))
        return done

    # -- adding results --------------------------------------------------------------------------

    def add(self, name: str, num_samples: int, source_sample_rate: int, features: Mapping[int, np.ndarray]) -> None:
        """Store one file's features: pooled (D,) / (2D,) per layer, or frames (T, D) with one T for all layers."""
        self._check_open()
        if name in self.done:
            raise W2VEmbedError(f"{name}: already stored in {self.path}; skip the names in writer.done")
        arrays = self._checked_features(name, features)
        self._buffer.entries.append(_Entry(name, int(num_samples), int(source_sample_rate), arrays))
        self._buffer.nbytes += sum(a.nbytes for a in arrays.values())
        self.done.add(name)
        self._maybe_commit()

    def add_failure(self, name: str, error: str) -> None:
        """Record why a file could not be embedded; a later successful retry removes the record."""
        self._check_open()
        self._buffer.failures.append((name, " ".join(str(error).split()) or "unknown error"))
        self._maybe_commit()

    def _checked_features(self, name: str, features: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
        """In the storage dtype, not copied when already in it (a long file's frames are big): the arrays
        are kept until committed and must not be modified meanwhile. Wrong shapes are a caller bug that
        would corrupt the columns."""
        info = self.info
        missing = [k for k in info.layers if k not in features]
        if missing:
            raise W2VEmbedError(f"{name}: features lack layers {missing}; expected layers {list(info.layers)}")
        arrays = {k: np.asarray(features[k], dtype=self._dtype) for k in info.layers}
        if info.frame_level:
            lengths = {a.shape[0] if a.ndim == 2 else -1 for a in arrays.values()}
            ok = all(a.ndim == 2 and a.shape[1] == info.hidden_size for a in arrays.values()) and len(lengths) == 1
            expected = f"(frames, {info.hidden_size}) with the same number of frames for every layer"
        else:
            ok = all(a.shape == (info.width,) for a in arrays.values())
            expected = f"({info.width},)"
        if not ok:
            shapes = {k: a.shape for k, a in arrays.items()}
            raise W2VEmbedError(f"{name}: feature shapes {shapes}; expected {expected} for pooling {info.pooling}")
        return arrays

    def _maybe_commit(self) -> None:
        due = time.monotonic() - self._last_commit >= self.commit_every_seconds
        if len(self._buffer) >= self.commit_every_files or self._buffer.nbytes >= _BUFFER_BYTES or due:
            self.commit()

    def commit(self) -> None:
        """Make the buffered results crash-safe now, as one new segment (nothing to do when empty)."""
        self._check_open()
        self._commit()

    def _commit(self) -> None:
        self._last_commit = time.monotonic()
        self._lock.verify()
        if not len(self._buffer):
            return
        final = self.parts / f"seg-{self._next_segment:06d}.h5"
        temp = final.with_name(final.name + ".tmp")
        try:
            with _writing(self.parts):
                _write_segment(temp, self.info, self._buffer)
                _fsync_file(temp)
                os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.parts)
        self._next_segment += 1
        self._buffer = _Buffer()  # only now: an interrupted commit keeps the results for abort()

    # -- finishing -------------------------------------------------------------------------------

    def close(self) -> Path:
        """Commit, merge OUT.h5 + segments into a new OUT.h5 (atomically), remove the parts; returns OUT."""
        if self._closed:
            return self.path
        try:
            self._commit()
            temp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
            try:
                sources = ([self.path] if self._merges_output() else []) + _segments(self.parts)
                with _writing(self.path):
                    _merge(sources, temp, self.info)
                    _fsync_file(temp)
                    self._lock.verify()  # a merge can take minutes
                    os.replace(temp, self.path)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            _fsync_dir(self.path.parent)
            shutil.rmtree(self.parts, ignore_errors=True)  # a leftover is harmless: merge drops duplicates
        finally:
            self._finish()
        return self.path

    def abort(self) -> None:
        """Commit what is buffered and stop without merging (Ctrl-C); `--resume` continues from the parts."""
        if self._closed:
            return
        try:
            self._commit()
            if not _segments(self.parts):  # nothing was computed: leave no folder that blocks a new run
                shutil.rmtree(self.parts, ignore_errors=True)
        finally:
            self._finish()

    def _merges_output(self) -> bool:
        """Whether the existing OUT.h5 is part of this run's result (not when an --overwrite run replaces it)."""
        return self.path.exists() and not (self.parts / _REPLACES).exists()

    def _finish(self) -> None:
        self._closed = True
        self._lock.release()

    def _check_open(self) -> None:
        if self._closed:
            raise W2VEmbedError(f"the writer for {self.path} is closed; open a new one with mode 'resume'")

    def __enter__(self) -> FeatureWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


@contextmanager
def _writing(where: Path) -> Iterator[None]:
    """Turn a failed write (full disk, read-only folder, no permission) into one line naming `where`."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            message = f"no space left on the device of {where}; free some space and rerun with --resume (finished files are kept)"
        else:
            reason = os.strerror(exc.errno) if exc.errno else str(exc).splitlines()[0]
            message = f"cannot write {where}: {reason}"
        raise W2VEmbedError(message) from None


# -- locking ---------------------------------------------------------------------------------------


class _Lock:
    """flock on OUT.h5.lock for the writer's lifetime; the OS drops it when the process dies."""

    def __init__(self, output: Path) -> None:
        self.path = output.with_name(output.name + ".lock")
        self.fd: int | None = None
        if fcntl is None:  # pragma: no cover
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise W2VEmbedError(
                        f"{output} is being written by another w2v-embed process (pid {pid}); "
                        "wait for it to finish or stop it"
                    ) from exc
                raise W2VEmbedError(f"cannot lock {self.path} ({exc}); write the output to a local disk") from exc
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the previous holder removed the file between our open and flock: retry
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def verify(self) -> None:
        """Refuse to write on when OUT.h5.lock is no longer the file we locked: deleted by hand, a second
        writer locks a new one and both write the same parts (the first then reported files it lost)."""
        if self.fd is not None and not _same_file(self.fd, self.path):
            raise W2VEmbedError(
                f"{self.path} was removed or replaced while this run held it, so another w2v-embed process may be "
                "writing the same output; stopped without saving the files since the last commit. "
                "When no other run is active, continue with --resume"
            )

    def release(self) -> None:
        if self.fd is None:
            return
        if _same_file(self.fd, self.path):  # never another writer's lock
            self.path.unlink(missing_ok=True)  # while still holding it, so no one locks a removed file
        os.close(self.fd)
        self.fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


# -- files and folders -----------------------------------------------------------------------------


def _parts_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def _segment_numbers(parts: Path) -> list[int]:
    if not parts.is_dir():
        return []
    return [int(m.group(1)) for p in parts.iterdir() if (m := _SEGMENT.fullmatch(p.name))]


def _segments(parts: Path) -> list[Path]:
    """Complete segments in commit order (temp names never match)."""
    return [parts / f"seg-{n:06d}.h5" for n in sorted(_segment_numbers(parts))]


def _remove_merge_temps(output: Path) -> None:
    pattern = re.compile(re.escape(output.name) + r"\.tmp-\d+")
    for p in output.parent.glob(output.name + ".tmp-*"):
        if pattern.fullmatch(p.name):
            p.unlink(missing_ok=True)


def _atomic_write_text(path: Path, text: str) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text)
    _fsync_file(temp)
    os.replace(temp, path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename durable across power loss too (best effort: not every platform allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_OVERWRITE_HINT = "pass --overwrite to replace it"


def _open_output(path: Path, hint: str = _OVERWRITE_HINT) -> h5py.File:
    """Open a w2v-embed file (output or segment) for reading, or say what is wrong with it."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise W2VEmbedError(f"{path}: not a readable HDF5 file ({exc}); {hint}") from exc
    if _attr_str(f.attrs.get("format")) != FORMAT:
        f.close()
        raise W2VEmbedError(f"{path}: not a w2v-embed output (format {FORMAT}); {hint}")
    return f


def _attr_str(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value if isinstance(value, str) else None


def _stored_info(f: h5py.File) -> RunInfo:
    attrs = dict(f.attrs)
    if "hidden_size" not in attrs:  # not written by every producer of the format: infer it
        first = f[dataset_name(from_text(np.atleast_1d(attrs["layers"])[0]))]
        attrs["hidden_size"] = first.shape[1] // (2 if _attr_str(attrs.get("pooling")) == "meanstd" else 1)
    try:
        return RunInfo.from_dict(attrs)
    except TypeError as exc:
        raise W2VEmbedError(f"{f.filename}: incomplete attributes ({exc}); pass --overwrite to replace it") from exc


def _check_resumable(where: Path, stored: RunInfo, new: RunInfo) -> None:
    for name, words in _RESUME_FIELDS.items():
        old, now = getattr(stored, name), getattr(new, name)
        if old != now and not (old == "" and name in _RECORDED_SINCE_ISSUE_9):
            raise W2VEmbedError(
                f"cannot resume: {where} was written with {words} {_show(old)}, this run asks for {_show(now)}; "
                "use the same settings, or pass --overwrite to start over"
            )


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return str(list(value))
    if isinstance(value, str) and len(value) == 64:  # a sha256
        return value[:12] + "…"
    return str(value)


def _read_strings(dataset: h5py.Dataset) -> list[str]:
    """Back to the str that was stored (a name that is not UTF-8 returns as os.fsdecode gives it)."""
    return [str(s) for s in dataset.asstr(errors="surrogateescape")[()]]


def _encode_strings(strings: list[str]) -> np.ndarray:
    """File names as the file system's bytes: UTF-8 for ordinary names, and any other name (e.g. Latin-1
    'caf\\xe9.wav', which Python holds as 'caf\\udce9.wav') byte for byte, where strict UTF-8 would crash."""
    return np.array([s.encode("utf-8", "surrogateescape") for s in strings], dtype=object)


class _UnfailingFile:
    """A file for h5py that never tells HDF5 a write failed: HDF5 2.0 keeps a file it could not write
    half-open and crashes at interpreter exit (a full disk ended in exit 139). The first OSError is kept
    for `_create_h5` to raise once HDF5 is done; later writes are dropped (the file is discarded anyway).
    Unbuffered, so every write reaches the OS here, where its error is caught."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "w+b", buffering=0)  # noqa: SIM115 (closed by _create_h5)
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        while len(view) and self.error is None:
            try:
                view = view[self._file.write(view) :]  # a raw write may be partial (the disk filling up)
            except OSError as exc:
                self.error = exc
        return total

    def truncate(self, size: int | None = None) -> None:
        try:
            self._file.truncate(size)
        except OSError as exc:
            self.error = self.error or exc

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer: Any) -> int:
        return self._file.readinto(buffer)

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:
            self.error = self.error or exc


@contextmanager
def _create_h5(path: Path) -> Iterator[h5py.File]:
    """h5py.File(path, "w") whose write errors (ENOSPC, EIO …) are raised here, after HDF5 closed the file."""
    target = _UnfailingFile(path)
    try:
        with h5py.File(target, "w") as f:
            yield f
    except Exception:
        if target.error is None:
            raise
    finally:
        target.close()
    if target.error is not None:
        raise target.error


# -- writing the layout ----------------------------------------------------------------------------


def _create_layout(
    f: h5py.File, info: RunInfo, rows: int, frames: int, failures: list[tuple[str, str]], resizable: bool
) -> None:
    """All datasets of the format, sized; resizable (chunked) for outputs, contiguous for segments."""
    f.attrs.update(info.attrs())

    def create(name: str, shape: tuple[int, ...], dtype: Any) -> h5py.Dataset:
        if not resizable:
            return f.create_dataset(name, shape=shape, dtype=dtype)
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * (16 if dtype is _STR else np.dtype(dtype).itemsize)
        chunk_rows = max(1, min(shape[0], _CHUNK_BYTES // max(row_bytes, 1)))
        return f.create_dataset(name, shape=shape, dtype=dtype, maxshape=(None, *shape[1:]), chunks=(chunk_rows, *shape[1:]))

    create("paths", (rows,), _STR)
    create("num_samples", (rows,), np.int64)
    create("source_sample_rate", (rows,), np.int64)
    if info.frame_level:
        create("offsets", (rows + 1,), np.int64)
    for layer in info.layers:
        create(dataset_name(layer), (frames if info.frame_level else rows, info.width), info.dtype)
    names = create("failed/paths", (len(failures),), _STR)
    errors = create("failed/errors", (len(failures),), _STR)
    if failures:
        names[:] = _encode_strings([n for n, _ in failures])
        errors[:] = _encode_strings([e for _, e in failures])


def _write_segment(path: Path, info: RunInfo, buffer: _Buffer) -> None:
    entries = buffer.entries
    lengths = [len(e.features[info.layers[0]]) for e in entries] if info.frame_level else []
    with _create_h5(path) as f:
        _create_layout(f, info, len(entries), sum(lengths), buffer.failures, resizable=False)
        if entries:
            f["paths"][:] = _encode_strings([e.name for e in entries])
            f["num_samples"][:] = [e.num_samples for e in entries]
            f["source_sample_rate"][:] = [e.source_sample_rate for e in entries]
        offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        if info.frame_level:
            f["offsets"][:] = offsets
        for layer in info.layers:
            if entries and info.frame_level:  # file by file: no concatenated copy of long files' frames
                for entry, start, stop in zip(entries, offsets[:-1], offsets[1:]):
                    f[dataset_name(layer)][start:stop] = entry.features[layer]
            elif entries:
                f[dataset_name(layer)][:] = np.stack([e.features[layer] for e in entries])


# -- merging ---------------------------------------------------------------------------------------


@dataclass
class _Source:
    """One input of a merge, with the rows it contributes (duplicates of earlier rows dropped)."""

    path: Path
    keep: np.ndarray  # bool per row
    offsets: np.ndarray | None  # frame-level only


def _plan(paths: list[Path], info: RunInfo) -> tuple[list[_Source], list[tuple[str, str]]]:
    """Reads only names (and offsets): which rows survive, and the failures still unresolved."""
    sources: list[_Source] = []
    stored: set[str] = set()
    failures: dict[str, str] = {}  # first-failure order, latest reason
    for path in paths:
        with _open_output(path) as f:
            keep = np.zeros(f["paths"].shape[0], dtype=bool)
            for i, name in enumerate(_read_strings(f["paths"])):
                keep[i] = name not in stored
                stored.add(name)
            offsets = f["offsets"][()] if info.frame_level else None
            for name, error in zip(_read_strings(f["failed/paths"]), _read_strings(f["failed/errors"])):
                failures[name] = error
        sources.append(_Source(path, keep, offsets))
    return sources, [(n, e) for n, e in failures.items() if n not in stored]


def _runs(keep: np.ndarray) -> Iterator[tuple[int, int]]:
    """[start, stop) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], keep.astype(np.int8), [0]])))
    yield from zip(edges[::2].tolist(), edges[1::2].tolist())


def _copy(src: h5py.Dataset, dst: h5py.Dataset, start: int, stop: int, at: int) -> None:
    """dst[at:] = src[start:stop], a bounded block at a time."""
    row_bytes = max(1, int(np.prod(src.shape[1:], dtype=np.int64)) * src.dtype.itemsize)
    step = max(1, _COPY_BYTES // row_bytes)
    for s in range(start, stop, step):
        e = min(stop, s + step)
        dst[at + s - start : at + e - start] = src[s:e]


def _merge(paths: list[Path], out: Path, info: RunInfo) -> None:
    """Stream all inputs, in order, into one new output file."""
    sources, failures = _plan(paths, info)
    rows = sum(int(s.keep.sum()) for s in sources)
    frames = sum(int(s.offsets[b] - s.offsets[a]) for s in sources if s.offsets is not None for a, b in _runs(s.keep))
    with _create_h5(out) as f:
        _create_layout(f, info, rows, frames, failures, resizable=True)
        row = frame = 0
        for source in sources:
            with h5py.File(source.path, "r") as src:
                for a, b in _runs(source.keep):
                    for name in ("paths", "num_samples", "source_sample_rate"):
                        _copy(src[name], f[name], a, b, row)
                    if source.offsets is not None:
                        fa, fb = int(source.offsets[a]), int(source.offsets[b])
                        for layer in info.layers:
                            _copy(src[dataset_name(layer)], f[dataset_name(layer)], fa, fb, frame)
                        f["offsets"][row + 1 : row + 1 + b - a] = frame + source.offsets[a + 1 : b + 1] - fa
                        frame += fb - fa
                    else:
                        for layer in info.layers:
                            _copy(src[dataset_name(layer)], f[dataset_name(layer)], a, b, row)
                    row += b - a
        if info.frame_level:
            f["offsets"][0] = 0


# -- reading ---------------------------------------------------------------------------------------


def _open_finished(path: str | Path) -> h5py.File:
    path = Path(path)
    if not path.exists():
        if _parts_dir(path).exists():
            raise W2VEmbedError(f"{path} is not finished yet; rerun the extraction with --resume to complete it")
        raise W2VEmbedError(f"{path}: no such file")
    return _open_output(path, "give the .h5 file that `w2v-embed extract` wrote")


def load(path: str | Path, layer: Layer | None = None) -> tuple[list[str], np.ndarray] | dict[str, np.ndarray]:
    """Features in one line: pooled → (paths, array (files, dim)); frame-level → {path: (frames, dim)}.

    `layer` is a number (transformers' hidden_states numbering) or "last" (last_hidden_state); None
    picks "last" when stored, else the deepest stored layer. Arrays keep the storage dtype.
    """
    with _open_finished(path) as f:
        layers = [from_text(k) for k in np.atleast_1d(f.attrs["layers"])]
        try:
            chosen = layers[-1] if layer is None else from_text(layer)
        except ValueError:
            chosen = layer
        if chosen not in layers:
            raise W2VEmbedError(f"{path}: layer {chosen} is not stored; stored layers: {', '.join(map(str, layers))}")
        paths = _read_strings(f["paths"])
        data = f[dataset_name(chosen)][()]
        if _attr_str(f.attrs.get("pooling")) != "none":
            return paths, data
        offsets = f["offsets"][()]
    return {p: data[offsets[i] : offsets[i + 1]] for i, p in enumerate(paths)}


def read_summary(path: str | Path) -> dict[str, Any]:
    """What `w2v-embed info` shows: the attributes, file count, audio duration and failures (plain types)."""
    with _open_finished(path) as f:
        order = list(RunInfo("", "", (0,), "mean", 1).attrs())  # the writer's order, not h5py's alphabetical one
        keys = sorted(f.attrs, key=lambda k: order.index(k) if k in order else len(order))
        summary: dict[str, Any] = {key: _plain(f.attrs[key]) for key in keys}
        summary["files"] = int(f["paths"].shape[0])
        rate = summary.get("sample_rate") or 16000
        summary["audio_seconds"] = float(f["num_samples"][()].sum()) / rate
        if "offsets" in f:
            summary["frames"] = int(f["offsets"][-1]) if f["offsets"].shape[0] else 0
        summary["failed"] = list(zip(_read_strings(f["failed/paths"]), _read_strings(f["failed/errors"])))
    return summary


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- merging shards --------------------------------------------------------------------------------

_MERGE_FIELDS = {k: v for k, v in _RESUME_FIELDS.items() if k != "shard"}


@dataclass(frozen=True)
class MergeSummary:
    output: Path
    inputs: int
    files: int
    failed: int


def merge(output: str | Path, inputs: Sequence[str | Path], overwrite: bool = False) -> MergeSummary:
    """Join finished outputs (the jobs of `extract --shard I/N`) into one, streaming and atomically.

    Refused, before anything is written: unfinished or incomplete shards, a missing or repeated
    shard of an I/N set, outputs computed differently, a file stored twice. The result is written
    under a temporary name and renamed, so a crashed merge leaves no output and can simply be rerun.
    """
    output, paths = Path(output), [Path(p) for p in inputs]
    if not paths:
        raise W2VEmbedError("merge: no inputs given")
    if output.exists() and not overwrite:
        raise W2VEmbedError(f"{output} exists; pass --overwrite to replace it")
    if any(p.resolve() == output.resolve() for p in paths if p.exists()):
        raise W2VEmbedError(f"{output} is also an input; write the merge to a new file")
    infos, counts = _check_mergeable(paths)
    info = replace(infos[0], shard="", shard_files=0, total_files=0)
    lock = _Lock(output)
    try:
        _remove_merge_temps(output)
        temp = output.with_name(f"{output.name}.tmp-{os.getpid()}")
        try:
            _merge(paths, temp, info)
            _fsync_file(temp)
            os.replace(temp, output)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(output.parent)
    finally:
        lock.release()
    return MergeSummary(output, len(paths), sum(c[0] for c in counts), sum(c[1] for c in counts))


def _check_mergeable(paths: list[Path]) -> tuple[list[RunInfo], list[tuple[int, int]]]:
    """Each input's RunInfo and (stored, failed) counts, after every check a merge needs."""
    infos, counts, stored, owner = [], [], [], {}
    for path in paths:
        with _open_finished(path) as f:
            info = _stored_info(f)
            names = _read_strings(f["paths"])
            failed = int(f["failed/paths"].shape[0])
        if infos:
            for name, words in _MERGE_FIELDS.items():
                if getattr(info, name) != getattr(infos[0], name):
                    raise W2VEmbedError(
                        f"cannot merge: {path} was computed with {words} {_show(getattr(info, name))}, "
                        f"{paths[0]} with {_show(getattr(infos[0], name))}"
                    )
        if info.shard and len(names) + failed != info.shard_files:
            raise W2VEmbedError(
                f"cannot merge: {path} (shard {info.shard}) holds {len(names) + failed} of its {info.shard_files} "
                "files; rerun that shard with --resume"
            )
        infos.append(info)
        counts.append((len(names), failed))
        stored.append(names)
    _check_shard_set(paths, infos)
    for path, names in zip(paths, stored):
        for name in names:
            if name in owner:
                raise W2VEmbedError(f"cannot merge: {name} is stored in both {owner[name]} and {path}")
            owner[name] = path
    return infos, counts


def _check_shard_set(paths: list[Path], infos: list[RunInfo]) -> None:
    """Shards of one I/N split: all N present, each once, all from the same list."""
    sharded = [(p, i) for p, i in zip(paths, infos) if i.shard]
    if not sharded:
        return
    if len(sharded) != len(paths):
        plain = next(p for p, i in zip(paths, infos) if not i.shard)
        raise W2VEmbedError(f"cannot merge: {plain} is not a shard, {sharded[0][0]} is ({sharded[0][1].shard})")
    sets = {(i.shard.split("/")[1], i.total_files) for _, i in sharded}
    if len(sets) > 1:
        raise W2VEmbedError("cannot merge: the shards come from different splits (" + ", ".join(
            f"{p}: {i.shard} of {i.total_files} files" for p, i in sharded) + ")")
    count = int(sharded[0][1].shard.split("/")[1])
    given: dict[int, Path] = {}
    for path, info in sharded:
        index = int(info.shard.split("/")[0])
        if index in given:
            raise W2VEmbedError(f"cannot merge: shard {info.shard} given twice ({given[index]} and {path})")
        given[index] = path
    missing = [f"{i}/{count}" for i in range(count) if i not in given]
    if missing:
        raise W2VEmbedError(f"cannot merge: shard {', '.join(missing)} missing; all {count} shards are needed")

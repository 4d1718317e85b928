"""One writer at a time per output: an flock held for the writer's lifetime, checked before every commit."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import W2VEmbedError

try:  # POSIX only; without it (Windows) runs are not protected against a second writer
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


# -- locking ---------------------------------------------------------------------------------------


class Lock:
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



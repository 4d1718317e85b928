"""Reaching Ray: its options, a start that ends within a bounded time, its messages kept off stdout
and (with `quiet`) off stderr, and its failures turned into one line that names the reason.

Ray on its own retries an address that does not answer for up to 17 minutes, waits on a raylet that
cannot start (an address-space limit) without a word, reports an actor that cannot load the model as
a 200-line ActorDiedError, and prints its workers' error messages to stdout (where `-o -` writes rows).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import re
import resource
import shutil
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import UsageError, W2VEmbedError, one_line

T = TypeVar("T")
RAY_LOGS = "/tmp/ray/session_latest/logs"  # a local Ray's; on a cluster, each node's
STORE_HEADROOM = 2 << 30  # address space a Ray driver needs beside its object store (threads' stacks, gRPC)


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: `address` None starts a local Ray; "auto" or "host:port" joins a cluster."""

    address: str | None = None
    actors: int = 1  # Embedders in the pool (each holds the model)
    threads_per_actor: int = 1  # ONNX Runtime threads, and CPUs reserved, per actor
    gpus_per_actor: float = 0.0  # with --device cuda: usually 1
    files_per_batch: int = 4  # files handed to an actor at once
    node_ip: str | None = None  # this node's address, where Ray's own guess is wrong (e.g. only loopback works)
    num_cpus: int | None = None  # a local Ray's CPUs (default: all)
    resources_per_actor: dict[str, float] | None = None  # custom Ray resources, e.g. to place one actor per node
    start_timeout_s: float = 60.0  # most seconds to start or join Ray, and again for the pool's actors to start
    quiet: bool = False  # Ray's own messages on stderr: errors only (all are still in its log folder)

    def __post_init__(self) -> None:
        for name in ("actors", "threads_per_actor", "files_per_batch"):
            if getattr(self, name) < 1:
                raise UsageError(f"--ray-{name.replace('_', '-')} {getattr(self, name)}: expected a whole number >= 1")
        if self.gpus_per_actor < 0:
            raise UsageError(f"gpus_per_actor {self.gpus_per_actor}: expected >= 0")
        if not 0 < self.start_timeout_s < math.inf:
            raise UsageError(f"--ray-timeout {self.start_timeout_s}: expected a number of seconds > 0")


def require_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise W2VEmbedError("--ray needs Ray; install the ray extra: pip install 'w2v-embed[ray]'") from exc
    return ray


def connect(options: RayOptions) -> None:
    """Join (or start) Ray within `start_timeout_s`, unless this process already did (the CLI's Ray, or
    a notebook's own)."""
    ray = require_ray()
    if ray.is_initialized():
        return
    if options.quiet:  # Ray's C++ core reads it when it starts, here and in a local Ray's processes; it
        # says once that it did ("Set ray log level ... to 3"), then no more (an error line per actor started)
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.ERROR if options.quiet else logging.INFO}
    if options.node_ip:
        kwargs["_node_ip_address"] = options.node_ip
    if options.address:
        kwargs["address"] = options.address
    else:
        kwargs["object_store_memory"] = local_store_bytes()
        if options.num_cpus:
            kwargs["num_cpus"] = options.num_cpus
    where = f"Ray at {options.address}" if options.address else "a local Ray"
    _check_reachable(options.address, options.start_timeout_s, where)
    outcome: list[BaseException | None] = []

    def init() -> None:  # in a thread, so that a hang is noticed (and Ray leaves SIGTERM to the CLI)
        try:
            ray.init(**kwargs)
        except BaseException as exc:  # noqa: BLE001  (handed over to the caller's thread)
            outcome.append(exc)
            return
        outcome.append(None)
        threading.Event().wait()  # a local Ray's processes die with the thread that started them (prctl)

    logging.getLogger("ray._private.worker").addFilter(_not_main_thread)
    thread = threading.Thread(target=init, name="ray-init", daemon=True)
    thread.start()
    thread.join(options.start_timeout_s)
    if not outcome:  # Ray's exit handler would wait for the stuck ray.init: this process ends without it
        atexit.unregister(ray._private.worker.shutdown)
        raise W2VEmbedError(f"cannot start {where}: no answer within {options.start_timeout_s:g} s "
                            f"(--ray-timeout; Ray's logs: {RAY_LOGS})")
    if outcome[0] is not None:
        raise W2VEmbedError(f"cannot start {where}: {reason(outcome[0])} (Ray's logs: {RAY_LOGS})") from outcome[0]
    _route_messages(ray, options.quiet)


def local_store_bytes() -> int | None:
    """A local Ray's object store under an address-space limit (`ulimit -v`), or None (Ray's default).

    Every Ray process maps the whole store, so under a limit the driver itself may not fit: Ray then
    aborts this process from C++ (plasma "mmap failed") with no line of ours. The size is chosen here
    as Ray would (30 % of available memory, within /dev/shm), and refused in one line when this
    process's mappings, the store and STORE_HEADROOM exceed the limit.
    """
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    if limit == resource.RLIM_INFINITY:
        return None
    fields = _proc_fields("/proc/meminfo") | _proc_fields("/proc/self/status")
    store = int(0.3 * fields.get("MemAvailable", 0))
    if os.path.isdir("/dev/shm"):
        store = min(store, int(0.95 * shutil.disk_usage("/dev/shm").free))
    mapped = fields.get("VmSize", 0)
    if mapped + store + STORE_HEADROOM > limit:
        gib = 1 << 30
        raise W2VEmbedError(
            f"cannot start a local Ray: the address-space limit (ulimit -v) of {limit / gib:.1f} GiB is below what "
            f"Ray maps into this process ({mapped / gib:.1f} GiB mapped already, a {store / gib:.1f} GiB object store, "
            f"{STORE_HEADROOM // gib} GiB for its threads); raise the limit or run without --ray"
        )
    return store


def _proc_fields(path: str) -> dict[str, int]:
    """`Name:  123 kB` lines of a /proc file, in bytes ({} where there is no such file)."""
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            fields[name] = int(parts[0]) * 1024
    return fields


def _not_main_thread(record: logging.LogRecord) -> bool:
    """Ray's warning that ray.init in a thread leaves SIGTERM alone: that is the point (the CLI's handler
    ends a run like Ctrl-C, with the resume hint)."""
    return "SIGTERM handler is not set" not in record.getMessage()


def _check_reachable(address: str | None, timeout: float, where: str) -> None:
    """A HOST:PORT that refuses connections is named at once (Ray would retry it for minutes)."""
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=min(timeout, 10.0)).close()
    except ValueError as exc:
        raise UsageError(f"--ray {address}: expected HOST:PORT, 'auto' or 'local'") from exc
    except OSError as exc:
        raise W2VEmbedError(f"cannot reach {where}: {exc.strerror or exc}") from exc


class _Console(logging.Filter):
    """What of Ray Data's logging reaches stderr: its warnings unless quiet, never its errors (each
    comes back as the exception that one_line_errors shows as one line); its log file keeps all."""

    def __init__(self, quiet: bool) -> None:
        super().__init__()
        self.lowest = logging.CRITICAL + 1 if quiet else logging.WARNING

    def filter(self, record: logging.LogRecord) -> bool:
        return self.lowest <= record.levelno < logging.ERROR


def _route_messages(ray: Any, quiet: bool) -> None:
    """Workers' error messages (a task retried, an actor that died) go to stderr, not stdout, as their
    last line (where a traceback's reason is), and nowhere with `quiet`; Ray Data's console is filtered
    as _Console says."""
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not any(isinstance(f, _Console) for f in handler.filters):
            handler.addFilter(_Console(quiet))
    worker = ray._private.worker
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "w2v_embed", False):
        return

    def print_to_stderr(data: dict, ignore_prefix: bool) -> None:  # one line each: the whole is in Ray's logs
        if not quiet:
            original({**data, "lines": [one_line("\n".join(data.get("lines", [])))], "is_err": True}, ignore_prefix)

    print_to_stderr.w2v_embed = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = print_to_stderr


def reason(exc: BaseException) -> str:
    """The innermost reason, on one line: an actor's own error (e.g. its node has no such model), not
    Ray's wrappers around it (ActorDiedError(RayTaskError(W2VEmbedError)) from SystemException())."""
    for _ in range(16):  # a chain, never a cycle
        inner = getattr(exc, "cause", None)  # RayTaskError: the task's own exception
        if not isinstance(inner, BaseException):  # ActorDiedError(RayTaskError), or `raise ... from`
            inner = next((a for a in exc.args if isinstance(a, BaseException)), None)
        if inner is None and exc.__cause__ is not None and str(exc.__cause__).strip():
            inner = exc.__cause__
        if inner is None:
            break
        exc = inner
    line = one_line(str(exc))  # else a traceback's last line: "w2v_embed.errors.W2VEmbedError: ... not found"
    return re.sub(r"^(?:[\w.]+\.)?\w*(?:Error|Exception): ", "", line)


def one_line_errors(batches: Iterable[T]) -> Iterator[T]:
    """Ray's failures while results stream in (an actor that cannot load the model, a pool that cannot
    start in time) as one W2VEmbedError."""
    import ray

    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # all from inside Ray
            init = isinstance(exc, ray.exceptions.RayActorError) and exc.actor_init_failed
            raise W2VEmbedError(f"Ray: {'an Embedder actor cannot start: ' if init else ''}{reason(exc)}") from exc
        yield batch

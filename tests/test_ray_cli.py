"""`extract --ray` from the command line when Ray cannot be reached or started: one error line within a
bounded time (Ray alone retries for up to 17 minutes), and with -q nothing of Ray's own chatter."""

from __future__ import annotations

import re
import resource
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("ray")


def _extract(onnx_model, tmp_path, *args: str, preexec_fn=None, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, np.random.default_rng(0).uniform(-0.5, 0.5, 16_000).astype(np.float32), 16_000)
    command = [sys.executable, "-m", "w2v_embed", "extract", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"),
               "-o", str(tmp_path / "out.h5"), "-m", str(onnx_model("group")), "--ray-node-ip", "127.0.0.2", *args]
    start = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn)
    return proc, time.monotonic() - start


def _ours(stderr: str) -> tuple[list[str], list[str]]:
    """Our lines, and the C++ warnings Ray's GCS client prints before anything configures its logging
    (while it tries an address); nothing else may be there."""
    lines = stderr.splitlines()
    ray_cpp = [line for line in lines if re.match(r"\[\d{4}-\d\d-\d\d [\d:,]+ [IWE] \d+ \d+\] \w+\.(h|cc):\d+:", line)]
    return [line for line in lines if line not in ray_cpp], ray_cpp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_that_refuses_is_named_at_once(onnx_model, tmp_path):
    port = _free_port()
    proc, _ = _extract(onnx_model, tmp_path, "--ray", f"127.0.0.1:{port}", timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"error: cannot reach Ray at 127.0.0.1:{port}: Connection refused"]


def test_an_address_that_never_answers_fails_within_the_timeout(onnx_model, tmp_path):
    """A port that accepts connections but is no Ray (Ray would retry it 20 times, 50 s each)."""
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))  # Ray replaces 127.0.0.1 with this node's address
    listener.listen(16)
    accepted = []
    threading.Thread(target=lambda: accepted.extend(listener.accept() for _ in range(16)), daemon=True).start()
    try:
        port = listener.getsockname()[1]
        proc, seconds = _extract(onnx_model, tmp_path, "--ray", f"127.0.0.1:{port}", "--ray-timeout", "5", "-q")
    finally:
        listener.close()
    errors, others = _ours(proc.stderr)
    assert proc.returncode == 1 and errors == [f"error: cannot start Ray at 127.0.0.1:{port}: no answer within 5 s "
                                               f"(--ray-timeout; Ray's logs: /tmp/ray/session_latest/logs)"], proc.stderr
    assert seconds < 60  # startup (imports, the model) + 5 s; the exit does not wait for Ray's retries


@pytest.mark.slow
def test_quiet_run_on_ray_shows_nothing_of_rays_own(onnx_model, tmp_path):
    proc, _ = _extract(onnx_model, tmp_path, "--ray", "local", "-q", timeout=300)
    ours, ray_cpp = _ours(proc.stderr)
    assert proc.returncode == 0 and ours == [], proc.stderr
    assert all("Set ray log level from environment variable RAY_BACKEND_LOG_LEVEL" in line for line in ray_cpp), proc.stderr


@pytest.mark.slow
def test_ray_that_cannot_start_under_an_address_space_limit_is_one_line(onnx_model, tmp_path):
    """6 GB of address space: enough for this process, too little for Ray's raylet."""
    limit = 6 << 30
    proc, seconds = _extract(onnx_model, tmp_path, "--ray", "local", "-q", "--ray-timeout", "40", timeout=300,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    ours, _ = _ours(proc.stderr)
    assert proc.returncode == 1 and len(ours) == 1 and ours[0].startswith("error: cannot start a local Ray"), proc.stderr
    assert seconds < 120


def test_a_local_ray_store_is_sized_only_under_an_address_space_limit(monkeypatch):
    """No limit: Ray chooses. A roomy limit: 30 % of available memory, as Ray would. A tight one: refused
    before Ray starts (it would abort this process from C++ mapping the store)."""
    from w2v_embed import ray_connect
    from w2v_embed.errors import W2VEmbedError

    monkeypatch.setattr(ray_connect.resource, "getrlimit", lambda _: (resource.RLIM_INFINITY,) * 2)
    assert ray_connect.local_store_bytes() is None
    available = ray_connect._proc_fields("/proc/meminfo")["MemAvailable"]
    monkeypatch.setattr(ray_connect.resource, "getrlimit", lambda _: (1 << 50, 1 << 50))
    assert 0 < ray_connect.local_store_bytes() <= 0.3 * available
    monkeypatch.setattr(ray_connect.resource, "getrlimit", lambda _: (3 << 30, 3 << 30))
    with pytest.raises(W2VEmbedError, match=r"ulimit -v\) of 3.0 GiB"):
        ray_connect.local_store_bytes()


@pytest.mark.slow
def test_a_pool_that_cannot_be_placed_fails_within_the_timeout(onnx_model, tmp_path):
    """Three one-CPU actors on a local Ray of two CPUs: Ray Data would wait 10 minutes."""
    proc, seconds = _extract(onnx_model, tmp_path, "--ray", "local", "--ray-actors", "3", "--ray-timeout", "15", "-q",
                             timeout=300)
    ours, _ = _ours(proc.stderr)
    assert proc.returncode == 1 and len(ours) == 1 and ours[0].startswith("error: Ray: Timed out while starting actors"), proc.stderr
    assert seconds < 150

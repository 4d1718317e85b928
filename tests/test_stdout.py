"""`-o -` when stdout cannot take the rows: closed (`>&-`), full (/dev/full), or a reader that left
(`| head`). Each ends with at most one line on stderr, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import soundfile as sf


def _extract(onnx_model, tmp_path, stdout, extra=(), preexec_fn=None) -> subprocess.Popen:
    for i in range(4):
        sf.write(tmp_path / f"{i}.wav", np.random.default_rng(i).uniform(-0.5, 0.5, 160_000).astype(np.float32), 16_000)
    command = [sys.executable, "-m", "w2v_embed", "extract", str(tmp_path), "-o", "-", "-m", str(onnx_model("group")), *extra]
    return subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)


def _one_error_line(proc: subprocess.Popen, expected: str) -> None:
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert len(stderr.splitlines()) == 1 and stderr.startswith("error: -o -:") and expected in stderr, stderr


def test_closed_stdout_is_one_error_line(onnx_model, tmp_path):
    _one_error_line(_extract(onnx_model, tmp_path, None, preexec_fn=lambda: os.close(1)), "stdout is closed")


def test_full_stdout_is_one_error_line(onnx_model, tmp_path):
    with open("/dev/full", "w") as full:
        _one_error_line(_extract(onnx_model, tmp_path, full), "No space left on device")


def test_a_reader_that_leaves_ends_the_run_quietly(onnx_model, tmp_path):
    """400 windows (~300 kB) are more than a pipe holds, so rows are still being written when the reader goes."""
    proc = _extract(onnx_model, tmp_path, subprocess.PIPE, ["--window", "0.1"])
    assert "layers" in json.loads(proc.stdout.readline())
    proc.stdout.close()
    stderr = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 1 and stderr == ""  # as click (and Unix tools under SIGPIPE) end: no message

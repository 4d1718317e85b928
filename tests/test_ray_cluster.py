"""extract on a two-node Ray cluster on this machine (`ray start --head` + `ray start --address`):
work crosses node boundaries and the output equals a local run's."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from test_ray import _same_output, make_corpus  # noqa: E402
from w2v_embed.discover import discover  # noqa: E402
from w2v_embed.embedder import EmbedOptions, Embedder  # noqa: E402
from w2v_embed.extract import ExtractOptions, extract  # noqa: E402
from w2v_embed.ray_engine import RayEngine, RayOptions  # noqa: E402

IP = "127.0.0.2"  # Ray rewrites 127.0.0.1 to the interface address, which is not reachable here


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((IP, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    common = [f"--node-ip-address={IP}", "--num-cpus=2", "--disable-usage-stats", '--resources={"embedder": 1}']
    start = [[ray_cli, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
             [ray_cli, "start", f"--address={IP}:{port}", *common]]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # a loopback-only test cluster; no token to share
    try:
        for command in start:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        yield f"{IP}:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120, env=env)


@pytest.mark.slow
def test_two_nodes_share_the_work_and_equal_a_local_run(cluster, onnx_model, tmp_path):
    corpus = tmp_path / "corpus"
    make_corpus(corpus)
    for i in range(6):  # more files, so that every actor gets some
        shutil.copy(corpus / "speaker1" / sorted(p.name for p in (corpus / "speaker1").iterdir())[0],
                    corpus / f"copy{i}.wav")
    model = onnx_model("group")
    embedder = Embedder(model, device="cpu", options=EmbedOptions("1,last", "mean"))
    # Each node offers one "embedder" resource and each actor needs one: one actor on each node.
    options = RayOptions(address=cluster, node_ip=IP, actors=2, files_per_batch=1, resources_per_actor={"embedder": 1})
    engine = RayEngine(embedder, model, "cpu", options)
    files = discover([str(corpus)])
    try:
        summary = extract(files, tmp_path / "ray.h5", embedder, ExtractOptions(), engine=engine)
    except ray.exceptions.RayError:  # a pool that died while starting on an overloaded machine: resume it,
        summary = extract(files, tmp_path / "ray.h5", embedder, ExtractOptions(mode="resume"), engine=engine)
    assert summary.ok + summary.failed + summary.skipped == len(files)  # as a user would (nothing is lost)
    assert len(ray.nodes()) == 2 and len(engine.nodes) == 2, engine.nodes
    extract(files, tmp_path / "local.h5", embedder, ExtractOptions())
    _same_output(tmp_path / "ray.h5", tmp_path / "local.h5")

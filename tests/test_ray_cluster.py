"""extract on a two-node Ray cluster on this machine (`ray start --head` + `ray start --address`):
work crosses node boundaries and the output equals a local run's."""

from __future__ import annotations

import json
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


# The driver runs in a process of its own: a Ray driver that already ran another Ray (test_ray's
# local one, in the same pytest process) cannot start actors on a new cluster.
DRIVER = """
import json, sys
from w2v_embed.discover import discover
from w2v_embed.embedder import EmbedOptions, Embedder
from w2v_embed.extract import ExtractOptions, extract
from w2v_embed.ray_engine import RayEngine, RayOptions

address, model, corpus, out = sys.argv[1:]
embedder = Embedder(model, device="cpu", options=EmbedOptions("1,last", "mean"))
# Each node offers one "embedder" resource and each actor needs one: one actor on each node.
options = RayOptions(address=address, node_ip="%s", actors=2, files_per_batch=1, resources_per_actor={"embedder": 1})
engine = RayEngine(embedder, model, "cpu", options)
files = discover([corpus])
summary = extract(files, out, embedder, ExtractOptions(), engine=engine)
import ray
print(json.dumps({"files": len(files), "stored": summary.ok + summary.failed, "nodes": len(ray.nodes()),
                  "nodes_used": len(engine.nodes)}))
""" % IP


@pytest.mark.slow
def test_two_nodes_share_the_work_and_equal_a_local_run(cluster, onnx_model, tmp_path):
    corpus = tmp_path / "corpus"
    make_corpus(corpus)
    for i in range(6):  # more files, so that every actor gets some
        shutil.copy(corpus / "speaker1" / sorted(p.name for p in (corpus / "speaker1").iterdir())[0],
                    corpus / f"copy{i}.wav")
    model = onnx_model("group")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-c", DRIVER, cluster, str(model), str(corpus), str(tmp_path / "ray.h5")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["stored"] == result["files"] and result["nodes"] == 2 and result["nodes_used"] == 2, result
    embedder = Embedder(model, device="cpu", options=EmbedOptions("1,last", "mean"))
    extract(discover([str(corpus)]), tmp_path / "local.h5", embedder, ExtractOptions())
    _same_output(tmp_path / "ray.h5", tmp_path / "local.h5")

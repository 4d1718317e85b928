"""extract on Ray (local, num_cpus=2): the same output as a local run, resume after a killed driver,
and nothing lost or stored twice when an actor dies mid-run. One Ray instance for the module."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from conftest import _load_script  # noqa: E402
from w2v_embed.discover import discover  # noqa: E402
from w2v_embed.embedder import EmbedOptions, Embedder  # noqa: E402
from w2v_embed.extract import ExtractOptions, extract  # noqa: E402
from w2v_embed.ray_engine import RayEngine, RayOptions  # noqa: E402
from w2v_embed.store import load, read_summary  # noqa: E402

make_corpus = _load_script("make_example_audio").make_corpus


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, _node_ip_address="127.0.0.2", include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-data") / "corpus"
    make_corpus(root)
    return root


def _run(model, corpus, out, engine: bool, progress=None, mode="new", pool="mean"):
    embedder = Embedder(model, device="cpu", options=EmbedOptions("1,last", pool))
    ray_engine = RayEngine(embedder, model, "cpu", RayOptions(files_per_batch=2)) if engine else None
    return extract(discover([str(corpus)]), out, embedder, ExtractOptions(mode=mode), progress, ray_engine)


def _same_output(a, b, layer="last"):
    paths_a, x_a = load(a, layer=layer)
    paths_b, x_b = load(b, layer=layer)
    assert paths_a == paths_b and len(set(paths_a)) == len(paths_a)  # both in input order
    np.testing.assert_allclose(x_a, x_b, atol=1e-5)
    assert sorted(read_summary(a)["failed"]) == sorted(read_summary(b)["failed"])


@pytest.mark.parametrize("pool", ["mean", "none"])
def test_ray_equals_a_local_run(local_ray, onnx_model, corpus, tmp_path, pool):
    model = onnx_model("group")
    summary = _run(model, corpus, tmp_path / "ray.h5", engine=True, pool=pool)
    _run(model, corpus, tmp_path / "local.h5", engine=False, pool=pool)
    assert summary.ok >= 4 and summary.failed >= 1  # the example corpus has a corrupt file
    if pool == "mean":
        _same_output(tmp_path / "ray.h5", tmp_path / "local.h5")
        _same_output(tmp_path / "ray.h5", tmp_path / "local.h5", layer=1)
    else:
        frames_ray, frames_local = load(tmp_path / "ray.h5", layer="last"), load(tmp_path / "local.h5", layer="last")
        walked = [f.name for f in discover([str(corpus)]) if f.name in frames_local]  # the failed file aside
        assert list(frames_ray) == list(frames_local) == walked
        for name in frames_local:
            np.testing.assert_allclose(frames_ray[name], frames_local[name], atol=1e-5)


def test_killed_driver_resumes_and_computes_only_what_is_missing(local_ray, onnx_model, corpus, tmp_path):
    model = onnx_model("group")
    seen = []

    def interrupt(name, seconds):
        seen.append(name)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(model, corpus, tmp_path / "ray.h5", engine=True, progress=interrupt)
    summary = _run(model, corpus, tmp_path / "ray.h5", engine=True, mode="resume")
    assert summary.skipped >= 2  # stored before the interrupt (a failed file is retried)
    _run(model, corpus, tmp_path / "local.h5", engine=False)
    _same_output(tmp_path / "ray.h5", tmp_path / "local.h5")


def _embed_actor_pids() -> list[int]:
    """Processes of the pool's actors: Ray titles them after the actor class."""
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"]) if "MapBatches(_Embed)" in " ".join(p.info["cmdline"] or [])]


def test_an_actor_killed_mid_run_loses_nothing(local_ray, onnx_model, corpus, tmp_path):
    model = onnx_model("group")
    killed = []

    def kill_an_actor(name, seconds):
        pids = _embed_actor_pids()
        if not killed and pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    summary = _run(model, corpus, tmp_path / "ray.h5", engine=True, progress=kill_an_actor)
    assert killed, "no actor was found to kill"
    _run(model, corpus, tmp_path / "local.h5", engine=False)
    _same_output(tmp_path / "ray.h5", tmp_path / "local.h5")
    assert summary.ok + summary.failed == len(discover([str(corpus)]))


def test_segments_on_ray_equal_local(local_ray, onnx_model, corpus, tmp_path):
    from w2v_embed.segments import parse_table

    wav = sorted((corpus / "long").iterdir())[0]
    rows = parse_table(f"path,start,end,id\n{wav},0.5,2.0,a\n{wav},1.0,3.5,b\n{wav},3,2,bad\n")
    model = onnx_model("group")
    embedder = Embedder(model, device="cpu", options=EmbedOptions("last", "mean"))
    engine = RayEngine(embedder, model, "cpu", RayOptions(files_per_batch=2))
    ray_summary = extract(rows, tmp_path / "ray.h5", embedder, ExtractOptions(), engine=engine)
    extract(rows, tmp_path / "local.h5", embedder, ExtractOptions())
    assert (ray_summary.ok, ray_summary.failed) == (2, 1)
    _same_output(tmp_path / "ray.h5", tmp_path / "local.h5")


def test_actors_that_cannot_load_the_model_are_one_error_line(local_ray, onnx_model, corpus, tmp_path):
    """As on a node where the model's path does not exist: the actors' own reason, not Ray's 200 lines."""
    from w2v_embed.errors import W2VEmbedError

    model = onnx_model("group")
    embedder = Embedder(model, device="cpu", options=EmbedOptions("last", "mean"))
    elsewhere = tmp_path / "not-on-this-node.onnx"
    engine = RayEngine(embedder, elsewhere, "cpu", RayOptions(files_per_batch=2))
    with pytest.raises(W2VEmbedError) as caught:
        extract(discover([str(corpus)]), tmp_path / "ray.h5", embedder, ExtractOptions(), engine=engine)
    assert str(caught.value) == (f"Ray: an Embedder actor cannot start: {elsewhere}: model not found; "
                                 "create one with: w2v-embed export SOURCE")


def test_actors_run_the_runtime_the_driver_asked_for(local_ray, onnx_model, corpus, tmp_path):
    """--runtime openvino on Ray: every actor runs OpenVINO (actors used to ignore it and run ONNX Runtime), and
    its features match ONNX Runtime's as the runtimes do (≤ 1e-4)."""
    pytest.importorskip("openvino")
    model = onnx_model("group")
    embedder = Embedder(model, device="cpu", options=EmbedOptions("last", "mean"), runtime="openvino")
    assert embedder.model.runtime.name == "openvino"
    engine = RayEngine(embedder, model, "cpu", RayOptions(files_per_batch=2))
    summary = extract(discover([str(corpus)]), tmp_path / "ray.h5", embedder, ExtractOptions(), engine=engine)
    assert summary.ok >= 4 and engine.runtimes == {"openvino": summary.ok + summary.failed}
    _run(model, corpus, tmp_path / "local.h5", engine=False)
    paths, x = load(tmp_path / "ray.h5", layer="last")
    paths_local, x_local = load(tmp_path / "local.h5", layer="last")
    assert paths == paths_local
    np.testing.assert_allclose(x, x_local, atol=1e-4)


def test_failures_name_files_as_a_local_run_does_for_relative_inputs(local_ray, onnx_model, corpus, tmp_path, monkeypatch):
    """Workers are sent resolved paths (they start elsewhere); the stored reason names the file as given."""
    monkeypatch.chdir(corpus.parent)
    model = onnx_model("group")
    embedder = Embedder(model, device="cpu", options=EmbedOptions("last"))
    engine = RayEngine(embedder, model, "cpu", RayOptions(files_per_batch=2))
    ray_run = extract(discover([corpus.name]), tmp_path / "ray.h5", embedder, ExtractOptions(), engine=engine)
    local = extract(discover([corpus.name]), tmp_path / "local.h5", embedder, ExtractOptions())
    assert ray_run.failures and ray_run.failures == local.failures
    assert all(str(corpus.parent) not in reason for _, reason in ray_run.failures), ray_run.failures

"""`extract --units` runs as features runs do: shards + merge, resume after an interruption, Ray; each
compared with one plain local run, and a changed codebook refused with one line."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from w2v_embed.cli import app
from w2v_embed.discover import discover
from w2v_embed.embedder import EmbedOptions, Embedder
from w2v_embed.engine import LocalEngine
from w2v_embed.extract import ExtractOptions, extract
from w2v_embed.units import load_units, prepare

LAYER, K = 2, 12
SECONDS = (2.0, 0.7, 3.1, 0.4, 1.6, 2.4, 1.1, 0.9)


def _invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("units_runs")
    rng = np.random.default_rng(7)
    paths = []
    for i, seconds in enumerate(SECONDS):
        t = np.arange(round(seconds * 16000)) / 16000
        x = 0.3 * np.sin(2 * np.pi * (120 + 70 * i) * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(len(t))
        paths.append(root / f"c{i}.wav")
        sf.write(paths[-1], x.astype(np.float32), 16000)
    (root / "broken.wav").write_bytes(b"RIFF not audio")
    # the listing's order is not the sorted one, nor the order batching completes the files in
    order = [paths[5], paths[0], root / "broken.wav", paths[3], paths[7], paths[1], paths[6], paths[2], paths[4]]
    (root / "train.list").write_text("".join(f"{p}\n" for p in order))
    return order


@pytest.fixture(scope="module")
def codebooks(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("codebooks")
    rng = np.random.default_rng(3)
    np.save(root / "c.npy", rng.standard_normal((K, 32)).astype(np.float32))
    np.save(root / "other.npy", rng.standard_normal((K, 32)).astype(np.float32))
    return root / "c.npy", root / "other.npy"


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _one_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_three_shards_merge_into_the_units_of_one_run_in_input_order(onnx_model, corpus, codebooks, tmp_path):
    model, (c, other) = onnx_model("group"), codebooks
    listing = corpus[0].parent / "train.list"
    common = ("--files-from", listing, "-m", model, "--units", c, "--layers", LAYER, "--dedup", "--batch-size", 2, "-q")
    one = _invoke("extract", *common, "-o", tmp_path / "one.km")
    assert one.exit_code == 1, one.output  # broken.wav fails: no line, named in .failed
    assert _invoke("extract", *common, "-o", tmp_path / "one.h5").exit_code == 1
    for i in range(3):
        result = _invoke("extract", *common, "--shard", f"{i}/3", "-o", tmp_path / f"u.{i}.h5")
        assert result.exit_code in (0, 1), result.output
    shards = [tmp_path / f"u.{i}.h5" for i in (2, 0, 1)]
    assert _invoke("merge", tmp_path / "all.km", *shards).exit_code == 0
    assert _invoke("merge", tmp_path / "all.h5", *shards).exit_code == 0
    assert len(_lines(tmp_path / "one.km")) == len(corpus) - 1
    for suffix in ("", ".dur", ".failed"):
        assert _lines(tmp_path / f"all.km{suffix}") == _lines(tmp_path / f"one.km{suffix}"), suffix
    shard_info, merged_info = _invoke("info", tmp_path / "u.0.h5").output, _invoke("info", tmp_path / "all.h5").output
    assert "0/3" in shard_info and "codebook_sha256" in merged_info and "shard_deal" not in merged_info
    units, durations = load_units(tmp_path / "all.h5", durations=True)
    expected, expected_durations = load_units(tmp_path / "one.h5", durations=True)
    assert list(units) == list(expected) == [str(p) for p in corpus if p.name != "broken.wav"]
    for name in expected:
        assert units[name].tolist() == expected[name].tolist()
        assert durations[name].tolist() == expected_durations[name].tolist()
    # a shard's .km would not be in the list's order, and shards of another codebook are not the same units
    refused = _invoke("extract", *common, "--shard", "0/3", "-o", tmp_path / "u.0.km")
    assert refused.exit_code == 2 and "merge" in _one_line(refused)
    args = [a if a != c else other for a in common]
    assert _invoke("extract", *args, "--shard", "1/3", "-o", tmp_path / "v.1.h5").exit_code in (0, 1)
    mixed = _invoke("merge", tmp_path / "mixed.km", tmp_path / "u.0.h5", tmp_path / "v.1.h5", tmp_path / "u.2.h5")
    assert mixed.exit_code == 1 and "codebook" in _one_line(mixed) and not (tmp_path / "mixed.km").exists()
    features = _invoke("extract", corpus[0], "-m", model, "--layers", LAYER, "-o", tmp_path / "f.h5", "-q")
    assert features.exit_code == 0
    assert "units" in _one_line(_invoke("merge", tmp_path / "f.km", tmp_path / "f.h5"))


class _Interrupted(Exception):
    pass


class _StopAfter:
    """An engine that dies (like Ctrl-C or a lost node) after handing out `count` results."""

    def __init__(self, engine: LocalEngine, count: int) -> None:
        self.engine, self.embedder, self.count = engine, engine.embedder, count

    def results(self, files, options, frame_sink=None):
        for n, result in enumerate(self.engine.results(files, options, frame_sink)):
            if n == self.count:
                raise _Interrupted
            yield result


@pytest.mark.parametrize("suffix", [".km", ".h5"])
def test_resume_after_an_interruption_equals_a_fresh_run(onnx_model, corpus, codebooks, tmp_path, suffix):
    model, (c, other) = onnx_model("group"), codebooks
    listing = corpus[0].parent / "train.list"
    common = ("--files-from", listing, "-m", model, "--units", c, "--layers", LAYER, "-q")
    fresh, out = tmp_path / f"fresh{suffix}", tmp_path / f"out{suffix}"
    assert _invoke("extract", *common, "-o", fresh).exit_code == 1
    embedder = Embedder(model, device="cpu", options=EmbedOptions(str(LAYER), "none", batch_size=2))
    units, embedder = prepare(c, embedder, str(LAYER))
    files = discover([str(p) for p in corpus])
    with pytest.raises(_Interrupted):
        extract(files, out, embedder, ExtractOptions(save_every_files=1), engine=_StopAfter(LocalEngine(embedder), 4),
                units=units)
    assert not out.exists() and list(Path(f"{out}.parts").glob("seg-*.h5"))  # what finished is kept
    changed = _invoke("extract", *[a if a != c else other for a in common], "--resume", "-o", out)
    assert changed.exit_code == 1 and "codebook" in _one_line(changed)
    resumed = _invoke("extract", *common[:-1], "--resume", "--json-summary", "-o", out)
    assert resumed.exit_code == 1, resumed.output
    assert json.loads(resumed.stdout)["skipped"] >= 3
    if suffix == ".km":
        for extra in ("", ".failed"):
            assert _lines(Path(f"{out}{extra}")) == _lines(Path(f"{fresh}{extra}"))
        again = _invoke("extract", *common, "--resume", "-o", out)  # a finished .km keeps no names to go on from
        assert again.exit_code == 1 and "--overwrite" in _one_line(again)
    else:
        got, expected = load_units(out), load_units(fresh)
        assert list(got) == list(expected) and all(got[n].tolist() == expected[n].tolist() for n in expected)
    assert not Path(f"{out}.parts").exists()


@pytest.mark.slow  # starts Ray: ~1 min here
def test_units_on_ray_equal_a_local_run(onnx_model, corpus, codebooks, tmp_path):
    """`--ray local` from the command line: actors compute the layer's frames, the driver assigns and writes."""
    import subprocess
    import sys

    pytest.importorskip("ray")
    listing = corpus[0].parent / "train.list"
    common = ["--files-from", str(listing), "-m", str(onnx_model("group")), "--units", str(codebooks[0]),
              "--layers", str(LAYER), "--dedup", "-q"]
    assert _invoke("extract", *common, "-o", tmp_path / "local.km").exit_code == 1
    proc = subprocess.run([sys.executable, "-m", "w2v_embed", "extract", *common, "-o", str(tmp_path / "ray.km"),
                           "--ray", "local", "--ray-node-ip", "127.0.0.2"], capture_output=True, text=True, timeout=500)
    assert proc.returncode == 1, proc.stderr  # broken.wav
    for extra in ("", ".dur", ".failed"):
        assert _lines(tmp_path / f"ray.km{extra}") == _lines(tmp_path / f"local.km{extra}"), extra


def test_the_units_embedder_holds_one_session_not_the_full_graph_too(onnx_model, codebooks):
    """prepare() re-configures an Embedder made for --layers (default: last) to end at the codebook's layer:
    the full graph's session it loaded first is released (a base model's graph twice was 1.7 GB vs 0.8 GB)."""
    embedder = Embedder(onnx_model("group"), device="cpu", options=EmbedOptions("last"))
    assert list(embedder.model.sessions) == [embedder.info.num_layers]
    _, units_embedder = prepare(codebooks[0], embedder, str(LAYER))
    assert list(units_embedder.model.sessions) == [LAYER]
    embedder.embed(np.zeros(16000, np.float32), 16000)  # the first one still works: it loads its graph again


def test_segments_give_the_units_of_the_cut_audio_and_resume_compares_their_times(onnx_model, corpus, codebooks, tmp_path):
    model, c = onnx_model("group"), codebooks[0]
    source = corpus[7]  # c2.wav, 3.1 s
    rows = [("a", 0.5, 2.0), ("b", 2.2, 3.0)]
    cuts = []
    audio = sf.read(source, dtype="float32")[0]
    for name, start, end in rows:
        cuts.append(tmp_path / f"{name}.wav")
        sf.write(cuts[-1], audio[round(start * 16000) : round(end * 16000)], 16000, subtype="FLOAT")
    table = tmp_path / "segs.tsv"
    table.write_text("path\tstart\tend\tid\n" + "".join(f"{source}\t{a}\t{b}\t{n}\n" for n, a, b in rows))
    common = ("-m", model, "--units", c, "--layers", LAYER, "-q")
    assert _invoke("extract", "--segments", table, *common, "-o", tmp_path / "segs.h5").exit_code == 0
    assert _invoke("extract", *cuts, *common, "-o", tmp_path / "cuts.h5").exit_code == 0
    by_segment, by_cut = load_units(tmp_path / "segs.h5"), load_units(tmp_path / "cuts.h5")
    assert list(by_segment) == ["a", "b"]
    for name, cut in zip(by_segment, cuts):
        assert by_segment[name].tolist() == by_cut[str(cut)].tolist()
    table.write_text("path\tstart\tend\tid\n" + "".join(f"{source}\t{a}\t{b + 0.1}\t{n}\n" for n, a, b in rows))
    changed = _invoke("extract", "--segments", table, *common, "--resume", "-o", tmp_path / "segs.h5")
    assert changed.exit_code == 1 and "segment" in _one_line(changed)


def test_the_units_layout_is_the_features_layout_with_units_columns(tmp_path):
    """A units RunInfo through the FeatureWriter directly: columns, refusals, and readers of each kind."""
    from w2v_embed.errors import W2VEmbedError
    from w2v_embed.store import FeatureWriter, RunInfo, load
    from w2v_embed.store.sink import Row

    info = RunInfo("toy", "0" * 64, (2,), "none", 8, k=40_000, codebook="c.npy", codebook_sha256="1" * 64, dedup=True)
    assert [(c.name, c.dtype) for c in info.columns()] == [("units", np.int32), ("durations", np.int32)]  # K > 32768
    with pytest.raises(W2VEmbedError, match="one layer at frame level"):
        FeatureWriter(tmp_path / "bad.h5", RunInfo("toy", "0" * 64, (2,), "mean", 8, k=4))
    rows = {"a": ([5, 39_999, 5], [2, 1, 4]), "b": ([7], [3])}
    with FeatureWriter(tmp_path / "u.h5", info) as writer:
        with pytest.raises(W2VEmbedError, match="lack units"):
            writer.add(Row(0, "a", 16_000, 16_000, {"units": np.array(rows["a"][0])}))
        with pytest.raises(W2VEmbedError, match="every column"):
            writer.add(Row(0, "a", 16_000, 16_000, {"units": np.array(rows["a"][0]), "durations": np.array([1])}))
        for i, (name, (u, d)) in enumerate(reversed(rows.items())):  # completion order: b, then a
            writer.add(Row(1 - i, name, 16_000, 16_000, {"units": np.array(u), "durations": np.array(d)}))
    units, durations = load_units(tmp_path / "u.h5", durations=True)
    assert {n: v.tolist() for n, v in units.items()} == {n: u for n, (u, _) in rows.items()} and list(units) == ["a", "b"]
    assert {n: v.tolist() for n, v in durations.items()} == {n: d for n, (_, d) in rows.items()}
    with pytest.raises(W2VEmbedError, match="load_units"):
        load(tmp_path / "u.h5")


def test_the_assignment_runs_blas_on_one_thread_while_the_model_has_the_cpu(onnx_model, corpus, codebooks, monkeypatch):
    """numpy's BLAS threads spin after a product and took cores from ONNX Runtime: `--units` ran at 0.93× of
    `--pool mean` on 2 cores (1.00× with OPENBLAS_NUM_THREADS=1), so on CPU the assignment gets one thread."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from w2v_embed.units.codebook import Centroids

    seen = []
    original = Centroids.assign
    monkeypatch.setattr(Centroids, "assign", lambda self, frames: (
        seen.extend(i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"),
        original(self, frames))[1])
    embedder = Embedder(onnx_model("group"), device="cpu", options=EmbedOptions("0"))
    units, embedder = prepare(codebooks[0], embedder, str(LAYER))
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        summary = extract(discover([str(p) for p in corpus if p.name != "broken.wav"][:3]), io.StringIO(), embedder, units=units)
    assert summary.ok == 3 and seen and set(seen) == {1}


def test_without_threadpoolctl_the_units_are_the_same(onnx_model, corpus, codebooks, monkeypatch):
    """threadpoolctl is in the units extra, not a core dependency: `--units` with a .npy needs numpy only."""
    embedder = Embedder(onnx_model("group"), device="cpu", options=EmbedOptions("0"))
    units, embedder = prepare(codebooks[0], embedder, str(LAYER))
    files = [str(p) for p in corpus if p.name != "broken.wav"][:2]
    with_it = io.StringIO()
    extract(discover(files), with_it, embedder, units=units)
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import fails as if not installed
    without = io.StringIO()
    summary = extract(discover(files), without, embedder, units=units)
    assert summary.ok == 2 and without.getvalue() == with_it.getvalue() and '"units"' in with_it.getvalue()

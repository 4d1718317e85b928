"""Discrete units: codebooks against numpy's argmin on transformers' reference frames, faiss indexes against
faiss's own quantizer, .km order, --dedup, refusals, k-means fits and samplers, and the layer probe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from conftest import reference_states
from w2v_embed.store.sink import Row
from w2v_embed.cli import app
from w2v_embed.embedder import EmbedOptions, Embedder
from w2v_embed.units import KMInfo, load_units, run_lengths, save_km
from w2v_embed.units.kmeans import FrameSample, SampleOptions

LAYER, K = 2, 12
SECONDS = (5.0, 1.5, 6.0, 0.6, 3.0, 4.5)  # lengths out of order: batching completes them in another order


def _signal(i: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(100 + i)
    t = np.arange(round(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * (150 + 60 * i) * t) * (1 + np.sin(2 * np.pi * 1.5 * t)) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(autouse=True, scope="module")
def _faiss_single_thread():
    """faiss' OpenMP threads on a busy shared machine make a 0.2 s training take a minute."""
    try:
        import faiss
    except ImportError:
        yield
        return
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("units")
    paths = []
    for i, seconds in enumerate(SECONDS):
        paths.append(root / f"clip{i}.wav")
        sf.write(paths[-1], _signal(i, seconds), 16000, subtype="FLOAT")
    return paths


@pytest.fixture(scope="module")
def reference(corpus, reference_model, checkpoint_dir) -> dict[str, np.ndarray]:
    """transformers' frames of LAYER for each clip alone (the tiny wav2vec2 base-like checkpoint)."""
    from transformers import Wav2Vec2FeatureExtractor

    extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(checkpoint_dir("group")))
    out = {}
    for path in corpus:
        x = sf.read(path, dtype="float32")[0]
        values = extractor(x, sampling_rate=16000, return_tensors="np").input_values[0]
        out[str(path)] = reference_states(reference_model("group"), values)[LAYER]
    return out


@pytest.fixture(scope="module")
def centroids(reference) -> np.ndarray:
    frames = np.concatenate(list(reference.values()))
    return frames[np.random.default_rng(1).choice(len(frames), K, replace=False)] + 0.01


def _argmin(frames: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The definition: argmin over squared Euclidean distances, in float64."""
    d = ((frames.astype(np.float64)[:, None, :] - c.astype(np.float64)[None]) ** 2).sum(-1)
    return d.argmin(1)


def _agreement(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> float:
    assert sorted(got) == sorted(expected)
    for name in got:
        assert got[name].shape == expected[name].shape, name
    same = sum(int((got[n] == expected[n]).sum()) for n in got)
    return same / sum(len(v) for v in expected.values())


def _invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _extract_units(tmp_path: Path, model: Path, corpus: list[Path], codebook: Path, *extra: str) -> dict[str, np.ndarray]:
    out = tmp_path / f"{codebook.stem}.units.h5"
    result = _invoke("extract", *corpus, "-m", model, "--units", codebook, "-o", out, "-q", "--overwrite", *extra)
    assert result.exit_code == 0, result.output
    return load_units(out)


def _km(path: Path, c: np.ndarray, model_sha256: str, layer: int = LAYER) -> Path:
    return save_km(path, c, KMInfo(layer=layer, k=len(c), dim=c.shape[1], model_sha256=model_sha256, engine="test"))


def test_npy_and_km_units_equal_numpy_argmin_on_reference_frames(tmp_path, onnx_model, corpus, reference, centroids):
    model = onnx_model("group")
    expected = {n: _argmin(f, centroids) for n, f in reference.items()}
    np.save(tmp_path / "c.npy", centroids)
    got = _extract_units(tmp_path, model, corpus, tmp_path / "c.npy", "--layers", str(LAYER))
    assert _agreement(got, expected) >= 0.999
    assert next(iter(got.values())).dtype == np.int16
    sha = Embedder(model, device="cpu").info.weights_sha256
    got = _extract_units(tmp_path, model, corpus, _km(tmp_path / "km.npz", centroids, sha))  # the layer is the file's
    assert _agreement(got, expected) >= 0.999


def test_faiss_flat_and_opq_ivf_units_equal_faiss_and_numpy(tmp_path, onnx_model, corpus, reference, centroids):
    faiss = pytest.importorskip("faiss")
    model = onnx_model("group")
    flat = faiss.IndexFlatL2(centroids.shape[1])
    flat.add(centroids)
    faiss.write_index(flat, str(tmp_path / "flat.index"))
    got = _extract_units(tmp_path, model, corpus, tmp_path / "flat.index", "--layers", str(LAYER))
    assert _agreement(got, {n: _argmin(f, centroids) for n, f in reference.items()}) >= 0.999

    frames = np.concatenate(list(reference.values()))
    rng = np.random.default_rng(2)
    train = np.concatenate([frames + 0.05 * rng.standard_normal(frames.shape).astype(np.float32) for _ in range(3)])
    index = faiss.index_factory(frames.shape[1], "OPQ4,IVF16,Flat")  # as mHuBERT-147's index is built
    index.train(train)
    faiss.write_index(index, str(tmp_path / "opq.faiss"))
    opq = faiss.downcast_VectorTransform(index.chain.at(0))
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    by_faiss = {n: ivf.quantizer.search(opq.apply(f), 1)[1][:, 0] for n, f in reference.items()}
    by_numpy = {n: _argmin(opq.apply(f), lists) for n, f in reference.items()}
    got = _extract_units(tmp_path, model, corpus, tmp_path / "opq.faiss", "--layers", str(LAYER))
    assert _agreement(got, by_faiss) >= 0.999
    assert _agreement(got, by_numpy) >= 0.999



def test_long_files_are_assigned_chunk_by_chunk_like_held_ones(tmp_path, onnx_model, corpus, centroids, monkeypatch):
    """A file whose frames would exceed STREAM_FRAMES_BYTES is assigned per chunk as the Embedder streams it."""
    import w2v_embed.embedder as embedder_module
    from w2v_embed.units.stage import UnitsEngine

    model = onnx_model("group")
    np.save(tmp_path / "c.npy", centroids)
    args = ("--layers", str(LAYER), "--chunk-seconds", "2")
    held = _extract_units(tmp_path, model, corpus, tmp_path / "c.npy", *args)
    chunks = []
    original = UnitsEngine.write_frames
    monkeypatch.setattr(embedder_module, "STREAM_FRAMES_BYTES", 0)
    monkeypatch.setattr(UnitsEngine, "write_frames", lambda self, *a: (chunks.append(len(a[3])), original(self, *a)))
    streamed = _extract_units(tmp_path, model, corpus, tmp_path / "c.npy", *args)
    assert chunks and max(chunks) < max(SECONDS) * 50  # chunks, not whole files
    assert _agreement(streamed, held) == 1.0

def test_km_lines_follow_files_from_order_and_failures_are_listed(tmp_path, onnx_model, corpus, reference, centroids):
    model = onnx_model("group")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not audio")
    order = [corpus[3], corpus[0], broken, corpus[5], corpus[1], corpus[4], corpus[2]]
    (tmp_path / "train.list").write_text("".join(f"{p}\n" for p in order))
    np.save(tmp_path / "c.npy", centroids)
    km = tmp_path / "train.km"
    result = _invoke("extract", "--files-from", tmp_path / "train.list", "-m", model, "--units", tmp_path / "c.npy",
                     "--layers", str(LAYER), "-o", km)
    assert result.exit_code == 1, result.output  # one input failed
    lines = km.read_text().splitlines()
    good = [p for p in order if p != broken]
    assert len(lines) == len(good)
    got = {str(p): np.array(line.split(), int) for p, line in zip(good, lines)}
    assert _agreement(got, {str(p): _argmin(reference[str(p)], centroids) for p in good}) >= 0.999
    failed = (tmp_path / "train.km.failed").read_text().splitlines()
    assert len(failed) == 1 and failed[0].startswith(f"{broken}\t")


def test_dedup_is_the_run_length_collapse(tmp_path, onnx_model, corpus, centroids):
    model = onnx_model("group")
    np.save(tmp_path / "c.npy", centroids)
    common = ("-m", model, "--units", tmp_path / "c.npy", "--layers", str(LAYER), "-q")
    full = _extract_units(tmp_path, model, corpus, tmp_path / "c.npy", "--layers", str(LAYER))
    assert _invoke("extract", *corpus, *common, "--dedup", "-o", tmp_path / "d.h5").exit_code == 0
    units, durations = load_units(tmp_path / "d.h5", durations=True)
    assert _invoke("extract", *corpus, *common, "--dedup", "-o", tmp_path / "d.km").exit_code == 0
    km = [np.array(line.split(), int) for line in (tmp_path / "d.km").read_text().splitlines()]
    dur = [np.array(line.split(), int) for line in (tmp_path / "d.km.dur").read_text().splitlines()]
    streamed = _invoke("extract", *corpus, *common, "--dedup", "-o", "-")
    rows = [json.loads(line) for line in streamed.stdout.splitlines()]
    for i, path in enumerate(map(str, corpus)):
        runs = [full[path][0]] + [b for a, b in zip(full[path], full[path][1:]) if a != b]  # the collapse, spelt out
        assert units[path].tolist() == runs == km[i].tolist() == rows[i]["units"]
        assert np.repeat(units[path], durations[path]).tolist() == full[path].tolist()
        assert durations[path].tolist() == dur[i].tolist() == rows[i]["durations"]
        assert rows[i]["path"] == path
    values, lengths = run_lengths(np.array([3, 3, 1, 3, 3, 3]))
    assert values.tolist() == [3, 1, 3] and lengths.tolist() == [2, 1, 3]


def test_a_km_file_of_another_model_is_refused(tmp_path, onnx_model, corpus, centroids):
    km = _km(tmp_path / "other.npz", centroids, "ab" * 32)
    result = _invoke("extract", corpus[0], "-m", onnx_model("group"), "--units", km, "-o", tmp_path / "x.km")
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and "fitted on another model" in result.output
    result = _invoke("extract", corpus[0], "-m", onnx_model("group"), "--units", km, "--layers", "1", "-o", tmp_path / "x.km")
    assert result.exit_code == 2 and "fitted on layer 2" in result.output


def test_pickles_are_refused_unless_trusted_and_convert_once(tmp_path, onnx_model, corpus, centroids):
    joblib = pytest.importorskip("joblib")
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(n_clusters=K, n_init=1, random_state=0).fit(centroids.repeat(3, 0))
    km.cluster_centers_ = centroids.copy()
    joblib.dump(km, tmp_path / "km.bin")  # what fairseq's learn_kmeans.py writes
    model = onnx_model("group")
    refused = _invoke("extract", corpus[0], "-m", model, "--units", tmp_path / "km.bin", "--layers", "2", "-o", tmp_path / "x.km")
    assert refused.exit_code == 1 and len(refused.output.strip().splitlines()) == 1
    assert "pickle" in refused.output and "--trust-pickle" in refused.output and not (tmp_path / "x.km").exists()
    trusted = _extract_units(tmp_path, model, corpus, tmp_path / "km.bin", "--layers", str(LAYER), "--trust-pickle")
    np.save(tmp_path / "c.npy", centroids)
    assert _agreement(trusted, _extract_units(tmp_path, model, corpus, tmp_path / "c.npy", "--layers", str(LAYER))) == 1.0
    converted = _invoke("convert-km", tmp_path / "km.bin", "-o", tmp_path / "safe.npz", "--layer", "2", "-m", model, "--trust-pickle")
    assert converted.exit_code == 0, converted.output
    assert _agreement(_extract_units(tmp_path, model, corpus, tmp_path / "safe.npz"), trusted) == 1.0


@pytest.mark.parametrize("engine", ["faiss", "sklearn"])
def test_kmeans_fits_from_audio_and_from_frames_and_records_its_inputs(tmp_path, onnx_model, corpus, engine):
    pytest.importorskip("faiss" if engine == "faiss" else "sklearn")
    model = onnx_model("group")
    args = ("--layer", "2", "-k", "8", "--sample-fraction", "0.5", "--seed", "3", "--engine", engine, "-q")
    assert _invoke("kmeans", *corpus, "-m", model, *args, "-o", tmp_path / "a.npz").exit_code == 0
    info = _invoke("info", tmp_path / "a.npz")
    sha = Embedder(model, device="cpu").info.weights_sha256
    assert info.exit_code == 0 and engine in info.output and "0.5" in info.output and sha[:20] in info.output
    frames = tmp_path / "frames.h5"
    assert _invoke("extract", *corpus, "-m", model, "--layers", "2", "--pool", "none", "-o", frames, "-q").exit_code == 0
    assert _invoke("kmeans", frames, *args, "-o", tmp_path / "b.npz").exit_code == 0
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        meta = json.loads(str(b["info"][()]))
        assert a["centroids"].shape == b["centroids"].shape == (8, 32)
        assert meta["model_sha256"] == sha and meta["layer"] == "2" and meta["k"] == 8 and meta["seed"] == 3
        # the same frames (per-file draws) and seed give the same codebook, whether frames come from audio or a file
        np.testing.assert_allclose(a["centroids"], b["centroids"], atol=1e-3)
    units = _extract_units(tmp_path, model, corpus, tmp_path / "b.npz")
    assert all(v.max() < 8 for v in units.values())


def test_samplers_are_bounded_seeded_and_uniform():
    frames = np.arange(20_000, dtype=np.float32)[:, None].repeat(2, 1)
    reservoir = FrameSample(SampleOptions(hours=1000 / 3600 / 50), frame_rate=50.0)  # 1000 frames
    for start in range(0, len(frames), 700):
        reservoir.add("a.wav", start, frames[start : start + 700])
    kept = reservoir.frames()[:, 0]
    assert len(kept) == 1000 == len(set(kept.tolist())) and reservoir.seen == 20_000
    assert abs(kept.mean() - 10_000) < 600 and (kept >= 19_000).sum() > 20  # the late frames too
    fraction = FrameSample(SampleOptions(fraction=0.1, seed=4), frame_rate=50.0)
    for i in (2, 0, 1):  # any order of files: the same sample
        fraction.add(f"{i}.wav", 0, frames[i * 1000 : (i + 1) * 1000])
    again = FrameSample(SampleOptions(fraction=0.1, seed=4), frame_rate=50.0)
    for i in (0, 1, 2):
        again.add(f"{i}.wav", 0, frames[i * 1000 : (i + 1) * 1000])
    assert fraction.frames().tolist() == again.frames().tolist() and 200 < len(again.frames()) < 400
    with pytest.raises(Exception, match="one of"):
        SampleOptions(hours=1, fraction=0.5)


def _pooled_output(path: Path, names: list[str], layers: dict[int, np.ndarray]) -> Path:
    from w2v_embed.store import FeatureWriter, RunInfo

    info = RunInfo(model="toy", model_sha256="0" * 64, layers=tuple(layers), pooling="mean", hidden_size=16)
    with FeatureWriter(path, info) as writer:
        for i, name in enumerate(names):
            writer.add(Row(i, name, 16000, 16000, {k: v[i] for k, v in layers.items()}))
    return path


def test_probe_ranks_the_one_informative_layer_first(tmp_path):
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    labels = np.repeat(["cat", "dog", "owl"], 20)
    names = [f"corpus/{label}/{i}.wav" for i, label in enumerate(labels)]
    column = {"cat": 3, "dog": 7, "owl": 11}
    layers = {k: rng.standard_normal((60, 16)).astype(np.float32) for k in range(4)}
    layers[2][np.arange(60), [column[label] for label in labels]] += 3.0  # the label lives in layer 2 only
    feats = _pooled_output(tmp_path / "feats.h5", names, layers)
    (tmp_path / "labels.csv").write_text("path,label,speaker\n" + "".join(
        f"{n},{label},s{i % 6}\n" for i, (n, label) in enumerate(zip(names, labels))))
    from w2v_embed.units.probe import probe

    by_folder = probe(feats)  # labels from the parent folder
    assert by_folder.best.layer == 2 and by_folder.best.mean > 0.8
    assert all(s.mean < 0.6 for s in by_folder.scores if s.layer != 2)
    result = _invoke("probe", feats, "--labels", tmp_path / "labels.csv", "--group-column", "speaker", "--folds", "3")
    assert result.exit_code == 0, result.output
    best_row = next(line for line in result.output.splitlines() if "best" in line)
    assert best_row.split("│")[1].strip() == "2"
    csv_rows = (tmp_path / "feats.probe.csv").read_text().splitlines()
    assert csv_rows[0].startswith("layer,accuracy_mean,accuracy_std,best") and csv_rows[3].startswith("2,")
    assert (tmp_path / "feats.probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    too_few = _invoke("probe", feats, "--labels", tmp_path / "labels.csv", "--folds", "30")
    assert too_few.exit_code == 2 and "label 'cat' has 20 files" in too_few.output, too_few.output  # not np.str_('cat')


DOC_SUBSTITUTIONS = {"--layer 6": "--layer 2", "--layers 6": "--layers 2", "--layers 9": "--layers 2", "-k 100": "-k 4"}


def _doc_commands() -> list[str]:
    text = (Path(__file__).resolve().parents[1] / "docs" / "units.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```sh\n")[1:]]
    return [line.strip() for block in blocks for line in block.splitlines() if line.startswith("w2v-embed ")]


@pytest.mark.slow  # ~60 s here: nineteen commands, scikit-learn's 20 inits among them
def test_the_docs_recipe_runs(tmp_path, monkeypatch, onnx_model):
    """Every command of docs/units.md, on a tiny model (layer 2 of 3, K=4) and generated audio."""
    import shlex

    import joblib
    from sklearn.cluster import MiniBatchKMeans

    faiss = pytest.importorskip("faiss")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    for name in ("hubert-base.onnx", "mhubert-147.onnx"):
        (tmp_path / "models" / name).symlink_to(onnx_model("group"))
    names = []
    for i in range(10):
        label = ("yes", "no")[i % 2]
        (tmp_path / "corpus" / label).mkdir(parents=True, exist_ok=True)
        names.append(f"corpus/{label}/{i}.wav")
        sf.write(names[-1], _signal(i if label == "yes" else 20 + i, 1.0), 16000)
    (tmp_path / "train.list").write_text("\n".join(reversed(names)) + "\n")
    (tmp_path / "labels.csv").write_text("path,label,speaker\n" + "".join(
        f"{n},{n.split('/')[1]},s{i // 2}\n" for i, n in enumerate(names)))
    rng = np.random.default_rng(0)
    np.save("centroids.npy", rng.standard_normal((4, 32)).astype(np.float32))
    joblib.dump(MiniBatchKMeans(n_clusters=4, n_init=1).fit(rng.standard_normal((64, 32))), "km.bin")
    index = faiss.index_factory(32, "OPQ4,IVF8,Flat")
    index.train(rng.standard_normal((2000, 32)).astype(np.float32))
    faiss.write_index(index, "mhubert147_faiss.index")
    commands = _doc_commands()
    assert len(commands) >= 15
    for command in commands:
        for old, new in DOC_SUBSTITUTIONS.items():
            command = command.replace(old, new)
        result = _invoke(*shlex.split(command, comments=True)[1:])
        assert result.exit_code == (1 if "# refused" in command else 0), (command, result.output)
    assert len(Path("train.km").read_text().splitlines()) == 10
    assert Path("train.merged.km").read_text() == Path("train.km").read_text()  # 2 shards merged = one run
    text = (Path(__file__).resolve().parents[1] / "docs" / "units.md").read_text()
    for block in [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]:
        scope: dict = {}
        exec(block, scope)  # the Python recipe, on the outputs the commands wrote
        assert sorted(scope["units"]) == sorted(names) and all(len(d) == len(scope["units"][n]) for n, d in scope["durations"].items())
    assert sorted(load_units("units.h5")) == sorted(names)
    assert Path("feats.probe.png").exists() and Path("feats.probe.csv").exists()

"""docs/interop.md, run: every ```bash and ```python block in order, in one folder holding the
page's `corpus/`, `model.onnx` and Kaldi data folder `data/train`; then what the `console` blocks
(fairseq's own scripts) would read is read with fairseq's reading code."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from interop_utils import make_corpus
from test_convert import fairseq_feat_iterator, fairseq_manifest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "interop.md"
OPTIONAL = {"duckdb"}  # a block needing one of these is skipped where it is not installed


def blocks(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^```(bash|python)\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def make_place(folder: Path, model: Path) -> dict[str, str]:
    make_corpus(folder)
    (folder / "model.onnx").symlink_to(model)
    data = folder / "data" / "train"
    data.mkdir(parents=True)
    (data / "wav.scp").write_text("rec_b corpus/b.wav\nrec_c corpus/sub/c.wav\n")
    (data / "segments").write_text("utt1 rec_b 0.00 0.80\nutt2 rec_b 0.70 1.30\nutt3 rec_c 0.25 2.10\n")
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "w2v-embed"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m w2v_embed "$@"\n')
    shim.chmod(0o755)
    paths = [str(ROOT / "src")] + ([str(ROOT / "tests" / "stubs")] if importlib.util.find_spec("tensorflow") is None else [])
    return {
        **os.environ,
        "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(paths),
        "CUDA_VISIBLE_DEVICES": "",
    }


@pytest.mark.slow  # ~35 s: five CLI runs, hear-validator and lhotse, each in its own process
def test_every_recipe_runs(tmp_path, onnx_model, monkeypatch):
    env = make_place(tmp_path, onnx_model("group"))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    skipped = []
    for language, code in blocks(PAGE.read_text()):
        if language == "bash":
            if "hear-validator" in code and importlib.util.find_spec("hearvalidator") is None:
                skipped.append(code)
                continue
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False)
            assert result.returncode == 0, f"{code}\n{result.stdout}\n{result.stderr}"
        else:
            try:
                exec(compile(code, str(PAGE), "exec"), namespace)  # noqa: S102 (the page's own code, run as a reader would)
            except ModuleNotFoundError as exc:
                if exc.name not in OPTIONAL:
                    raise
                skipped.append(code)
    assert len(skipped) <= 2 and len(blocks(PAGE.read_text())) >= 10

    # fairseq's learn_kmeans.py + dump_km_label.py over feat_dir: one label line per manifest row
    from sklearn.cluster import MiniBatchKMeans

    import w2v_embed

    feats = fairseq_feat_iterator("feat_dir", "train", 1, 0)
    km = MiniBatchKMeans(n_clusters=5, n_init=3, random_state=0).fit(np.concatenate(feats))
    labels = [km.predict(np.asarray(f)) for f in feats]
    manifest = fairseq_manifest("feat_dir/train.tsv")
    out = w2v_embed.open("frames.h5")
    assert [os.path.normpath(p) for p, _ in manifest] == out.paths
    assert [len(lab) for lab in labels] == [len(f["last"]) for _, f in out]

    # the page's own results
    assert list(namespace["feats"].keys()) == w2v_embed.open("utts.h5").paths and len(namespace["feats"]) == 3
    assert namespace["x"].shape[1] == 32 and namespace["emb"].shape == (2, 99, 32) and namespace["X"].shape == (4, 32)
    assert namespace["batch"].shape[0] == 2 and namespace["lengths"].tolist() == [len(f["last"]) for _, f in out][-2:]
    assert (tmp_path / "cuts_w2v.jsonl.gz").exists() and sorted(os.listdir("data/train_w2v")) == [
        "feats.ark", "feats.scp", "frame_shift", "segments", "utt2num_frames", "wav.scp"
    ]

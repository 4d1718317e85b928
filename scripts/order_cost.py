"""Cost of input order at the final assembly: rows finishing out of order (as batching makes them) vs in order."""
import shutil
import time
from pathlib import Path
import numpy as np
from w2v_embed.store import FeatureWriter, RunInfo
from w2v_embed.store.sink import Row

N, D, LAYERS = 20000, 768, (6, 12)
rng = np.random.default_rng(0)
feats = {k: rng.standard_normal(D).astype(np.float32) for k in LAYERS}
# completion order: each file late by up to 40 positions (what the embedder's length sort does)
completion = np.argsort(np.arange(N) + rng.uniform(0, 40, N))

def run(tmp: Path, ordered: bool) -> float:
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    info = RunInfo("m", "ab" * 32, LAYERS, "mean", D)
    order = {f"f{i:06d}.wav": (i if ordered else int(pos)) for pos, i in enumerate(completion)}
    w = FeatureWriter(tmp / "o.h5", info, order=order)
    t0 = time.perf_counter()
    for pos, i in enumerate(completion):
        w.add(Row(order[f"f{i:06d}.wav"], f"f{i:06d}.wav", 16000, 16000, feats))
    w.close()
    return time.perf_counter() - t0

times = {True: [], False: []}
for r in range(5):
    for ordered in (False, True):
        times[ordered].append(run(Path(f"/tmp/ob/run"), ordered))
ratios = [a / b for a, b in zip(times[True], times[False])]
print("in completion order (no reordering): min %.2f s median %.2f s" % (min(times[False]), np.median(times[False])))
print("into input order:                    min %.2f s median %.2f s" % (min(times[True]), np.median(times[True])))
print("paired ratio: min %.3f median %.3f max %.3f" % (min(ratios), np.median(ratios), max(ratios)))

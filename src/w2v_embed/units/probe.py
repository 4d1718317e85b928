""""Which layer?": a cross-validated linear probe on each stored layer of a pooled output.

Per layer: scikit-learn's LogisticRegression on StandardScaler'd features (the scaler is fitted inside
each fold), scored by accuracy over StratifiedKFold, or GroupKFold when a group column (e.g. the
speaker) keeps a group's files out of its own test fold. The layer with the best mean accuracy is the
answer; the table, a CSV and a PNG plot show the rest.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError, W2VEmbedError
from ..layers import Layer
from .codebook import needs_extra


@dataclass(frozen=True)
class LayerScore:
    layer: Layer
    mean: float
    std: float
    folds: tuple[float, ...]


@dataclass(frozen=True)
class ProbeResult:
    scores: tuple[LayerScore, ...]  # in the file's layer order
    files: int
    classes: int
    grouped: bool

    @property
    def best(self) -> LayerScore:
        return max(self.scores, key=lambda s: s.mean)


def _key(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))


def read_labels(path: str | Path, group_column: str | None = None) -> dict[str, tuple[str, str | None]]:
    """{path: (label, group)} from `path,label[,group]` rows; a header row names the columns (then any
    column can be the group), else they are taken in that order."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise UsageError(f"--labels {path}: no rows")
    header = [c.strip().lower() for c in rows[0]]
    if "path" in header and "label" in header:
        columns, rows = header, rows[1:]
    else:
        columns = ["path", "label", "group"][: len(rows[0])]
    group = group_column.lower() if group_column else None
    if group is not None and group not in columns:
        raise UsageError(f"--group-column {group_column}: not a column of {path} (columns: {', '.join(columns)})")
    p, lab = columns.index("path"), columns.index("label")
    g = columns.index(group) if group is not None else None
    try:
        return {r[p].strip(): (r[lab].strip(), r[g].strip() if g is not None else None) for r in rows}
    except IndexError:
        raise UsageError(f"--labels {path}: a row has fewer columns than {', '.join(columns)}") from None


def probe(feats: str | Path, labels: str | Path | None = None, group_column: str | None = None, folds: int = 5,
          seed: int = 0) -> ProbeResult:
    """Probe every layer of a pooled output; labels from a CSV, or each file's parent folder name."""
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        raise needs_extra("probe") from None
    from ..store import open as open_output

    if folds < 2:
        raise UsageError(f"--folds {folds}: expected at least 2")
    with open_output(feats) as out:
        if out.offsets is not None:
            raise UsageError(f"{feats}: frame-level or windowed rows; probe needs one pooled row per file (--pool mean)")
        names, layers = out.paths, out.layers
    if labels is not None:
        table = {_key(k): v for k, v in read_labels(labels, group_column).items()}
        rows = [i for i, name in enumerate(names) if _key(name) in table]
        if not rows:
            raise UsageError(f"--labels {labels}: none of its paths is stored in {feats} (e.g. {names[0]!r})")
        y = np.array([table[_key(names[i])][0] for i in rows])
        groups = np.array([table[_key(names[i])][1] for i in rows]) if group_column else None
    else:
        rows = list(range(len(names)))
        y = np.array([Path(n).parent.name for n in names])
        groups = None
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise W2VEmbedError(f"probe needs at least 2 labels; {feats} has {len(classes)} ({', '.join(classes)})")
    if groups is None:
        if counts.min() < folds:
            raise UsageError(f"--folds {folds}: label '{classes[counts.argmin()]}' has {counts.min()} files; use fewer folds")
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        if len(set(groups)) < folds:
            raise UsageError(f"--folds {folds}: only {len(set(groups))} groups; use fewer folds")
        splitter = GroupKFold(n_splits=folds)
    from ..store import load

    scores = []
    for layer in layers:
        _, x = load(feats, layer)
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        acc = cross_val_score(model, np.asarray(x, np.float32)[rows], y, groups=groups, cv=splitter, scoring="accuracy")
        scores.append(LayerScore(layer, float(acc.mean()), float(acc.std()), tuple(float(a) for a in acc)))
    return ProbeResult(tuple(scores), len(rows), len(classes), groups is not None)


def write_csv(result: ProbeResult, path: str | Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer", "accuracy_mean", "accuracy_std", "best", *[f"fold_{i}" for i in range(len(result.scores[0].folds))]])
        for s in result.scores:
            w.writerow([s.layer, f"{s.mean:.4f}", f"{s.std:.4f}", int(s is result.best), *[f"{a:.4f}" for a in s.folds]])
    return Path(path)


def plot(result: ProbeResult, path: str | Path, title: str = "") -> Path:
    """Accuracy ± std per layer, the best layer marked; written with matplotlib's Agg (no display)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise needs_extra("probe's plot") from None
    labels = [str(s.layer) for s in result.scores]
    means = np.array([s.mean for s in result.scores])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(labels) + 2), 3.5))
    ax.errorbar(range(len(labels)), means, yerr=[s.std for s in result.scores], marker="o", capsize=3)
    best = result.scores.index(result.best)
    ax.plot([best], [means[best]], marker="*", markersize=14, color="tab:red", label=f"best: layer {labels[best]}")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("layer")
    ax.set_ylabel(f"accuracy ({'grouped ' if result.grouped else ''}cross-validated)")
    ax.set_title(title or f"linear probe: {result.files} files, {result.classes} labels")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)

"""`w2v-embed kmeans`, `convert-km` and `probe`: fitting and converting codebooks, and "which layer?"."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..errors import UsageError
from .console import app, err, fail, out, run, shown
from .progress import ProgressBar, ProgressLog


@app.command()
def kmeans(
    inputs: Annotated[Optional[list[str]], typer.Argument(help="Audio files and folders, or one frame-level .h5 output.", show_default=False)] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="The KM file to write (.npz).")] = ...,
    layer: Annotated[str, typer.Option(help="The layer whose frames are clustered (a number, or 'last').")] = ...,
    k: Annotated[int, typer.Option("-k", help="Number of clusters (units).")] = ...,
    model: Annotated[Optional[Path], typer.Option("-m", "--model", help="ONNX model (default: $W2V_EMBED_MODEL, else the one in models/).")] = None,
    sample_hours: Annotated[Optional[float], typer.Option(help="Fit on a seeded reservoir of this many hours of frames (memory: hours × 180,000 × D × 4 bytes).  \\[default: 10 unless --sample-fraction]", show_default=False)] = None,
    sample_fraction: Annotated[Optional[float], typer.Option(help="Fit on this fraction of all frames instead, drawn per file (memory grows with the corpus).", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample and of k-means.")] = 0,
    engine: Annotated[str, typer.Option(help="faiss (fast) | sklearn (MiniBatchKMeans with fairseq's simple_kmeans settings).")] = "faiss",
    files_from: Annotated[Optional[str], typer.Option("--files-from", help="File with one path per line; '-' reads stdin.")] = None,
    ext: Annotated[Optional[str], typer.Option(help="Extensions to pick up in folders, e.g. wav,flac.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for inference (default: available cores).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUTPUT if it exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    progress_seconds: Annotated[float, typer.Option(help="When stderr is not a terminal: a progress line this often; 0 = none.")] = 60.0,
) -> None:
    """Fit a k-means codebook on frames of one layer, sampled while extracting (never all frames stored).

    Examples:

      w2v-embed kmeans corpus/ -m models/hubert-base.onnx --layer 6 -k 100 -o km100.npz --sample-hours 10

      w2v-embed kmeans frames.h5 --layer 9 -k 500 -o km500.npz --sample-fraction 0.1 --engine sklearn
    """
    from ..units.kmeans import DEFAULT_SAMPLE_HOURS, SampleOptions

    if output.exists() and not overwrite:
        fail(UsageError(f"{output} exists; pass --overwrite to replace it"))
    if sample_hours is None and sample_fraction is None:
        sample_hours = DEFAULT_SAMPLE_HOURS
    sample = run(lambda: SampleOptions(sample_hours or 0.0, sample_fraction or 0.0, seed))
    run(_kmeans, list(inputs or []), files_from, ext, output, layer, k, model, sample, engine, device, threads,
        not quiet, progress_seconds)


def _kmeans(inputs: list[str], files_from: Optional[str], ext: Optional[str], output: Path, layer: str, k: int,
            model: Optional[Path], sample: object, engine: str, device: str, threads: Optional[int], show: bool,
            progress_seconds: float) -> None:
    from ..units.codebook import save_km
    from ..units.kmeans import fit_audio, fit_frames_file
    from .extract import _Selection

    frames_file = len(inputs) == 1 and files_from is None and inputs[0].endswith((".h5", ".hdf5"))
    if frames_file:
        from ..layers import from_text

        with _progress(show, 0, progress_seconds) as progress:
            result = fit_frames_file(inputs[0], from_text(layer), k, sample, engine, progress)
    else:
        from ..embedder import EmbedOptions, Embedder
        from ..layers import parse_layers

        embedder = Embedder(model, device=device, threads=threads, options=EmbedOptions(layer, "none"))
        chosen = parse_layers(layer, embedder.info.num_layers)
        if len(chosen) != 1:
            raise UsageError(f"--layer {layer}: one layer only")
        files = _Selection(inputs, files_from, ext, True, False).files()
        with _progress(show, len(files), progress_seconds) as progress:
            result = fit_audio(files, embedder, chosen[0], k, sample, engine, progress)
    save_km(output, result.centroids, result.info)
    if show:
        err.print(f"fitted K={k} on {result.info.sample_frames} of {result.seen_frames} frames of layer "
                  f"{result.info.layer} ({result.info.engine}) → {shown(output)}")


class _progress:
    """A bar on a terminal, log lines otherwise (as `extract`)."""

    def __init__(self, show: bool, total: int, every: float) -> None:
        self.bar = ProgressBar(show and err.is_terminal, total)
        self.show, self.total, self.every = show, total, every

    def __enter__(self):
        advance = self.bar.__enter__()
        if advance is None and self.show and self.every > 0:
            return ProgressLog(self.total, self.every)
        return advance

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)


@app.command("convert-km")
def convert_km(
    source: Annotated[Path, typer.Argument(help="A fairseq/textlesslib km.bin (pickle), or a (K, D) .npy of centroids.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The KM file to write (.npz).")] = ...,
    layer: Annotated[str, typer.Option(help="The layer the centroids were fitted on (a number, or 'last').")] = ...,
    model: Annotated[Optional[Path], typer.Option("-m", "--model", help="The ONNX model they were fitted on: recorded, so that another model is refused.")] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Load the pickle (it can run any code: only files you trust).")] = False,
) -> None:
    """Turn a codebook into a KM file once: safe to load (no pickle), and it knows its layer (and model).

    Example:

      w2v-embed convert-km km.bin -o km.npz --layer 6 -m models/hubert-base.onnx --trust-pickle
    """
    run(_convert_km, source, output, layer, model, trust_pickle)


def _convert_km(source: Path, output: Path, layer: str, model: Optional[Path], trust_pickle: bool) -> None:
    from ..layers import from_text
    from ..units.codebook import Centroids, KMInfo, load_codebook, save_km

    codebook = load_codebook(source, trust_pickle)
    if not isinstance(codebook, Centroids):
        raise UsageError(f"{source}: a faiss index is used as it is (extract --units {source} --layers L)")
    sha, name = "", ""
    if model is not None:
        from ..runtime import OnnxModel

        info = OnnxModel(model, device="cpu").info
        sha, name = info.weights_sha256, info.source
        if info.hidden_size != codebook.dim:
            raise UsageError(f"{source}: centroids of dimension {codebook.dim}, {model} has {info.hidden_size}")
    info = KMInfo(layer=from_text(layer), k=codebook.k, dim=codebook.dim, model_sha256=sha, model=name,
                  engine="converted", source=str(source))
    save_km(output, codebook.centroids, info)
    err.print(f"K={codebook.k}, D={codebook.dim}, layer {info.layer} → {shown(output)}")


@app.command()
def probe(
    feats: Annotated[Path, typer.Argument(help="A pooled output of several layers (extract --layers all --pool mean).")],
    labels: Annotated[Optional[Path], typer.Option(help="CSV of path,label[,group] (a header row names the columns); default: each file's parent folder is its label.")] = None,
    group_column: Annotated[Optional[str], typer.Option(help="Column of --labels whose groups (e.g. speakers) never share a fold.")] = None,
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    plot_path: Annotated[Optional[Path], typer.Option("--plot", help="PNG plot to write.  \\[default: FEATS.probe.png]", show_default=False)] = None,
    csv_path: Annotated[Optional[Path], typer.Option("--csv", help="CSV table to write.  \\[default: FEATS.probe.csv]", show_default=False)] = None,
) -> None:
    """Which layer? A cross-validated linear probe (logistic regression on standardised features) per layer.

    Examples:

      w2v-embed extract corpus/ -o feats.h5 --layers all --pool mean && w2v-embed probe feats.h5

      w2v-embed probe feats.h5 --labels labels.csv --group-column speaker
    """
    if group_column and labels is None:
        fail(UsageError("--group-column needs --labels"))
    run(_probe, feats, labels, group_column, folds, plot_path or feats.with_suffix(".probe.png"),
        csv_path or feats.with_suffix(".probe.csv"))


def _probe(feats: Path, labels: Optional[Path], group_column: Optional[str], folds: int, plot_path: Path,
           csv_path: Path) -> None:
    from ..units.probe import plot, probe, write_csv

    result = probe(feats, labels, group_column, folds)
    table = Table(title=f"{shown(feats)}: {result.files} files, {result.classes} labels, {folds} "
                        f"{'grouped ' if result.grouped else ''}folds")
    for column in ("layer", "accuracy", "± std", ""):
        table.add_column(column, justify="right")
    for s in result.scores:
        table.add_row(str(s.layer), f"{s.mean:.3f}", f"{s.std:.3f}", "[bold green]best[/]" if s is result.best else "")
    out.print(table)
    write_csv(result, csv_path)
    plot(result, plot_path, title=f"{feats.name}: linear probe per layer")
    err.print(f"→ {shown(csv_path)}, {shown(plot_path)}")

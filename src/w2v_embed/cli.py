"""`w2v-embed` command line: a thin typer layer over the Python API.

Each command parses its options into the API's dataclasses and calls one private function; a
W2VEmbedError becomes one red line on stderr (exit 1, or 2 for usage errors).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .errors import UsageError, W2VEmbedError

app = typer.Typer(
    help="Extract wav2vec 2.0 embeddings from folders of audio into one HDF5 file.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        out.print(f"w2v-embed {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Extract wav2vec 2.0 embeddings from folders of audio into one HDF5 file."""


@app.command()
def export(
    source: Annotated[str, typer.Argument(help="Checkpoint folder, or a hub id like flax-community/wav2vec2-german.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Where to write (default: models/NAME.onnx).")] = None,
    revision: Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit).")] = None,
    subfolder: Annotated[Optional[str], typer.Option(help="Subfolder of the repository or folder [default: the root, or the one sub-folder with weights].")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Compare with the reference model.")] = True,
    quantize: Annotated[Optional[str], typer.Option(help="int8: MatMul weights in int8 (CPU); fp16: half precision (CUDA). Checked: cosine >= 0.995 per layer vs float32.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the output file if it exists.")] = False,
) -> None:
    """Convert a wav2vec2 checkpoint (Flax, TF or PyTorch weights) into a verified ONNX model.

    Examples:

      w2v-embed export flax-community/wav2vec2-german

      w2v-embed export ./my-checkpoint -o models/mine.onnx --no-verify

      w2v-embed export ./my-checkpoint -o models/mine-int8.onnx --quantize int8

      w2v-embed export ./my-checkpoint -o models/mine-fp16.onnx --quantize fp16
    """
    from .export import ExportOptions

    options = ExportOptions(output, revision, subfolder, opset=opset, verify=verify, quantize=quantize, overwrite=overwrite)
    _run(_export, source, options)


def _export(source: str, options: object) -> None:
    from .export import export_model
    from .export.verify import VerificationError

    err.print(f"exporting {_shown(source)} …")
    try:
        result = export_model(source, options, notify=lambda note: err.print(f"[cyan]note:[/] {note}", highlight=False))
    except VerificationError as exc:
        _print_report(exc.report)
        raise
    for report in (result.report, result.quantization):
        if report is not None:
            _print_report(report)
    info = result.info
    data = f" + {info.external_data}" if info.external_data else ""
    out.print(
        f"[green]wrote {_shown(result.path)}{data}[/] ({result.size_bytes / 1e6:.1f} MB, {info.num_layers} layers, "
        f"hidden {info.hidden_size}, {info.precision}, {result.seconds:.1f} s)"
    )


def _print_report(report: object) -> None:
    if report.tolerance is not None:
        title = f"verification vs transformers (max |diff| <= {report.tolerance:.0e})"
    else:
        title = f"quantized vs float32 (cosine >= {report.min_cosine})"
    table = Table(title=title)
    table.add_column("layer", justify="right")
    table.add_column("max |diff|", justify="right")
    table.add_column("min cosine", justify="right")
    for row in report.layers:
        bad = (report.tolerance is not None and row.max_abs_diff > report.tolerance) or (
            report.min_cosine is not None and row.min_cosine < report.min_cosine
        )
        style = "red" if bad else ""
        table.add_row(str(row.layer), f"{row.max_abs_diff:.2e}", f"{row.min_cosine:.8f}", style=style)
    err.print(table)


@app.command(epilog="Exit codes: 0 all files embedded, 1 some files failed (see /failed), 2 usage error.")
def extract(
    inputs: Annotated[Optional[list[str]], typer.Argument(help="Audio files and folders.", show_default=False)] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="HDF5 file to write; '-' streams pooled rows to stdout as JSON Lines.")] = ...,
    model: Annotated[Optional[Path], typer.Option("-m", "--model", help="ONNX model (default: $W2V_EMBED_MODEL, else the one in models/).")] = None,
    layers: Annotated[str, typer.Option(help="Layers: 'last' (last_hidden_state), 'all' (0..L), or e.g. 6,12,last (0 = input to the first transformer layer).")] = "last",
    pool: Annotated[str, typer.Option(help="mean | max | meanstd | none (frame-level).")] = "mean",
    window: Annotated[float, typer.Option(help="Seconds: one pooled row per window of a file instead of one per file (with --pool mean|max|meanstd); 0 = off.")] = 0.0,
    hop: Annotated[Optional[float], typer.Option(help="Seconds between window starts [default: --window, no overlap].")] = None,
    files_from: Annotated[Optional[str], typer.Option("--files-from", help="File with one path per line; '-' reads stdin.")] = None,
    segments: Annotated[Optional[Path], typer.Option(help="Embed parts of recordings: a TSV/CSV with a header path,start,end[,id] (seconds), a Kaldi data folder (segments + wav.scp), or an .rttm file (its recordings are the inputs, matched by name without extension).")] = None,
    ext: Annotated[Optional[str], typer.Option(help="Extensions to pick up in folders, e.g. wav,flac.")] = None,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Walk sub-folders.")] = True,
    follow_symlinks: Annotated[bool, typer.Option("--follow-symlinks", help="Descend into symlinked folders.")] = False,
    channel: Annotated[Optional[int], typer.Option(help="Use this channel (0-based) instead of the mean of all.")] = None,
    chunk_seconds: Annotated[float, typer.Option(help="Chunk files longer than this; 0 = never chunk.")] = 20.0,
    context_seconds: Annotated[float, typer.Option(help="Extra audio on each side of a chunk, discarded after inference.")] = 2.0,
    batch_size: Annotated[Optional[int], typer.Option(help="Most chunks per batch [default: 4 on CPU, 32 on GPU].")] = None,
    max_batch_seconds: Annotated[Optional[float], typer.Option(help="Most padded audio per batch, seconds [default: 20 on CPU, 160 on GPU].")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for inference (default: available cores).")] = None,
    dtype: Annotated[str, typer.Option(help="Storage dtype: float32 | float16.")] = "float32",
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted or earlier run into OUT.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    save_every: Annotated[int, typer.Option(help="Make finished files crash-safe at least every N files (and every 20 s).")] = 64,
    shard: Annotated[Optional[str], typer.Option(help="Embed only part I of N (0-based) of the file list, balanced by bytes, e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT; join the parts with `w2v-embed merge`.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    progress_seconds: Annotated[float, typer.Option(help="When stderr is not a terminal (batch jobs): a progress line this often; 0 = none.")] = 60.0,
    ray: Annotated[Optional[str], typer.Option(help="Run on Ray: 'local' starts one here, 'auto' or HOST:PORT joins a cluster (needs the ray extra).")] = None,
    ray_actors: Annotated[int, typer.Option(help="With --ray: Embedder actors, each holding the model (--threads each; one GPU each with --device cuda).")] = 1,
    ray_node_ip: Annotated[Optional[str], typer.Option(help="With --ray: this node's IP, where Ray's guess is wrong.")] = None,
    json_summary: Annotated[bool, typer.Option("--json-summary", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Embed audio files into one HDF5 file.

    Examples:

      w2v-embed extract corpus/ -o feats.h5 --layers 6,12 --pool mean

      find corpus -name '*.flac' | w2v-embed extract --files-from - -o feats.h5

      w2v-embed extract a.wav b.mp3 -o frames.h5 --pool none --layers all

      w2v-embed extract clips/ -o events.h5 --window 1 --hop 0.5 --layers 6,last

      w2v-embed extract --segments diarization.tsv -o turns.h5 --layers last

      w2v-embed extract --segments pyannote.rttm recordings/ -o turns.h5

      w2v-embed extract corpus/ -o - --layers last | jq -c '{path, n: (.layers.last | length)}'

      w2v-embed extract /data/corpus -o feats.h5 --ray auto --ray-actors 8 --device cuda
    """
    from .embedder import EmbedOptions
    from .extract import ExtractOptions

    if resume and overwrite:
        _fail(UsageError("--resume and --overwrite exclude each other"))
    if str(output) == "-" and (resume or overwrite or json_summary):
        _fail(UsageError("-o - streams rows to stdout: --resume, --overwrite and --json-summary do not apply"))
    if dtype not in ("float32", "float16"):
        _fail(UsageError(f"--dtype {dtype}: expected float32 or float16"))
    embed = EmbedOptions(layers, pool, chunk_seconds, context_seconds, batch_size, max_batch_seconds,
                         window_seconds=window, hop_seconds=hop)
    mode = "resume" if resume else "overwrite" if overwrite else "new"
    options = _run(partial(ExtractOptions, mode=mode, dtype=dtype, channel=channel, save_every_files=save_every))
    selection = _Selection(list(inputs or []), files_from, ext, recursive, follow_symlinks, shard, segments)
    if not math.isfinite(progress_seconds) or progress_seconds < 0:
        _fail(UsageError(f"--progress-seconds {progress_seconds}: expected a finite number >= 0"))
    ray_options = None
    if ray is not None:
        from .ray_engine import RayOptions

        address = None if ray.strip().lower() in ("", "local") else ray.strip()
        ray_options = _run(partial(RayOptions, address=address, actors=ray_actors, threads_per_actor=threads or 1,
                                   gpus_per_actor=1.0 if device == "cuda" else 0.0, node_ip=ray_node_ip))
    _run(_extract, selection, output, model, device, threads, embed, options, quiet, json_summary, progress_seconds,
         ray_options)


@dataclass(frozen=True)
class _Selection:
    """Which files the user asked for: positional inputs plus --files-from, walked with the folder flags."""

    inputs: list[str]
    files_from: Optional[str]
    ext: Optional[str]
    recursive: bool
    follow_symlinks: bool
    shard: Optional[str] = None
    segments: Optional[Path] = None

    def files(self) -> list:
        if self.segments is None:
            return self._discovered()
        from .segments import is_rttm, read_segments

        given = bool(self.inputs) or self.files_from is not None
        if given and not is_rttm(self.segments):
            raise UsageError("--segments lists the audio itself: give no other inputs (only an .rttm file needs them)")
        return read_segments(self.segments, self._discovered() if given else ())

    def _discovered(self) -> list:
        from .discover import DEFAULT_EXTENSIONS, discover, read_file_list

        inputs = self.inputs
        if self.files_from is not None:
            try:
                data = sys.stdin.buffer.read() if self.files_from == "-" else Path(self.files_from).read_bytes()
            except OSError as exc:
                raise UsageError(f"--files-from {self.files_from}: {exc.strerror}") from exc
            inputs = inputs + read_file_list(os.fsdecode(data).splitlines())  # any bytes: names need not be UTF-8
        if not inputs:
            raise UsageError("no input: give files or folders, or --files-from FILE")
        extensions = tuple(e.strip().lstrip(".").lower() for e in self.ext.split(",")) if self.ext else DEFAULT_EXTENSIONS
        files = discover(inputs, extensions, recursive=self.recursive, follow_symlinks=self.follow_symlinks)
        if not files:
            raise UsageError(f"no audio files found in {', '.join(inputs)} (extensions: {', '.join(extensions)})")
        return files


def _extract(selection: _Selection, output: Path, model: Optional[Path], device: str, threads: Optional[int],
             embed: object, options: object, quiet: bool, json_summary: bool, progress_seconds: float,
             ray_options: object) -> None:
    from .embedder import Embedder
    from .extract import extract
    from .shards import Shard, select

    shard = Shard.parse(selection.shard) if selection.shard is not None else None
    # Bad model or layers fail first. With Ray this one only checks (on CPU): the actors compute.
    embedder = Embedder(model, device="cpu" if ray_options else device, threads=threads, options=embed)
    engine = None
    if ray_options is not None:
        from .ray_engine import RayEngine

        engine = RayEngine(embedder, embedder.model.path, device, ray_options)
    if embedder.info.precision == "float16" and embedder.model.device == "cpu" and not quiet:
        err.print("[yellow]note:[/] float16 models are made for --device cuda; on CPU they run slower than float32")
    files = selection.files()
    if shard is not None:
        options = replace(options, shard=str(shard), total_files=len(files))
        files = select(files, shard)
    show = not quiet and not json_summary
    with _progress(show and err.is_terminal, len(files)) as bar:
        log = _ProgressLog(len(files), progress_seconds) if show and not bar and progress_seconds > 0 else None
        target = sys.stdout if str(output) == "-" else output
        summary = extract(files, target, embedder, options, progress=bar or log, engine=engine)
    for name, reason in summary.failures:
        err.print(f"[yellow]failed:[/] {_shown(name)}: {_shown(reason)}", highlight=False)
    if json_summary:
        print(json.dumps({
            "output": str(summary.output), "ok": summary.ok, "failed": summary.failed, "skipped": summary.skipped,
            "audio_seconds": round(summary.audio_seconds, 3), "wall_seconds": round(summary.wall_seconds, 3),
            "realtime_factor": round(summary.realtime_factor, 2), "failures": [list(f) for f in summary.failures],
        }))
    elif not quiet:
        err.print(
            f"{summary.ok} ok, {summary.failed} failed, {summary.skipped} already done · "
            f"{summary.audio_seconds / 3600:.2f} h audio in {summary.wall_seconds:.1f} s "
            f"({summary.realtime_factor:.1f}× real-time) → {_shown(summary.output)}"
        )
    if summary.failed:
        raise typer.Exit(1)


class _progress:
    """A rich progress bar (files, audio hours, ×real-time, ETA) on a terminal; nothing otherwise."""

    def __init__(self, show: bool, total: int) -> None:
        self.show, self.total = show, total

    def __enter__(self):
        if not self.show:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[hours]:.2f} h audio · {task.fields[speed]:.1f}× real-time"),
            TimeRemainingColumn(), console=err, transient=False,
        )
        self.bar.__enter__()
        task = self.bar.add_task("embedding", total=self.total, hours=0.0, speed=0.0)
        started, seconds = time.perf_counter(), [0.0]

        def advance(name: str, audio_seconds: float) -> None:
            seconds[0] += audio_seconds
            speed = seconds[0] / max(time.perf_counter() - started, 1e-9)
            self.bar.update(task, advance=1, hours=seconds[0] / 3600, speed=speed)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.show:
            self.bar.__exit__(*exc)


class _ProgressLog:
    """Batch jobs get no progress bar (stderr is a log file): one line every `every` seconds instead."""

    def __init__(self, total: int, every: float) -> None:
        self.total, self.every = total, every
        self.started = self.last = time.perf_counter()
        self.files, self.audio_seconds = 0, 0.0

    def __call__(self, name: str, audio_seconds: float) -> None:
        self.files += 1
        self.audio_seconds += audio_seconds
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            speed = self.audio_seconds / max(now - self.started, 1e-9)
            err.print(f"progress: {self.files}/{self.total} files, {self.audio_seconds / 3600:.2f} h audio, "
                      f"{speed:.1f}× real-time, {now - self.started:.0f} s", highlight=False)


@app.command()
def merge(
    output: Annotated[Path, typer.Argument(help="The merged HDF5 file to write.")],
    inputs: Annotated[list[str], typer.Argument(help="Shard outputs (globs are expanded).", show_default=False)],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Join the outputs of `extract --shard I/N` jobs into one file (streaming, atomic, safe to rerun).

    Examples:

      w2v-embed merge feats.h5 feats.*.h5

      w2v-embed merge feats.h5 'shards/feats.*.h5' --overwrite
    """
    _run(_merge, output, inputs, overwrite)


def _merge(output: Path, inputs: list[str], overwrite: bool) -> None:
    import glob

    from .store import merge as merge_outputs

    paths = [p for pattern in inputs for p in (sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern])]
    if not paths:
        raise UsageError(f"no shard outputs match {' '.join(inputs)}")
    summary = merge_outputs(output, paths, overwrite)
    err.print(f"merged {summary.inputs} outputs: {summary.files} files, {summary.failed} failed → {summary.output}")


@app.command()
def info(path: Annotated[Path, typer.Argument(help="An output .h5 file or an exported .onnx model.")]) -> None:
    """Describe an output file (model, layers, pooling, files, audio, failures) or a model's metadata.

    Examples:

      w2v-embed info feats.h5

      w2v-embed info models/wav2vec2-german.onnx
    """
    _run(_info, path)


def _info(path: Path) -> None:
    table = Table(show_header=False, title=_shown(path))
    if path.suffix == ".onnx":
        from .embedder import EmbedOptions, Embedder

        if not path.exists():
            raise UsageError(f"{path}: no such file")
        embedder = Embedder(path, device="cpu", options=EmbedOptions("all"))
        embedder.self_check()
        model_info = embedder.info
        for key, value in vars(model_info).items():
            table.add_row(key, _shown(value))
        table.add_row("file_sha256", embedder.model.sha256)
        table.add_row("self_check", "finite features on 1 s of noise")
        table.add_row("frame_rate", f"{model_info.frame_rate:g} Hz")
        table.add_row("receptive_field", f"{model_info.grid.receptive_field} samples")
        out.print(table)
        return
    from .store import read_summary

    summary = read_summary(path)
    failed = summary.pop("failed", [])
    for key, value in summary.items():
        table.add_row(key, _shown(value))
    table.add_row("failed files", str(len(failed)))
    out.print(table)
    for name, reason in failed:
        out.print(f"[yellow]failed:[/] {_shown(name)}: {_shown(reason)}", highlight=False)


def _shown(text: object) -> str:
    """Printable as it is: a name that is not UTF-8 with its odd bytes as \\xNN (caf\\xe9.wav), and brackets
    that rich would take for markup ("a[/]b.wav" crashed it) escaped."""
    return escape(os.fsencode(str(text)).decode("utf-8", "backslashreplace"))


def _fail(exc: W2VEmbedError) -> None:
    err.print(f"[bold red]error:[/] {_shown(exc)}", highlight=False)
    raise typer.Exit(2 if isinstance(exc, UsageError) else 1)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (what Slurm, docker stop and systemd send), raised in the main thread to end a run like Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


def _run(func, *args):
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return func(*args)
    except W2VEmbedError as exc:
        _fail(exc)
    except KeyboardInterrupt as exc:
        what, code = ("terminated", 143) if isinstance(exc, _Terminated) else ("interrupted", 130)
        err.print(f"[bold red]{what}:[/] finished files are saved; rerun with --resume to continue")
        raise typer.Exit(code)
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> None:
    app()

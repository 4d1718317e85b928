"""`w2v-embed extract`: options → ExtractOptions/EmbedOptions (and RayOptions), files → extract()."""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..errors import UsageError, W2VEmbedError
from .console import app, err, fail, run, shown
from .progress import ProgressBar, ProgressLog

if TYPE_CHECKING:
    from ..discover import Listing


@app.command(epilog="Exit codes: 0 all files embedded, 1 some files failed (see /failed), 2 usage error.")
def extract(
    inputs: Annotated[Optional[list[str]], typer.Argument(help="Audio files and folders.", show_default=False)] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="HDF5 file to write; '-' streams pooled rows to stdout as JSON Lines.")] = ...,
    model: Annotated[Optional[Path], typer.Option("-m", "--model", help="ONNX model (default: $W2V_EMBED_MODEL, else the one in models/).")] = None,
    layers: Annotated[Optional[str], typer.Option(help="Layers: 'last' (last_hidden_state), 'all' (0..L), or e.g. 6,12,last (0 = input to the first transformer layer).  \\[default: last]", show_default=False)] = None,
    pool: Annotated[Optional[str], typer.Option(help="mean | max | meanstd | none (frame-level).  \\[default: mean]", show_default=False)] = None,
    window: Annotated[float, typer.Option(help="Seconds: one pooled row per window of a file instead of one per file (with --pool mean|max|meanstd); 0 = off.")] = 0.0,
    hop: Annotated[Optional[float], typer.Option(help="Seconds between window starts (default: --window, no overlap).")] = None,
    files_from: Annotated[Optional[str], typer.Option("--files-from", help="File with one path per line; '-' reads stdin.")] = None,
    segments: Annotated[Optional[Path], typer.Option(help="Embed parts of recordings: a TSV/CSV with a header path,start,end[,id] (seconds), a Kaldi data folder (wav.scp [+ segments]), a lhotse cuts.jsonl[.gz], or an .rttm file (its recordings are the inputs, matched by name without extension). See docs/segments.md.")] = None,
    max_overshoot: Annotated[float, typer.Option(help="Seconds a segment may end past its audio's end and be cut there (Kaldi's extract-segments rule); beyond, it fails.")] = 0.5,
    ext: Annotated[Optional[str], typer.Option(help="Extensions to pick up in folders, e.g. wav,flac.")] = None,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Walk sub-folders.")] = True,
    follow_symlinks: Annotated[bool, typer.Option("--follow-symlinks", help="Descend into symlinked folders.")] = False,
    channel: Annotated[Optional[int], typer.Option(help="Use this channel (0-based) instead of the mean of all.")] = None,
    chunk_seconds: Annotated[float, typer.Option(help="Chunk files longer than this; 0 = never chunk.")] = 30.0,
    context_seconds: Annotated[float, typer.Option(help="Extra audio on each side of a chunk, discarded after inference.")] = 1.5,
    batch_size: Annotated[Optional[int], typer.Option(help="Most chunks per batch (default: 4 on CPU, 32 on GPU).")] = None,
    max_batch_seconds: Annotated[Optional[float], typer.Option(help="Most padded audio per batch, seconds (default: 20 on CPU, 160 on GPU).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    runtime: Annotated[str, typer.Option(help="auto | onnxruntime | openvino (the 'openvino' extra; CPU). auto: the faster one for the model's precision.")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for inference (default: available cores).")] = None,
    dtype: Annotated[str, typer.Option(help="Storage dtype: float32 | float16.")] = "float32",
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted or earlier run into OUT.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    save_every: Annotated[int, typer.Option(help="Make finished files crash-safe at least every N files (and every 20 s).")] = 64,
    shard: Annotated[Optional[str], typer.Option(help="Embed only part I of N (0-based) of the file list, balanced by bytes (segments by seconds), e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT; join the parts with `w2v-embed merge`.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    progress_seconds: Annotated[float, typer.Option(help="When stderr is not a terminal (batch jobs): a progress line this often; 0 = none.")] = 60.0,
    ray: Annotated[Optional[str], typer.Option(help="Run on Ray: 'local' starts one here, 'auto' or HOST:PORT joins a cluster (needs the ray extra).")] = None,
    ray_actors: Annotated[int, typer.Option(help="With --ray: Embedder actors, each holding the model (--threads each; one GPU each with --device cuda).")] = 1,
    ray_node_ip: Annotated[Optional[str], typer.Option(help="With --ray: this node's IP, where Ray's guess is wrong.")] = None,
    ray_timeout: Annotated[float, typer.Option(help="With --ray: most seconds to start or join Ray, and again for the actors to start (load the model).")] = 60.0,
    json_summary: Annotated[bool, typer.Option("--json-summary", help="Print the summary as JSON on stdout.")] = False,
    units: Annotated[Optional[Path], typer.Option("--units", help="Write one discrete unit per frame instead of features, with this codebook: a KM file of `w2v-embed kmeans` (its layer), or a (K, D) .npy, a faiss .index or a km.bin (with one --layers). -o x.km: fairseq's text; -o -: JSON Lines; else HDF5. Resumable; shards write .h5, `merge` joins them (also into one .km).")] = None,
    dedup: Annotated[bool, typer.Option("--dedup", help="With --units: collapse runs of a unit (durations kept beside).")] = False,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="With --units km.bin: load the pickle (it can run any code: only files you trust).")] = False,
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

      w2v-embed extract --files-from train.list --units km.npz -o train.km
    """
    from ..embedder import EmbedOptions
    from ..extract import ExtractOptions

    if resume and overwrite:
        fail(UsageError("--resume and --overwrite exclude each other"))
    if str(output) == "-" and (resume or overwrite or json_summary):
        fail(UsageError("-o - streams rows to stdout: --resume, --overwrite and --json-summary do not apply"))
    if str(output) == "-" and sys.stdout is None:  # started with stdout closed (`>&-`)
        fail(W2VEmbedError("-o -: stdout is closed; give it a pipe or a file, or write an .h5 file with -o FILE"))
    if dtype not in ("float32", "float16"):
        fail(UsageError(f"--dtype {dtype}: expected float32 or float16"))
    if (dedup or trust_pickle) and units is None:
        fail(UsageError("--dedup and --trust-pickle go with --units"))
    if units is not None and pool not in (None, "none"):
        fail(UsageError(f"--pool {pool}: --units gives one unit per frame, nothing is pooled; leave --pool out"))
    if str(output) == "-" and dtype != "float32":
        fail(UsageError(f"--dtype {dtype} is how HDF5 stores features; -o - writes JSON numbers: leave --dtype out"))
    if layers is not None and not layers.strip():
        fail(UsageError("--layers '': expected 'last', 'all' or layer numbers, e.g. 6,12,last"))
    # With --units the layer is the codebook's (units.prepare): the Embedder starts from the smallest graph
    # (layer 0), not the full one, so that peak memory holds one model's weights, not two.
    embed = EmbedOptions("0" if units is not None else layers or "last", pool or "mean", chunk_seconds, context_seconds, batch_size, max_batch_seconds,
                         window_seconds=window, hop_seconds=hop)
    mode = "resume" if resume else "overwrite" if overwrite else "new"
    options = run(partial(ExtractOptions, mode=mode, dtype=dtype, channel=channel, save_every_files=save_every,
                          max_overshoot=max_overshoot))
    selection = _Selection(list(inputs or []), files_from, ext, recursive, follow_symlinks, shard, segments)
    if not math.isfinite(progress_seconds) or progress_seconds < 0:
        fail(UsageError(f"--progress-seconds {progress_seconds}: expected a finite number >= 0"))
    ray_options = None
    given = {"--ray-actors": (ray_actors, 1), "--ray-node-ip": (ray_node_ip, None), "--ray-timeout": (ray_timeout, 60.0)}
    unused = [f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
              for name, (value, default) in given.items() if value != default]
    if ray is None and unused:
        fail(UsageError(f"{unused[0]}: goes with --ray (without it the run is local)"))
    if ray is not None:
        from ..ray_engine import RayOptions

        address = None if ray.strip().lower() in ("", "local") else ray.strip()
        ray_options = run(partial(RayOptions, address=address, actors=ray_actors, threads_per_actor=threads or 1,
                                   gpus_per_actor=1.0 if device == "cuda" else 0.0, node_ip=ray_node_ip,
                                   start_timeout_s=ray_timeout, quiet=quiet))
    units_args = (units, layers, dedup, trust_pickle) if units is not None else None
    run(_extract, selection, output, model, device, runtime, threads, embed, options, quiet, json_summary,
        progress_seconds, ray_options, units_args)


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

    def files(self) -> Listing:
        if self.segments is None:
            return self._discovered()
        from ..discover import Listing
        from ..segments import is_rttm, read_segments

        given = bool(self.inputs) or self.files_from is not None
        if given and not is_rttm(self.segments):
            raise UsageError("--segments lists the audio itself: give no other inputs (only an .rttm file needs them)")
        return Listing(read_segments(self.segments, self._discovered() if given else ()))  # rows: the segments'

    def _discovered(self) -> Listing:
        from ..discover import DEFAULT_EXTENSIONS, discover, read_file_list

        inputs = self.inputs
        if self.files_from is not None:
            try:
                data = sys.stdin.buffer.read() if self.files_from == "-" else Path(self.files_from).read_bytes()
            except OSError as exc:
                raise UsageError(f"--files-from {self.files_from}: {exc.strerror}") from exc
            inputs = inputs + read_file_list(os.fsdecode(data).splitlines())  # any bytes: names need not be UTF-8
        if not inputs:
            if self.files_from is not None:
                raise UsageError(f"--files-from {self.files_from}: lists no files")
            raise UsageError("no input: give files or folders, or --files-from FILE")
        extensions = tuple(e.strip().lstrip(".").lower() for e in self.ext.split(",")) if self.ext else DEFAULT_EXTENSIONS
        files = discover(inputs, extensions, recursive=self.recursive, follow_symlinks=self.follow_symlinks)
        if not files:
            raise UsageError(f"no audio files found in {', '.join(inputs)} (extensions: {', '.join(extensions)})")
        return files


def _extract(selection: _Selection, output: Path, model: Optional[Path], device: str, runtime: str,
             threads: Optional[int],
             embed: object, options: object, quiet: bool, json_summary: bool, progress_seconds: float,
             ray_options: object, units_args: Optional[tuple] = None) -> None:
    from ..embedder import Embedder
    from ..extract import extract
    from ..shards import Shard, select

    shard = Shard.parse(selection.shard) if selection.shard is not None else None
    # Bad model or layers fail first. With Ray this one only checks (on CPU): the actors compute.
    embedder = Embedder(model, device="cpu" if ray_options else device, threads=threads, options=embed, runtime=runtime)
    if embedder.model.note and not quiet:
        err.print(f"[yellow]note:[/] {embedder.model.note}", highlight=False)
    units = None
    if units_args is not None:  # the codebook's layer only, at frame level (units.stage)
        from ..units import prepare

        units, embedder = prepare(units_args[0], embedder, *units_args[1:])
    engine = None
    if ray_options is not None:
        from ..ray_engine import RayEngine

        engine = RayEngine(embedder, embedder.model.path, device, ray_options)
    if embedder.info.precision == "float16" and embedder.model.device == "cpu" and not quiet:
        err.print("[yellow]note:[/] float16 models are made for --device cuda; on CPU they run slower than float32")
    files = selection.files()
    repeats = files.repeats
    if repeats and units_args is not None and (output.suffix == ".km" or shard is not None):  # shards merge into a .km
        raise UsageError(f"{output}: a .km has one line per input, by position, but {_repeated(repeats)}; "
                         "list each file once (or write units to one .h5, keyed by name)")
    if repeats and not quiet and not json_summary:
        err.print(f"[yellow]note:[/] {shown(_repeated(repeats))}", highlight=False)
    if shard is not None:
        deal = select(files, shard)
        options = replace(options, shard=str(shard), total_files=deal.total, shard_deal=deal.fingerprint)
        files = deal.files
    show = not quiet and not json_summary
    with ProgressBar(show and err.is_terminal, len(files)) as bar:
        log = ProgressLog(len(files), progress_seconds) if show and not bar and progress_seconds > 0 else None
        target = sys.stdout if str(output) == "-" else output
        summary = extract(files, target, embedder, options, progress=bar or log, engine=engine, units=units)
    for name, reason in summary.failures:
        err.print(f"[yellow]failed:[/] {shown(name)}: {shown(reason)}", highlight=False)
    if json_summary:
        print(json.dumps({
            "output": str(summary.output), "ok": summary.ok, "failed": summary.failed, "skipped": summary.skipped,
            "truncated": summary.truncated, "repeated": len(repeats),
            "audio_seconds": round(summary.audio_seconds, 3), "wall_seconds": round(summary.wall_seconds, 3),
            "realtime_factor": round(summary.realtime_factor, 2), "failures": [list(f) for f in summary.failures],
        }))
    elif not quiet:
        err.print(
            f"{summary.ok} ok{f' ({summary.truncated} truncated)' if summary.truncated else ''}, "
            f"{summary.failed} failed, {summary.skipped} already done · "
            f"{summary.audio_seconds / 3600:.2f} h audio in {summary.wall_seconds:.1f} s "
            f"({summary.realtime_factor:.1f}× real-time) → {shown(summary.output)}"
        )
    if summary.failed:
        raise typer.Exit(1)


def _repeated(repeats: list[tuple[str, str]], shown_at_most: int = 3) -> str:
    """What discovery dropped, said: each input stored once is what a manifest's reader must know."""
    names = [name if name == first else f"{name} (= {first})" for name, first in repeats[:shown_at_most]]
    more = f" and {len(repeats) - shown_at_most} more" if len(repeats) > shown_at_most else ""
    inputs = "1 input names" if len(repeats) == 1 else f"{len(repeats)} inputs name"
    return f"{inputs} a file listed before and are stored once, under its first name: {', '.join(names)}{more}"


"""Progress while extracting: a rich bar on a terminal, a line every so often in a batch job's log."""

from __future__ import annotations

import time

from .console import err


class ProgressBar:
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


class ProgressLog:
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

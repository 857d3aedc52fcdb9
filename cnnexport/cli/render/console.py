"""Where the CLI writes (stdout's console, the terminal's), the per-stage spinner and the progress bars."""

from __future__ import annotations

import os
import sys

import click

from ..signals import check_interrupted


_terminal = None


def live_console():
    """The console for spinners and progress bars. On a terminal it writes to its own copy of the
    stderr descriptor: converters run with fds 1 and 2 redirected (pnnx, LiteRT and OpenVINO print
    there), which would otherwise swallow every frame drawn meanwhile."""
    global _terminal
    from rich.console import Console

    if not sys.stderr.isatty():
        return Console(stderr=True)
    if _terminal is None:
        _terminal = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding=sys.stderr.encoding,
                              errors="replace")
    return Console(file=_terminal, force_terminal=True)


def out_console():
    """stdout console; when piped, wide (tables are not squeezed to 80 columns) and with lines of text never
    broken (a script's grep finds a whole line)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200, soft_wrap=True)


class StageStatus:
    """A status line that names each stage as it starts (silent when stderr is not a terminal). A
    process of its own draws it, so it keeps turning through native code (see ``_spinner``)."""

    def __init__(self, title: str):
        self.title, self.spinner = title, None

    def __enter__(self):
        if sys.stderr.isatty():
            from ..._spinner import ProcessSpinner

            self.spinner = ProcessSpinner(self.title)
            self.spinner.__enter__()
        return self.update

    def update(self, stage: str) -> None:
        check_interrupted()
        if self.spinner:
            self.spinner.update(f"{self.title}: {stage}")

    def __exit__(self, *exc):
        if self.spinner:
            self.spinner.__exit__(*exc)


class ProgressBar:
    """``with ProgressBar(quiet, first) as (on_stage, on_progress)``: one bar that names the stage and
    counts measurements done of the total. Off a terminal, a plain line per stage and per finished
    measurement goes to stderr instead (what, how long, how many left), as pip and pytest do; both
    callbacks are None when quiet."""

    def __init__(self, quiet: bool, first: str = "measuring"):
        self.quiet, self.first, self.progress = quiet, first, None

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if self.quiet:
            return None, None
        console = live_console()
        if not console.is_terminal:
            return plain_progress()
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True)
        self.progress.__enter__()
        task = self.progress.add_task(self.first, total=None)

        def on_stage(stage: str) -> None:
            check_interrupted()
            self.progress.update(task, description=stage)

        def on_progress(done: int, total: int, label: str) -> None:
            self.progress.update(task, completed=done, total=total, description=f"measuring {label}")
        return on_stage, on_progress

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)


def plain_progress():
    """(on_stage, on_progress) that print one plain line each to stderr: for logs, where a bar cannot draw."""
    import time

    last = [time.perf_counter()]

    def on_stage(stage: str) -> None:
        check_interrupted()
        click.echo(f"{stage}...", err=True)
        last[0] = time.perf_counter()

    def on_progress(done: int, total: int, label: str) -> None:
        now = time.perf_counter()
        click.echo(f"measured {label} in {now - last[0]:.1f} s: {done} of {total} done, {total - done} left",
                   err=True)
        last[0] = now
    return on_stage, on_progress


class EvalProgress:
    """``with EvalProgress(quiet, total) as on_progress``: images done of the total and images/s; the
    callback is None when quiet or not on a terminal."""

    def __init__(self, quiet: bool, total: int):
        self.quiet, self.total, self.progress = quiet, total, None

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = live_console()
        if self.quiet or not console.is_terminal:
            return None
        self.progress = Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console,
                                 transient=True)
        self.progress.__enter__()
        task = self.progress.add_task("evaluating", total=self.total, rate="")

        def on_progress(done: int, total: int, per_s: float) -> None:
            self.progress.update(task, completed=done, total=total, rate=f"{per_s:.1f} images/s")
        return on_progress

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)

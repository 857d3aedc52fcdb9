"""A status spinner drawn by a process of its own, so that it keeps turning while this process runs
native code that holds the GIL (onnxsim, TorchScript tracing) or runs with its stdout and stderr
redirected (pnnx, LiteRT and OpenVINO print there). The parent sends each status line over a pipe;
the child draws it on the terminal it inherited and clears it when the pipe closes (also when the
parent dies). Only the CLI uses it, and only on a terminal."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys


class ProcessSpinner:
    """``with ProcessSpinner(title) as update: update("stage")``."""

    def __init__(self, title: str = ""):
        self.title = title
        self.proc: subprocess.Popen | None = None

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "cnnexport._spinner"], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True, encoding="utf-8")
        self.update(self.title)
        return self.update

    def update(self, text: str) -> None:
        if self.proc is None or self.proc.stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):  # a spinner that died takes nothing else down
            self.proc.stdin.write(" ".join(text.split()) + "\n")
            self.proc.stdin.flush()

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main() -> None:
    # Ctrl-C reaches the whole foreground group: the parent handles it and closes the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from rich.console import Console
    from rich.live import Live
    from rich.spinner import Spinner

    first = sys.stdin.readline()
    if not first:
        return
    spinner = Spinner("dots", text=first.rstrip("\n"))
    with Live(spinner, console=Console(stderr=True), transient=True, refresh_per_second=12.5) as live:
        for line in sys.stdin:
            spinner.update(text=line.rstrip("\n"))
            live.refresh()  # every stage is drawn when it starts, however soon the next one follows


if __name__ == "__main__":
    main()

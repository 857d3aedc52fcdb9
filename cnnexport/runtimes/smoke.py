"""A file run once in a process of its own, so that a runtime crashing on it (ncnn's SIGFPE on some converted
graphs) takes down that process only and the caller can name the crash:

    python -m cnnexport.runtimes.smoke RUNTIME PATH N,C,H,W [N,C,H,W ...]

loads PATH with RUNTIME and runs one random batch of each shape (NCHW). No torch."""

from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np


def crash_of(runtime: str, path: str, shapes: list[tuple[int, ...]]) -> str | None:
    """How ``runtime`` crashed running ``path`` at ``shapes`` in a child process ('crashed (SIGFPE)'), or None
    where it did not crash (an error it raised is left to the caller's own run, which reports it in words)."""
    proc = subprocess.run([sys.executable, "-m", __name__, runtime, str(path), *(",".join(map(str, s)) for s in shapes)],
                          capture_output=True, text=True, errors="replace")
    if proc.returncode >= 0:
        return None
    try:
        name = signal.Signals(-proc.returncode).name
    except ValueError:
        name = f"signal {-proc.returncode}"
    return f"crashed ({name})"


def main(argv: list[str]) -> None:
    from . import load, run_nchw

    runtime, path, shapes = argv[0], argv[1], [tuple(int(d) for d in s.split(",")) for s in argv[2:]]
    rng = np.random.default_rng(0)
    for shape in shapes:
        model = load(path, runtime, threads=1, **({"input_shape": shape} if runtime == "ncnn" else {}))
        run_nchw(model, rng.standard_normal(shape).astype(np.float32))


if __name__ == "__main__":
    main(sys.argv[1:])

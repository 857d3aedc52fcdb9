"""Silence what native libraries print (pnnx, LiteRT, OpenVINO write to the process's file
descriptors, which ``contextlib.redirect_stdout`` cannot catch). Library code never prints."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from typing import Iterator


@contextlib.contextmanager
def quiet_fds() -> Iterator[list[str]]:
    """Redirect fds 1 and 2 to a temporary file for the duration; yields a list that receives the
    captured lines afterwards (to quote in an error message)."""
    captured: list[str] = []
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    _flush_c_stdio()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        # Python-level writes too: a library's logging warnings go to sys.stderr, which a caller may have
        # replaced (click's test runner) so that the fd redirect alone would not catch them
        python_err = io.StringIO()
        try:
            with contextlib.redirect_stdout(open(os.devnull, "w")) as devnull, contextlib.redirect_stderr(python_err):
                try:
                    yield captured
                finally:
                    devnull.close()
        finally:
            captured.extend(python_err.getvalue().splitlines())
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            _flush_c_stdio()  # a library's printf to a pipe sits in C's buffer until exit, past the JSON we print
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            captured.extend(sink.read().decode(errors="replace").splitlines())


@contextlib.contextmanager
def quiet_logs(names: tuple[str, ...]) -> Iterator[None]:
    """Loggers ``names`` at ERROR, Python warnings off, and ``quiet_fds`` for the duration: for the torch
    compilers (torch.export, Inductor, ExecuTorch's passes), which warn and log at length."""
    import logging
    import warnings

    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), quiet_fds():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _flush_c_stdio() -> None:
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)

"""Ctrl-C and SIGTERM: the run stops where it is, nothing half-written is left, and the exit code is
130 / 143 even when a library swallows or wraps the signal's exception. Also the process-wide
settings the CLI makes before any work: signal handlers and multiprocessing's start method."""

from __future__ import annotations

import signal
import sys


class Terminated(BaseException):
    """SIGTERM, raised where the process is so that it unwinds like Ctrl-C: staged files are removed."""

# The first signal this process received. The handler raises where the main thread is, but a library
# may swallow that exception (Python drops one raised in a garbage-collector callback: JAX installs
# one) or wrap it (OpenVINO's frontend): the record still makes the run end as interrupted.
_first_signal: int | None = None


def first_signal() -> int | None:
    """The first signal this process received, or None."""
    return _first_signal


def install() -> None:
    """Handle SIGINT and SIGTERM (one ignored by whoever started us, a background job's SIGINT, stays
    ignored), re-deliver a signal a library swallowed, and never fork this process."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_signal)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_signal)
    sys.unraisablehook = _redeliver_swallowed_interrupt
    _never_fork()


def signal_exception(signum: int) -> BaseException:
    return Terminated(signum) if signum == signal.SIGTERM else KeyboardInterrupt()


def interrupted(signum: int) -> tuple[str, int]:
    if signum == signal.SIGTERM:
        return "terminated (SIGTERM); nothing half-written was left", 143
    return "interrupted; nothing half-written was left", 130


def _on_signal(signum, frame):
    global _first_signal
    _first_signal = _first_signal or signum
    if _inside_import(frame):
        # An exception raised while a C extension initialises can abort the process (torch's import
        # does, now and then): raise it once the import is done.
        _deliver_again(signum)
        return
    raise signal_exception(signum)


def _inside_import(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _deliver_again(signum: int) -> None:
    """Run the signal's handler again a moment later (from another thread, so that it lands in the
    main thread's code of that moment, not here)."""
    import _thread
    import threading

    timer = threading.Timer(0.05, _thread.interrupt_main, (signum,))
    timer.daemon = True
    timer.start()


def _redeliver_swallowed_interrupt(unraisable) -> None:
    """Deliver a signal again when Python swallowed its handler's exception, so that it is raised in
    ordinary code and the run stops there rather than at the end."""
    if unraisable.exc_type in (KeyboardInterrupt, Terminated) and _first_signal:
        _deliver_again(_first_signal)
    else:
        sys.__unraisablehook__(unraisable)


def check_interrupted() -> None:
    """Stop before the next stage when a signal arrived but its exception was swallowed."""
    if _first_signal:
        raise signal_exception(_first_signal)


def _never_fork() -> None:
    """Processes that libraries start with ``multiprocessing`` (OpenVINO's telemetry sends each event
    from one, out of a background thread) come from a fork server, not from a fork of this process:
    once LiteRT's JAX stack or ONNX Runtime's thread pools run here, a forked child can deadlock
    (JAX warns "os.fork() was called ... will likely lead to a deadlock")."""
    import multiprocessing

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    try:
        multiprocessing.set_start_method(method)
    except RuntimeError:  # already chosen by whoever embeds the CLI
        pass

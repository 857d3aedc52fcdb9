"""The ``cnnexport`` command: ``commands`` (click options, calls and the error -> exit-code mapping),
``render`` (tables, spinner and progress bars: the only code that prints) and ``signals`` (Ctrl-C and
SIGTERM). Heavy imports stay inside commands so that ``cnnexport --help`` is fast."""

from .commands import cli, main, parse_input_size

__all__ = ["cli", "main", "parse_input_size"]

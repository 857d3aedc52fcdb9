"""The ``cnnexport`` command: ``app`` (the group and the error -> exit-code mapping), one module per
command (``export_cmd``, ``bench_cmd``, ...: options and calls into the package, nothing else),
``options`` (what several commands share), ``render`` (tables, spinner and progress bars: the only
code that prints) and ``signals`` (Ctrl-C and SIGTERM). Heavy imports stay inside the commands so
that ``cnnexport --help`` is fast."""

from . import (bench_cmd, eval_cmd, export_cmd, fold_cmd, list_cmd, profile_cmd, quantize_cmd, report_cmd,
               study_cmd, verify_cmd)
from .app import cli, main
from .options import parse_input_size

COMMAND_MODULES = (bench_cmd, eval_cmd, export_cmd, fold_cmd, list_cmd, profile_cmd, quantize_cmd, report_cmd,
                   study_cmd, verify_cmd)  # importing each registers its command on ``cli``

__all__ = ["cli", "main", "parse_input_size", "COMMAND_MODULES"]

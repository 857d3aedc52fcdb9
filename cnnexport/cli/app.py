"""The ``cnnexport`` group: a model name first means ``export``, a mistyped command is named, and every
error that escapes a command becomes one line and its exit code (``cnnexport.errors.EXIT_CODES``).
The commands register themselves
on ``cli`` when the package imports their modules (``cli/__init__.py``)."""

from __future__ import annotations

import difflib
import os
import signal
import sys
import traceback
from pathlib import Path

import click

from .. import __version__
from ..errors import CnnexportError, ParameterError, UsageError
from ..exporter.formats import FORMAT_OPTIONS
from .signals import Terminated, first_signal, install, interrupted


_GROUP_FLAGS = ("--help", "-h", "--version")
#: A library parameter's flag where it is not --<name with dashes> (a ParameterError names parameters)
PARAMETER_FLAGS = {"eval_source": "--eval", "formats": "the format flags", "input_shape": "--input-size",
                   "dynamic_batch": "--batch",
                   **{name: option.flag for name, (_, option) in FORMAT_OPTIONS.items() if option.flag}}


def flag_of(parameter: str) -> str:
    """The CLI flag that sets a library parameter."""
    return PARAMETER_FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


def _one_line(message: str) -> str:
    """Control characters (from a path or a model name the user typed) escaped, so one error is one line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)


def fail(message: str, code: int) -> None:
    click.echo(f"error: {_one_line(message)}", err=True)
    sys.exit(code)


class DefaultExportGroup(click.Group):
    """``cnnexport resnet50 ...`` means ``cnnexport export resnet50 ...``; errors become one line."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args:  # the help, as `cnnexport --help` prints it (not an error squashed onto one line)
            click.echo(ctx.get_help())
            ctx.exit(0)
        if args[0] not in self.commands and args[0] not in _GROUP_FLAGS:
            self._refuse_mistyped_command(args[0])
            args = ["export", *args]
        return super().parse_args(ctx, args)

    def _refuse_mistyped_command(self, word: str) -> None:
        """``cnnexport verfy ...``: a word close to a command (difflib's ratio, as the registry's model
        suggestions use) that is no model is a typo."""
        if word.startswith("-") or ":" in word or Path(word).suffix:
            return
        close = difflib.get_close_matches(word.lower(), list(self.commands), n=1, cutoff=0.75)
        if not close:
            return
        command = close[0]
        from ..models import is_registered

        if not is_registered(word):
            raise UsageError(f"'{word}' is neither a command nor a model: did you mean `cnnexport {command}`? "
                             "(see cnnexport --help, cnnexport list)")

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name or "cnnexport", complete_var, standalone_mode=False, **extra)
        except SystemExit:
            raise
        except BaseException as exc:
            if first_signal():  # also when a library turned the signal's exception into its own (OpenVINO does)
                fail(*interrupted(first_signal()))
            if os.environ.get("CNNEXPORT_DEBUG"):
                if _is_internal(exc):
                    raise
                if exc.__cause__ is not None:  # e.g. the user's model code that raised: where it did
                    traceback.print_exception(exc.__cause__)
            fail(*_failure(exc))
        if first_signal():  # the signal's exception was swallowed inside a library and the run went on
            fail(*interrupted(first_signal()))
        sys.exit(rv if isinstance(rv, int) else 0)


def _is_internal(exc: BaseException) -> bool:
    return isinstance(exc, Exception) and not isinstance(exc, (click.ClickException, click.exceptions.Abort,
                                                               CnnexportError))


def _failure(exc: BaseException) -> tuple[str, int]:
    """The one-line message and exit code for an exception that escaped a command."""
    if isinstance(exc, click.NoSuchOption) and exc.ctx is not None:
        from .foreign_options import foreign_option_hint

        line = foreign_option_hint(exc.option_name, exc.ctx.command.name)
        if line:
            return f"{line} (see '{exc.ctx.command_path} --help')", 2
    if isinstance(exc, click.UsageError):
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        return exc.format_message().replace("\n", " ") + hint, 2
    if isinstance(exc, click.ClickException):
        return exc.format_message().replace("\n", " "), exc.exit_code
    if isinstance(exc, (click.exceptions.Abort, KeyboardInterrupt)):
        return interrupted(signal.SIGINT)
    if isinstance(exc, Terminated):
        return interrupted(signal.SIGTERM)
    if isinstance(exc, ParameterError):
        return exc.with_names(flag_of).replace("\n", " "), exc.exit_code
    if isinstance(exc, CnnexportError):
        return str(exc).replace("\n", " "), exc.exit_code
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "torch":
        return ("this command needs PyTorch, which this install lacks (a deploy install verifies, benchmarks, "
                "profiles and evaluates exported files without it): install torch beside it (pip install torch) or run "
                "the command where cnnexport was installed with its dependencies", 6)
    return (f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
            "(a bug; rerun with CNNEXPORT_DEBUG=1 for the traceback and report it)", 1)


@click.group(cls=DefaultExportGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cnnexport")
def cli() -> None:
    """Export, verify and benchmark CNN classifiers.

    \b
    cnnexport resnet50 --fold-bn --onnx      (same as: cnnexport export resnet50 ...)
    cnnexport list
    """


def main() -> None:
    """Console-script entry point."""
    install()
    cli.main(prog_name="cnnexport")


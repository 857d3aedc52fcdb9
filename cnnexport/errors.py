"""User-facing errors. Each carries the process exit code the CLI maps it to.

Every message is one line that names the problem and the fix. Library code raises these;
only the CLI (``cli/app.py``) turns them into exit codes.
"""

from __future__ import annotations

import errno
import os
import re

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Lines of a runtime's message that say where it failed, not why (OpenVINO: "Exception from
# src/inference/src/cpp/core.cpp:84:", "Check 'x' failed at src/...cpp:219:").
_WHERE_LINES = (re.compile(r"^Exception from \S+:\d+:?$"), re.compile(r"^Check '.*' failed at \S+:\d+:?$"))
# torch.onnx's dynamo exporter puts its own banner first and the real cause under this heading.
_SUMMARY = re.compile(r"## Exception summary\s+(?:<class '[\w.]+'>:\s*)?(.+)")
# A TorchScript module's error: two tracebacks of its code first, the exception itself on the last line.
_TORCHSCRIPT = re.compile(r"^The following operation failed in the TorchScript interpreter\.(?:.*\n)*(\w+: .+)\s*\Z")


def shorten(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters at a word boundary, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 3]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "..."


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (or its type), for one-line errors."""
    return shorten(next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__), limit)


def cause_line(exc: BaseException, limit: int = 300) -> str:
    """The line of a multi-line library error that names the cause: colour codes stripped, the
    dynamo exporter's banner and a runtime's "where it failed" lines skipped."""
    text = _ANSI.sub("", str(exc))
    summary = _SUMMARY.search(text) or _TORCHSCRIPT.search(text)
    if summary:
        return shorten(summary.group(1).strip(), limit)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    causes = [ln for ln in lines if not any(p.match(ln) for p in _WHERE_LINES)]
    # with no cause line after them, the innermost failed check names the cause better than the outermost frame
    checks = [ln for ln in lines if _WHERE_LINES[1].match(ln)][-1:]
    return shorten((causes or checks or lines or [type(exc).__name__])[0], limit)


class CnnexportError(Exception):
    """Base of all errors the CLI reports as one line without a traceback."""

    exit_code = 1


class UsageError(CnnexportError):
    """A bad argument value: input size, batch, opset, tolerance."""

    exit_code = 2


class ParameterError(UsageError):
    """A bad value of a library parameter. The message names each parameter as ``{name}``: ``str()`` gives
    the Python name (``atol must be ...``, what an API caller passed), ``with_names`` another spelling
    (the CLI's flag, ``--atol must be ...``)."""

    exit_code = 2

    def __init__(self, template: str):
        self.template = template
        super().__init__(self.with_names(lambda name: name))

    @staticmethod
    def literal(text: object) -> str:
        """``text`` (a value the caller gave) safe inside a template: its braces are not parameters."""
        return str(text).replace("{", "{{").replace("}", "}}")

    @property
    def parameters(self) -> list[str]:
        return re.findall(r"(?<!{){(\w+)}(?!})", self.template)

    def with_names(self, spell) -> str:
        """The message with each parameter spelled by ``spell(name)``."""
        return self.template.format(**{name: spell(name) for name in self.parameters})


class UnknownModelError(UsageError):
    """A model name that is neither registered nor an importable ``module:callable``."""

    exit_code = 2


class CalibrationError(UsageError):
    """Calibration or evaluation data that is empty, unreadable, the wrong shape, or overlapping."""

    exit_code = 2


class WeightsError(CnnexportError):
    """A weights file that is missing, corrupt, unsafe or does not fit the model."""

    exit_code = 3


class OutputError(CnnexportError):
    """An output location that cannot be written."""

    exit_code = 4


class VerificationError(CnnexportError):
    """An artifact whose outputs do not match the PyTorch reference within tolerance."""

    exit_code = 5

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report


class PrepareError(VerificationError):
    """``prepare`` changed what the model computes (caught in PyTorch, before anything is exported)."""


class MissingDependencyError(CnnexportError):
    """An optional runtime or tool that is not installed; the message names the pip extra."""

    exit_code = 6


class ExportError(CnnexportError):
    """The exporter, simplifier or a converter failed on this model."""

    exit_code = 7


class InvalidModelFileError(CnnexportError):
    """A model file (ONNX, TFLite, IR) that is missing, corrupt or fails its checker."""

    exit_code = 8


EXIT_CODES = {
    0: "success",
    1: "unexpected internal error (a bug: please report it with CNNEXPORT_DEBUG=1 output)",
    2: "bad usage: unknown model, bad option value (input size, batch, opset, tolerance)",
    3: "weights file missing, corrupt, unsafe, or not fitting the model",
    4: "output location cannot be written",
    5: "an artifact does not compute what the PyTorch model computes (nothing was written)",
    6: "an optional runtime or tool is not installed",
    7: "export, simplification or conversion failed",
    8: "a model file is missing, corrupt or fails its checker",
    130: "interrupted (Ctrl-C); nothing half-written was left",
    143: "terminated (SIGTERM); nothing half-written was left",
}


_DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_DISK_MESSAGES = ("No space left on device", "File too large", "Disk quota exceeded")


def disk_full(exc: BaseException) -> OutputError | None:
    """An ``OutputError`` when ``exc`` (or what caused it) is a full disk, a file-size limit or a
    quota; native converters report these only in their message, so the text is checked too."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = getattr(exc, "errno", None)
        text = str(exc)
        if code in _DISK_ERRNOS or any(m in text for m in _DISK_MESSAGES):
            reason = os.strerror(code) if code in _DISK_ERRNOS else next(m for m in _DISK_MESSAGES if m in text)
            return OutputError(f"no room to write the artifacts ({reason}): free disk space or choose another "
                               "output folder; nothing was written")
        exc = exc.__cause__ or exc.__context__
    return None

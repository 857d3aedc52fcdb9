"""``export(keep_going=True)``: a format whose file cannot be made (its converter or quantizer fails, or its tool
is not installed) or does not pass its check is left out and named in the report's ``failed`` list; the other
files are written. The ONNX fp32 file is never left out: every other file starts from it or is checked beside
it. Without ``keep_going`` the first failure raises, as always."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, TypeVar

from ..errors import ExportError, InvalidModelFileError, MissingDependencyError, first_line
from .formats import ALWAYS, FORMATS

T = TypeVar("T")

# what one format's failure raises (its converter, its missing tool, its runtime refusing the file it wrote);
# anything else (a bad option, bad calibration data, a full disk) concerns every format and stops the export
FORMAT_FAILURES = (ExportError, MissingDependencyError, InvalidModelFileError)


@dataclass
class Failures:
    """The files of one export that were left out, as report entries: ``format``, ``runtime``, ``precision``,
    ``file`` (the name it would have had), ``stage`` (convert, quantize or verify), ``error`` (one line) and
    ``error_type`` (the ``cnnexport.errors`` class a strict export would have raised)."""

    keep_going: bool
    name: str
    entries: list[dict] = field(default_factory=list)

    def add(self, fmt: str, precision: str, stage: str, error: str, error_type: str, **extra) -> None:
        spec = FORMATS[fmt]
        self.entries.append({"format": fmt, "runtime": spec.runtime, "precision": precision,
                             "file": spec.file_name(self.name, precision), "stage": stage, "error": error,
                             "error_type": error_type, **extra})

    def attempt(self, fmt: str, precision: str, stage: str, make: Callable[[], T]) -> T | None:
        """``make()``; with ``keep_going``, a format's failure (``FORMAT_FAILURES``) is recorded and None returned,
        except for the ONNX fp32 file's, which raises."""
        try:
            return make()
        except FORMAT_FAILURES as exc:
            if not self.skips(fmt, precision):
                raise
            self.add(fmt, precision, stage, first_line(exc), type(exc).__name__)
            return None

    def skips(self, fmt: str, precision: str) -> bool:
        """Whether a failure of this file leaves it out (rather than stopping the export)."""
        return self.keep_going and not (fmt == ALWAYS and precision == "fp32")

    def without_source(self, fmt: str, precision: str, source: str) -> None:
        """Record ``precision``'s file of ``fmt`` as not made: the file it starts from (``source``) was left out."""
        self.add(fmt, precision, "convert" if precision != "int8" else "quantize",
                 f"not made: it starts from {source}, which was left out", "ExportError")

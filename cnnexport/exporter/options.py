"""Every choice of an export in one value, ``ExportOptions``, checked once before any work. Its errors
name the parameters (``ParameterError``): an API caller reads ``atol``, the CLI shows ``--atol``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ..errors import ParameterError
from .formats import ALWAYS, FORMAT_OPTIONS, FORMATS, ConvertSource
from .onnx_export import AUTO, DEFAULT_OPSET, EXPORTERS
from .verify import DEFAULT_RTOL

_literal = ParameterError.literal


@dataclass(frozen=True, eq=False)
class ExportOptions:
    """What to write and how to check it. ``formats``: names of ``exporter.formats.FORMATS`` (ONNX is
    always written). The rest as ``pipeline.export`` documents them."""

    name: str | None = None
    formats: tuple[str, ...] = (ALWAYS,)
    fold_bn: bool = True
    reparameterize: bool = True
    exporter: str = AUTO
    opset: int = DEFAULT_OPSET
    dynamic_batch: bool = True
    simplify: bool = True
    atol: float | None = None
    rtol: float = DEFAULT_RTOL
    photos: bool = True
    # the formats' own options that were given (FORMAT_OPTIONS: tflite_layout, executorch_max_batch, ...)
    format_options: dict = field(default_factory=dict)
    # reduced precisions
    fp16: bool = False
    bf16: bool = False
    int8: bool = False
    calib: object = None          # 'samples', 'digits', a folder, an array file or an NCHW array
    calib_count: int = 200
    int8_min_cosine: float = 0.98
    calib_method: str = "minmax"
    keep_float: tuple[str, ...] = ()
    eval_source: str | None = None
    eval_count: int | None = 1000
    int8_max_drop: float | None = None
    # a format whose file cannot be made or fails its check is left out (report["failed"]) and the others written
    keep_going: bool = False

    @classmethod
    def of(cls, options: "ExportOptions | None" = None, **choices) -> "ExportOptions":
        """``options`` (default: the defaults) with ``choices`` replaced, checked."""
        given = {k: choices.pop(k) for k in list(choices) if k in FORMAT_OPTIONS}
        unknown = sorted(set(choices) - {f.name for f in fields(cls)} - {"format_options"})
        if unknown:
            raise TypeError(f"export() got unexpected keyword argument(s): {', '.join(unknown)}")
        if given:
            choices["format_options"] = {**(options.format_options if options else {}),
                                         **choices.get("format_options", {}), **given}
        if "formats" in choices:
            choices["formats"] = tuple(dict.fromkeys(choices["formats"]))
        if "keep_float" in choices:
            choices["keep_float"] = tuple(choices["keep_float"])
        chosen = replace(options or cls(), **choices)
        chosen.check()
        return chosen

    def check(self) -> None:
        """Raise ``ParameterError`` for the first choice that cannot work, before anything is written."""
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise ParameterError(f"unknown format(s) {_literal(', '.join(map(str, unknown)) or '(none)')} in "
                                 f"{{formats}}; available: {', '.join(FORMATS)}")
        if self.exporter not in (AUTO, *EXPORTERS):
            raise ParameterError(f"unknown {{exporter}} '{_literal(self.exporter)}'; choose one of {AUTO}, "
                                 f"{', '.join(EXPORTERS)}")
        if self.atol is not None and not (self.atol >= 0 and math.isfinite(self.atol)):
            raise ParameterError(f"{{atol}} must be a finite number >= 0, got {self.atol}")
        if self.int8 and self.calib is None:
            raise ParameterError("{int8} needs calibration data: {calib} samples, digits, an image folder or a "
                                 ".npy/.npz file")
        if self.keep_float and not self.int8:
            raise ParameterError("{keep_float} applies to int8 files: add {int8} {calib} ...")
        self._check_format_options()
        if self.bf16:
            with_bf16 = [FORMATS[f] for f in self.formats if FORMATS[f].bf16]
            if not with_bf16:
                raise ParameterError("{bf16} applies to " + ", ".join(f"{{{f.name}}}" for f in FORMATS.values()
                                                                      if f.bf16))
            for fmt in with_bf16:
                fmt.module().bf16_preflight()
        for fmt in (FORMATS[f] for f in self.formats if FORMATS[f].on_cuda(self.format_options)):
            fmt.module().preflight()  # before any work: the file is built for this machine's GPU
        if (self.eval_source or self.int8_max_drop is not None) and not self.int8:
            raise ParameterError("{eval_source} and {int8_max_drop} apply to int8 files: add {int8} {calib} ...")
        if self.eval_count is not None and self.eval_count < 1:
            raise ParameterError(f"{{eval_count}} must be at least 1, got {self.eval_count}")
        if self.int8_max_drop is not None and not 0 <= self.int8_max_drop <= 100:
            raise ParameterError(f"{{int8_max_drop}} takes points of top-1 accuracy, 0..100, got {self.int8_max_drop}")
        if self.calib_method != "minmax" and not self.int8:
            raise ParameterError("{calib_method} applies to int8 files: add {int8} {calib} ...")

    def _check_format_options(self) -> None:
        """Each format option given: a value it takes, and its format (and precision) chosen."""
        for name, value in self.format_options.items():
            if name not in FORMAT_OPTIONS:
                raise TypeError(f"export() got an unexpected format option: {name}")
            fmt, option = FORMAT_OPTIONS[name]
            if value == option.default and option.takes(value):
                continue  # left as it is: applies to nothing, refuses nothing
            if not option.takes(value) or fmt.name not in (ALWAYS, *self.formats):
                raise ParameterError(f"{{{name}}} takes {option.values_text()} and applies to {{{fmt.name}}}"
                                     if option.kind != "flag" else f"{{{name}}} applies to {{{fmt.name}}}")
            if option.needs and not getattr(self, option.needs):
                raise ParameterError(f"{{{name}}} applies to the {option.needs} {fmt.label} file: add {{{option.needs}}}")

    def convert_source(self, prepared, onnx_path: Path, shape: tuple[int, ...]) -> ConvertSource:
        """What every format's converter reads: the prepared module, the ONNX file and the format options."""
        return ConvertSource(prepared, onnx_path, shape, dict(self.format_options))

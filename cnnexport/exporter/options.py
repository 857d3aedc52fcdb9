"""Every choice of an export in one value, ``ExportOptions``, checked once before any work. Its errors
name the parameters (``ParameterError``): an API caller reads ``atol``, the CLI shows ``--atol``."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..errors import ParameterError
from .formats import FORMATS, ConvertSource
from .onnx_export import AUTO, DEFAULT_OPSET, EXPORTERS
from .verify import DEFAULT_RTOL

_literal = ParameterError.literal


@dataclass(frozen=True, eq=False)
class ExportOptions:
    """What to write and how to check it. ``formats``: names of ``exporter.formats.FORMATS`` (ONNX is
    always written). The rest as ``pipeline.export`` documents them."""

    name: str | None = None
    formats: tuple[str, ...] = ("onnx",)
    fold_bn: bool = True
    reparameterize: bool = True
    exporter: str = AUTO
    opset: int = DEFAULT_OPSET
    dynamic_batch: bool = True
    simplify: bool = True
    atol: float | None = None
    rtol: float = DEFAULT_RTOL
    photos: bool = True
    # the per-format options
    tflite_layout: str = "nhwc"
    executorch_max_batch: int | None = None
    aoti_max_batch: int | None = None
    engine_max_batch: int | None = None
    # reduced precisions
    fp16: bool = False
    fp16_io: bool = False
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

    @classmethod
    def of(cls, options: "ExportOptions | None" = None, **choices) -> "ExportOptions":
        """``options`` (default: the defaults) with ``choices`` replaced, checked."""
        unknown = sorted(set(choices) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"export() got unexpected keyword argument(s): {', '.join(unknown)}")
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
        if self.executorch_max_batch is not None and not (2 <= self.executorch_max_batch <= 4096
                                                          and "executorch" in self.formats):
            raise ParameterError("{executorch_max_batch} takes 2..4096 and applies to {executorch}")
        if self.aoti_max_batch is not None and not (2 <= self.aoti_max_batch <= 4096 and "aoti" in self.formats):
            raise ParameterError("{aoti_max_batch} takes 2..4096 and applies to {aoti}")
        if self.fp16_io and not self.fp16:
            raise ParameterError("{fp16_io} applies to the fp16 ONNX file: add {fp16}")
        if self.bf16:
            with_bf16 = [FORMATS[f] for f in self.formats if FORMATS[f].bf16]
            if not with_bf16:
                raise ParameterError("{bf16} applies to " + ", ".join(f"{{{f.name}}}" for f in FORMATS.values()
                                                                      if f.bf16))
            for fmt in with_bf16:
                fmt.module().bf16_preflight()
        if self.engine_max_batch is not None and not (1 <= self.engine_max_batch <= 4096
                                                      and any(FORMATS[f].needs_cuda for f in self.formats)):
            raise ParameterError("{engine_max_batch} takes 1..4096 and applies to {tensorrt}")
        for fmt in (FORMATS[f] for f in self.formats if FORMATS[f].needs_cuda):
            fmt.module().preflight()  # before any work: an engine is built for this machine's GPU
        if (self.eval_source or self.int8_max_drop is not None) and not self.int8:
            raise ParameterError("{eval_source} and {int8_max_drop} apply to int8 files: add {int8} {calib} ...")
        if self.eval_count is not None and self.eval_count < 1:
            raise ParameterError(f"{{eval_count}} must be at least 1, got {self.eval_count}")
        if self.int8_max_drop is not None and not 0 <= self.int8_max_drop <= 100:
            raise ParameterError(f"{{int8_max_drop}} takes points of top-1 accuracy, 0..100, got {self.int8_max_drop}")
        if self.calib_method != "minmax" and not self.int8:
            raise ParameterError("{calib_method} applies to int8 files: add {int8} {calib} ...")

    def convert_source(self, prepared, onnx_path: Path, shape: tuple[int, ...]) -> ConvertSource:
        """What every format's converter reads: the prepared module, the ONNX file and the per-format options."""
        return ConvertSource(prepared, onnx_path, shape, self.tflite_layout, self.executorch_max_batch, self.fp16_io,
                             self.engine_max_batch, self.aoti_max_batch)

"""PyTorch -> .tflite with litert-torch (no tensorflow). NHWC input by default, as mobile pipelines feed."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .._quiet import quiet_fds
from ..errors import ExportError, MissingDependencyError, UsageError, disk_full, cause_line

LAYOUTS = ("nhwc", "nchw")


def import_litert_torch():
    try:
        with quiet_fds():
            import litert_torch  # slow (~5 s): imported only when a .tflite is asked for
    except ImportError:
        raise MissingDependencyError("the TFLite converter is not installed: pip install 'cnnexport[tflite]'") from None
    return litert_torch


def to_tflite(module: nn.Module, path: str | os.PathLike, input_shape: tuple[int, ...], *,
              layout: str = "nhwc") -> Path:
    """Convert the (prepared, eval) module at a static ``input_shape`` (NCHW) and write ``path``."""
    if layout not in LAYOUTS:
        raise UsageError(f"unknown TFLite layout '{layout}'; choose nhwc or nchw")
    litert_torch = import_litert_torch()
    example = torch.randn(*input_shape)
    if layout == "nhwc" and len(input_shape) == 4:
        module = litert_torch.to_channel_last_io(module, args=[0]).eval()
        example = example.permute(0, 2, 3, 1).contiguous()
    loggers = [logging.getLogger(n) for n in ("litert_torch", "torch._dynamo", "torch.export", "absl")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), quiet_fds(), torch.no_grad():
            warnings.simplefilter("ignore")
            edge = litert_torch.convert(module, (example,))
            edge.export(str(path))
    except (ExportError, UsageError):
        raise
    except Exception as exc:
        first = cause_line(exc)
        raise (disk_full(exc) or ExportError(f"TFLite conversion (litert-torch) failed: {first}")) from None
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    return Path(path)

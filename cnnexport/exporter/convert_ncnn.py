"""PyTorch -> ncnn (.ncnn.param + .ncnn.bin) through pnnx, fp32 weights."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from .._quiet import quiet_fds
from ..errors import ExportError, MissingDependencyError, disk_full, cause_line


def to_ncnn(module: nn.Module, param_path: str | os.PathLike, input_shape: tuple[int, ...]) -> list[Path]:
    """Write ``<name>.ncnn.param`` and ``<name>.ncnn.bin``; pnnx's own intermediates stay in a temp folder."""
    try:
        import pnnx
    except ImportError:
        raise MissingDependencyError("the ncnn converter is not installed: pip install 'cnnexport[ncnn]'") from None
    param_path = Path(param_path)
    bin_path = param_path.with_suffix(".bin")
    with tempfile.TemporaryDirectory(dir=param_path.parent) as tmp:
        t = Path(tmp)
        try:
            with quiet_fds():
                pnnx.export(module, str(t / "m.pt"), (torch.randn(*input_shape),), fp16=False,
                            pnnxparam=str(t / "m.pnnx.param"), pnnxbin=str(t / "m.pnnx.bin"),
                            pnnxpy=str(t / "m_pnnx.py"), pnnxonnx=str(t / "m.pnnx.onnx"),
                            ncnnparam=str(t / "m.ncnn.param"), ncnnbin=str(t / "m.ncnn.bin"), ncnnpy=str(t / "m_ncnn.py"))
        except Exception as exc:
            first = cause_line(exc)
            raise (disk_full(exc) or ExportError(f"ncnn conversion (pnnx) failed: {first}")) from None
        if not (t / "m.ncnn.param").is_file():
            raise ExportError("ncnn conversion (pnnx) wrote no .ncnn.param file")
        shutil.move(str(t / "m.ncnn.param"), param_path)
        shutil.move(str(t / "m.ncnn.bin"), bin_path)
    return [param_path, bin_path]

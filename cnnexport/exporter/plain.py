"""What a user gets from each runtime's own converter without cnnexport, for ``bench --plain``: the
zoo module in eval mode (no BatchNorm folding, no simplification, no graph rewrites) through the
converter's documented call with its defaults. Each format module that has one holds its ``plain``
writer (``exporter.formats``); this module runs them. Files are named ``<model>.plain.<suffix>``
beside cnnexport's, so the same adapters load them and the same rounds measure them.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._quiet import quiet_fds
from ..errors import ExportError, cause_line
from .formats import ALWAYS, FORMATS, by_runtime

PLAIN_TAG = ".plain"


def plain_onnx(module, x, path: Path) -> Path:
    """The plain ONNX file beside ``path`` (``m.plain.mnn`` -> ``m.plain.onnx``), exported if not there yet:
    the converters that start from ONNX start from the plain one."""
    onnx_format = FORMATS[ALWAYS]
    onnx_path = path.with_name(path.name.split(PLAIN_TAG)[0] + PLAIN_TAG + onnx_format.suffixes[0])
    if not onnx_path.is_file():
        onnx_format.module().plain(module, x, onnx_path)
    return onnx_path


def plain_export(module, shape: tuple[int, ...], out_dir: str | os.PathLike, name: str,
                 runtimes: list[str]) -> dict[str, Path]:
    """Write the plain file of every runtime in ``runtimes`` whose format has a ``plain`` writer; runtime ->
    path. A converter that fails raises ``ExportError`` naming it (nothing of that file is left)."""
    import torch

    module = module.eval()
    x = torch.zeros(shape)
    out = {}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for runtime in runtimes:
        fmt = by_runtime(runtime)
        write = getattr(fmt.module(), "plain", None) if fmt else None
        if write is None:
            continue
        path = Path(out_dir) / f"{name}{PLAIN_TAG}{fmt.suffixes[0]}"
        try:
            with quiet_fds(), torch.no_grad():
                write(module, x, path)
        except ExportError:
            raise
        except Exception as exc:
            for suffix in fmt.suffixes:  # a writer that wrote part of its files
                Path(out_dir, f"{name}{PLAIN_TAG}{suffix}").unlink(missing_ok=True)
            raise ExportError(f"the plain {runtime} export (its own converter, for --plain) failed: "
                              f"{cause_line(exc)}") from None
        out[runtime] = path
    return out

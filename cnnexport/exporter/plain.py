"""What a user gets from each runtime's own converter without cnnexport, for ``bench --plain``: the
zoo module in eval mode (no BatchNorm folding, no simplification, no graph rewrites) through the
converter's documented call with its defaults. Files are named ``<model>.plain.<suffix>`` beside
cnnexport's, so the same adapters load them and the same rounds measure them.

- onnxruntime: ``torch.onnx.export(module, x, path, opset_version=18, dynamo=False)``;
- openvino: ``ov.save_model(ov.convert_model(module, example_input=x, input=shape), path)`` (its
  default fp16 weight compression included);
- tflite: ``litert_torch.convert(module, (x,)).export(path)`` (NCHW, as the module takes it);
- ncnn: ``pnnx.export(module, path, (x,))``;
- executorch: ``to_edge_transform_and_lower(torch.export.export(module, (x,)),
  partitioner=[XnnpackPartitioner()]).to_executorch()``;
- mnn: MNN's converter on the plain ONNX file;
- tensorrt: TensorRT's builder on the plain ONNX file with its defaults (fp32, the file's static shape),
  as ``trtexec --onnx`` builds it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from .._atomic import atomic_path
from .._quiet import quiet_fds
from ..errors import ExportError, cause_line

PLAIN_TAG = ".plain"


def _onnx(module, x, path: Path) -> None:
    import torch

    with atomic_path(path) as tmp, torch.no_grad():
        torch.onnx.export(module, x, str(tmp), opset_version=18, dynamo=False)


def _openvino(module, x, path: Path) -> None:
    from ..runtimes.openvino import import_openvino

    ov = import_openvino()
    model = ov.convert_model(module, example_input=x, input=[tuple(x.shape)])
    ov.save_model(model, str(path))  # the user's default: weights compressed to fp16


def _tflite(module, x, path: Path) -> None:
    from .formats.tflite import import_litert_torch

    litert_torch = import_litert_torch()
    with atomic_path(path) as tmp:
        litert_torch.convert(module, (x,)).export(str(tmp))


def _ncnn(module, x, path: Path) -> None:
    import pnnx

    with tempfile.TemporaryDirectory(prefix="cnnexport-plain-ncnn-") as tmp:
        t = Path(tmp)
        pnnx.export(module, str(t / "m.pt"), (x,), ncnnparam=str(t / "m.ncnn.param"), ncnnbin=str(t / "m.ncnn.bin"),
                    pnnxparam=str(t / "m.pnnx.param"), pnnxbin=str(t / "m.pnnx.bin"), pnnxpy=str(t / "m_pnnx.py"),
                    pnnxonnx=str(t / "m.pnnx.onnx"), ncnnpy=str(t / "m_ncnn.py"))
        shutil.move(str(t / "m.ncnn.bin"), str(path.with_name(path.name.replace(".param", ".bin"))))
        shutil.move(str(t / "m.ncnn.param"), str(path))


def _executorch(module, x, path: Path) -> None:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = to_edge_transform_and_lower(torch.export.export(module, (x,)),
                                          partitioner=[XnnpackPartitioner()]).to_executorch()
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(program.buffer)


def _plain_onnx(module, x, path: Path, suffix: str) -> Path:
    """The plain ONNX file beside ``path`` (``m.plain.mnn`` -> ``m.plain.onnx``), exported if not there yet:
    the converters that start from ONNX start from the plain one."""
    onnx_path = path.with_name(path.name.replace(suffix, ".onnx"))
    if not onnx_path.is_file():
        _onnx(module, x, onnx_path)
    return onnx_path


def _mnn(module, x, path: Path) -> None:
    from .formats.mnn import to_mnn

    to_mnn(_plain_onnx(module, x, path, ".mnn"), path, tuple(x.shape))


def _tensorrt(module, x, path: Path) -> None:
    from .formats.tensorrt import build_engine

    build_engine(_plain_onnx(module, x, path, ".engine"), path, tuple(x.shape), "fp32")


#: runtime -> (file suffix, writer)
PLAIN_WRITERS: dict[str, tuple[str, Callable]] = {
    "onnxruntime": (".onnx", _onnx), "openvino": (".xml", _openvino), "tflite": (".tflite", _tflite),
    "ncnn": (".ncnn.param", _ncnn), "executorch": (".pte", _executorch), "mnn": (".mnn", _mnn),
    "tensorrt": (".engine", _tensorrt),
}


def plain_export(module, shape: tuple[int, ...], out_dir: str | os.PathLike, name: str,
                 runtimes: list[str]) -> dict[str, Path]:
    """Write the plain file of every runtime in ``runtimes`` that has a converter here; runtime -> path.
    A converter that fails raises ``ExportError`` naming it (nothing of that file is left)."""
    import torch

    module = module.eval()
    x = torch.zeros(shape)
    out = {}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for runtime in runtimes:
        if runtime not in PLAIN_WRITERS:
            continue
        suffix, write = PLAIN_WRITERS[runtime]
        path = Path(out_dir) / f"{name}{PLAIN_TAG}{suffix}"
        try:
            with quiet_fds(), torch.no_grad():
                write(module, x, path)
        except ExportError:
            raise
        except Exception as exc:
            for leftover in (path, path.with_name(path.name.replace(".param", ".bin")), path.with_suffix(".bin")):
                leftover.unlink(missing_ok=True)  # a writer that wrote part of its files
            raise ExportError(f"the plain {runtime} export (its own converter, for --plain) failed: "
                              f"{cause_line(exc)}") from None
        out[runtime] = path
    return out

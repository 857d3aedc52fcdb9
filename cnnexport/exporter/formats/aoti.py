"""AOTInductor (.pt2): the prepared module captured by ``torch.export`` and compiled ahead of time by
Inductor into one package: generated kernels (C++ for the CPU; Triton for a CUDA GPU, with ``aoti_device``
cuda) built into a shared library, and the weights. PyTorch loads it without the model's Python code
(``torch._inductor.aoti_load_package`` in Python, ``AOTIModelPackageLoader`` in C++). Compiling needs a
C++ compiler; running needs torch.

The package takes the export's batch only (static) unless ``aoti_max_batch`` is given (a dynamic
batch 1..N, as ExecuTorch's). fp16 and bf16 packages compute the model in that type (weights and
activations) and take and return fp32, the casts compiled in. cnnexport stores the input and output
shapes, the batch bound, the device and the precision in the package's metadata
(``aot_inductor.metadata``), which the runtime adapter reads.
"""

from __future__ import annotations

import copy
import io
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from ..._atomic import atomic_path
from ..._quiet import quiet_logs
from ...errors import ExportError, MissingDependencyError, UsageError, cause_line, disk_full
# the metadata keys the runtime adapter reads
from ...runtimes.aoti import DEVICE, INPUT_SHAPE, MAX_BATCH, OUTPUT_SHAPE, PRECISION
from . import Artifact, ConvertSource

quantize = None  # no int8 package yet (PT2E int8 through Inductor is the way to one)
describe_int8 = None
# PyTorch's default computes CUDA convolutions in TF32 (10-bit mantissa): an fp32 package is verified, and
# run by cnnexport, with TF32 off; a caller who leaves it on gets TF32's error, not fp32's
CUDA_FP32_LOAD = ("torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False; "
                  "torch._inductor.aoti_load_package(path)")


def convert(source: ConvertSource, dst: Path) -> Artifact:
    """The fp32 package, at the export's batch (static) or 1..``aoti_max_batch``, for the CPU or
    (``aoti_device`` cuda) the GPU."""
    return _package(source, dst, "fp32")


def half(source: ConvertSource, fp32: Artifact, dst: Path) -> Artifact:
    """The package computed in fp16 (weights and activations; fp32 in and out)."""
    return _package(source, dst, "fp16")


def bf16(source: ConvertSource, fp32: Artifact, dst: Path) -> Artifact:
    """The package computed in bf16 (weights and activations; fp32 in and out)."""
    return _package(source, dst, "bf16")


def bf16_preflight() -> None:
    """PyTorch computes bf16 on any CPU (widening where the CPU has no bf16 arithmetic); a GPU's bf16 is
    checked by ``preflight`` (compute capability 8.0 or newer)."""


def preflight() -> None:
    """With ``--device cuda``: PyTorch must see a CUDA GPU here (the kernels are compiled and tuned for it)."""
    import torch

    if not torch.cuda.is_available():
        build = "a CPU build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise MissingDependencyError(f"--device cuda compiles the .pt2 package for a CUDA GPU, and PyTorch "
                                     f"{torch.__version__} ({build}) sees none here: export on the GPU machine, or "
                                     "leave out --device cuda")


def _package(source: ConvertSource, dst: Path, precision: str) -> Artifact:
    import torch

    compiler = cpp_compiler()
    max_batch, device = source.option("aoti_max_batch"), source.option("aoti_device")
    if device == "cuda":
        preflight()
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise UsageError(f"{torch.cuda.get_device_name()} has no bf16 arithmetic (compute capability 8.0 or "
                             "newer has): leave out --bf16")
    module = _in_precision(source.prepared, precision, device)
    exported = _capture(module, source.shape, max_batch, device,
                        getattr(source.prepared, "cnnexport_name", None) or type(source.prepared).__name__)
    out_shape = _output_shape(exported)
    batch = "-1" if max_batch else str(source.shape[0])
    metadata = {INPUT_SHAPE: ",".join([batch, *map(str, source.shape[1:])]),
                OUTPUT_SHAPE: ",".join([batch, *map(str, out_shape[1:])]),
                MAX_BATCH: str(max_batch or source.shape[0]), DEVICE: device, PRECISION: precision}
    buffer = io.BytesIO()
    try:
        with _quiet(), _fp32_without_tf32(device == "cuda" and precision == "fp32"):
            torch._inductor.aoti_compile_and_package(exported, package_path=buffer,
                                                     inductor_configs={"aot_inductor.metadata": metadata})
    except Exception as exc:
        raise ExportError(f"AOTInductor compilation failed ({compiler}): {cause_line(exc)}") from None
    try:
        with atomic_path(dst) as tmp:
            tmp.write_bytes(buffer.getvalue())
    except OSError as exc:
        raise (disk_full(exc) or exc) from None
    shape = {"max_batch": int(max_batch)} if max_batch else {"static_batch": int(source.shape[0])}
    details = {**shape, "device": device, "compiler": compiler}
    if device == "cuda":
        details["gpu"] = torch.cuda.get_device_name()
        if precision == "fp32":
            details["load_as_verified"] = CUDA_FP32_LOAD
    return Artifact("aoti", [Path(dst)], "aoti", precision=precision, details=details)


def _in_precision(module, precision: str, device: str):
    """``module`` on ``device``, computing in ``precision``: fp16 and bf16 cast the fp32 input in and the
    output back to fp32, so callers feed and read fp32 as from the fp32 package."""
    import torch
    from torch import nn

    if precision == "fp32" and device == "cpu":
        return module
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]

    class InPrecision(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.to(dtype)).float()

    inner = copy.deepcopy(module).to(device=device, dtype=dtype).eval()
    return InPrecision(inner) if precision != "fp32" else inner


@contextmanager
def _fp32_without_tf32(active: bool):
    """TF32 off while compiling an fp32 CUDA package (what Inductor tunes and checks is then fp32's)."""
    if not active:
        yield
        return
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def runtime_options(artifact: Artifact, batch_shape: tuple[int, ...]) -> dict:
    return {}


def cpp_compiler() -> str:
    """The C++ compiler Inductor will call (``CXX``, else g++, c++ or clang++ on the PATH); raises
    naming what to install where there is none."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and (path := shutil.which(name)):
            return path
    raise MissingDependencyError("--aoti compiles C++ kernels and no C++ compiler was found: install one "
                                 "(apt install g++, or set CXX), or leave out --aoti")


def _example_shape(shape: tuple[int, ...], max_batch: int | None) -> tuple[int, ...]:
    # an example batch of 1 would be specialised by torch.export
    return (min(2, max_batch), *shape[1:]) if max_batch else tuple(shape)


def _capture(module, shape: tuple[int, ...], max_batch: int | None, device: str, name: str):
    """``torch.export`` at a static input shape, or with the batch 1..``max_batch``; a model it cannot
    capture is the user's to fix."""
    import torch

    dynamic = ({0: torch.export.Dim("batch", min=1, max=max_batch)},) if max_batch else None
    try:
        with torch.no_grad(), _quiet():
            return torch.export.export(module, (torch.zeros(_example_shape(shape, max_batch), device=device),),
                                       dynamic_shapes=dynamic, strict=False)
    except Exception as exc:
        raise UsageError(f"torch.export cannot capture {name} for AOTInductor ({cause_line(exc, 220)}); make its "
                         "forward free of data-dependent control flow (torch.cond, or branch on shapes only), or "
                         "leave out --aoti") from None


def _output_shape(exported) -> tuple:
    """The first output's shape as ``torch.export`` traced it (the batch may be symbolic), without running the
    module: eager PyTorch lacks some fp16 CPU kernels (LocalResponseNorm's avg_pool3d) that Inductor generates."""
    output = next(n for n in exported.graph.nodes if n.op == "output").args[0]
    first = output[0] if isinstance(output, (list, tuple)) else output
    return tuple(first.meta["val"].shape)


def _quiet():
    """torch.export and Inductor warn and log at length; the report says what matters."""
    return quiet_logs(("torch._export", "torch.export", "torch._dynamo", "torch._inductor"))

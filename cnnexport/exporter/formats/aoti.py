"""AOTInductor (.pt2): the prepared module captured by ``torch.export`` and compiled ahead of time by
Inductor into one package: generated C++ kernels built into a shared library, and the weights.
PyTorch loads it without the model's Python code (``torch._inductor.aoti_load_package`` in Python,
``AOTIModelPackageLoader`` in C++). Compiling needs a C++ compiler; running needs torch.

The package takes the export's batch only (static) unless ``aoti_max_batch`` is given (a dynamic
batch 1..N, as ExecuTorch's). cnnexport stores the input and output shapes and the batch bound in the
package's metadata (``aot_inductor.metadata``), which the runtime adapter reads.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

from ..._atomic import atomic_path
from ..._quiet import quiet_logs
from ...errors import ExportError, MissingDependencyError, UsageError, cause_line, disk_full
from . import Artifact, ConvertSource

quantize = None  # no int8 package yet (PT2E int8 through Inductor is the way to one)
describe_int8 = None
# the metadata keys the runtime adapter reads (runtimes/aoti.py keeps the same names)
INPUT_SHAPE, OUTPUT_SHAPE, MAX_BATCH, DEVICE = ("cnnexport.input_shape", "cnnexport.output_shape",
                                                "cnnexport.max_batch", "cnnexport.device")


def convert(source: ConvertSource, dst: Path) -> Artifact:
    """The fp32 package for the CPU, at the export's batch (static) or 1..``aoti_max_batch``."""
    import torch

    compiler = cpp_compiler()
    max_batch = source.option("aoti_max_batch")
    exported = _capture(source.prepared, source.shape, max_batch)
    with torch.no_grad():
        out_shape = tuple(exported.module()(torch.zeros(_example_shape(source.shape, max_batch))).shape)
    batch = "-1" if max_batch else str(source.shape[0])
    metadata = {INPUT_SHAPE: ",".join([batch, *map(str, source.shape[1:])]),
                OUTPUT_SHAPE: ",".join([batch, *map(str, out_shape[1:])]),
                MAX_BATCH: str(max_batch or source.shape[0]), DEVICE: "cpu"}
    buffer = io.BytesIO()
    try:
        with _quiet():
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
    return Artifact("aoti", [Path(dst)], "aoti", details={**shape, "device": "cpu", "compiler": compiler})


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


def _capture(module, shape: tuple[int, ...], max_batch: int | None):
    """``torch.export`` at a static input shape, or with the batch 1..``max_batch``; a model it cannot
    capture is the user's to fix."""
    import torch

    dynamic = ({0: torch.export.Dim("batch", min=1, max=max_batch)},) if max_batch else None
    try:
        with torch.no_grad(), _quiet():
            return torch.export.export(module, (torch.zeros(_example_shape(shape, max_batch)),),
                                       dynamic_shapes=dynamic, strict=False)
    except Exception as exc:
        name = getattr(module, "cnnexport_name", None) or type(module).__name__
        raise UsageError(f"torch.export cannot capture {name} for AOTInductor ({cause_line(exc, 220)}); make its "
                         "forward free of data-dependent control flow (torch.cond, or branch on shapes only), or "
                         "leave out --aoti") from None


def _quiet():
    """torch.export and Inductor warn and log at length; the report says what matters."""
    return quiet_logs(("torch._export", "torch.export", "torch._dynamo", "torch._inductor"))

"""AOTInductor adapter: ``torch._inductor.aoti_load_package`` runs a .pt2 package (compiled kernels and
weights; no model code). It needs torch, so this adapter, like ExecuTorch's, imports it lazily, when a
.pt2 file is loaded. The tensors' shapes come from the metadata cnnexport stores in the package."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InvalidModelFileError, MissingDependencyError, cause_line
from .base import RuntimeModel, TensorSpec

# as exporter/formats/aoti.py writes them
INPUT_SHAPE, OUTPUT_SHAPE, MAX_BATCH, DEVICE = ("cnnexport.input_shape", "cnnexport.output_shape",
                                                "cnnexport.max_batch", "cnnexport.device")


def import_torch():
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("AOTInductor packages (.pt2) run in PyTorch: pip install torch") from None
    return torch


class AotiModel(RuntimeModel):
    runtime = "aoti"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None):
        torch = import_torch()
        self.path, self.threads = str(path), threads
        if threads:
            torch.set_num_threads(int(threads))  # the compiled kernels' OpenMP threads
        try:
            self._runner = torch._inductor.aoti_load_package(self.path)
            meta = dict(self._runner.get_metadata())
        except Exception as exc:
            raise InvalidModelFileError(f"PyTorch cannot load '{path}' as an AOTInductor package: {cause_line(exc)}; "
                                        "is it a complete .pt2 file compiled for this CPU and PyTorch version?") from None
        if INPUT_SHAPE not in meta:
            raise InvalidModelFileError(f"'{path}' carries no input shape: cnnexport runs the .pt2 packages it "
                                        "wrote (export --aoti)")
        self.device = meta.get(DEVICE, "cpu")
        self.max_batch = int(meta[MAX_BATCH]) if meta.get(INPUT_SHAPE, "").startswith("-1") else None
        self._inputs = [TensorSpec("input", _dims(meta[INPUT_SHAPE]), "float32")]
        self._outputs = [TensorSpec("output", _dims(meta[OUTPUT_SHAPE]), "float32")]

    def _run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self._runner(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
        outs = out if isinstance(out, (list, tuple)) else [out]
        return [o.numpy().copy() for o in outs]

    def describe(self) -> dict:
        torch = import_torch()
        return {"runtime": self.runtime, "version": torch.__version__, "device": self.device,
                "threads": self.threads or torch.get_num_threads(), "max_batch": self.max_batch,
                "file": Path(self.path).name}


def _dims(text: str) -> tuple[int | None, ...]:
    return tuple(None if d == "-1" else int(d) for d in text.split(","))

"""PyTorch as the baseline runtime (CPU or CUDA): eager, or compiled with ``torch.compile`` (Inductor;
``max-autotune-no-cudagraphs`` on the CPU, ``max-autotune`` with CUDA graphs on a GPU), PyTorch at its
best. ``CNNEXPORT_COMPILE_MODE`` names another mode (``reduce-overhead``: CUDA graphs without max-autotune's
search over kernels, far less compiling); rows record the mode.
Imports torch lazily."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..errors import MissingDependencyError
from .base import RuntimeModel, TensorSpec

COMPILE_MODE_ENV = "CNNEXPORT_COMPILE_MODE"  # torch.compile's mode for the torch-compile runtime, where not the default


class TorchModel(RuntimeModel):
    runtime = "torch"

    def __init__(self, module, input_shape: tuple[int, ...], *, device: str = "cpu", threads: int | None = None,
                 compiled: bool = False):
        try:
            import torch
        except ImportError:
            raise MissingDependencyError("PyTorch is not installed: the torch baseline needs it") from None
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise MissingDependencyError("CUDA is not available to PyTorch here")
        if threads:
            torch.set_num_threads(int(threads))
        self.torch, self.device, self.threads = torch, device, threads
        self.module = module.eval().to(device)
        self.compile_mode = None
        if compiled:
            self.compile_mode = os.environ.get(COMPILE_MODE_ENV) or (
                "max-autotune" if device.startswith("cuda") else "max-autotune-no-cudagraphs")
            self.module = torch.compile(self.module, mode=self.compile_mode)
            self.runtime = "torch-compile"
        self._inputs = [TensorSpec("input", (None, *input_shape[1:]), "float32", "NCHW")]
        self._outputs = [TensorSpec("output", (None,), "float32", "")]

    def _run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            out = self.module(torch.from_numpy(arrays[0]).to(self.device))
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
        return [out.float().cpu().numpy()]

    def describe(self) -> dict:
        torch = self.torch
        return {"runtime": self.runtime, "version": torch.__version__, "device": self.device,
                "threads": torch.get_num_threads(),
                **({"compile_mode": self.compile_mode} if self.compile_mode else {}),
                "gpu": torch.cuda.get_device_name() if self.device.startswith("cuda") else None}

"""AOTInductor adapter: ``torch._inductor.aoti_load_package`` runs a .pt2 package (compiled kernels and
weights; no model code) on the device it was compiled for, the CPU or a CUDA GPU. It needs torch, so this
adapter, like ExecuTorch's, imports it lazily, when a .pt2 file is loaded. The tensors' shapes, the device
and the precision come from the metadata cnnexport stores in the package."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InvalidModelFileError, MissingDependencyError, UsageError, cause_line
from .base import RuntimeModel, TensorSpec

# the metadata keys cnnexport writes into a package (exporter/formats/aoti.py) and this adapter reads
INPUT_SHAPE, OUTPUT_SHAPE, MAX_BATCH, DEVICE, PRECISION = (
    "cnnexport.input_shape", "cnnexport.output_shape", "cnnexport.max_batch", "cnnexport.device",
    "cnnexport.precision")


def import_torch():
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("AOTInductor packages (.pt2) run in PyTorch: pip install torch") from None
    return torch


def compiled_device(path: str | os.PathLike) -> str | None:
    """The device a .pt2 package's kernels were compiled for (Inductor's ``AOTI_DEVICE_KEY``: cpu or cuda),
    read from the archive without loading it; None where the file says nothing (not a package)."""
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith("_metadata.json"):
                    device = json.loads(archive.read(name)).get("AOTI_DEVICE_KEY")
                    if device:
                        return str(device)
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    return None


class AotiModel(RuntimeModel):
    runtime = "aoti"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, device: str | None = None):
        """``device``: the device the caller means to run on (bench's --device); a package compiled for
        another one is refused. None: where it was compiled for."""
        torch = import_torch()
        self.path, self.threads = str(path), threads
        built_for = compiled_device(path)
        if device is not None and built_for is not None and built_for != device:
            raise UsageError(f"'{Path(path).name}' is compiled for {built_for}, not {device}: "
                             + ("export it with --aoti --device cuda on the GPU machine" if device == "cuda"
                                else "bench it with --device cuda"))
        if built_for == "cuda" and not torch.cuda.is_available():
            raise MissingDependencyError(f"'{Path(path).name}' is compiled for a CUDA GPU and PyTorch "
                                         f"{torch.__version__} sees none here: run it on the GPU machine, or export "
                                         "it again without --device cuda")
        if threads:
            torch.set_num_threads(int(threads))  # the compiled CPU kernels' OpenMP threads
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
        self.precision = meta.get(PRECISION, "fp32")
        if self.device == "cuda" and self.precision == "fp32":
            # as it was verified (exporter/formats/aoti.py CUDA_FP32_LOAD): PyTorch's default TF32 convolutions
            # would give TF32's error, not fp32's
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        self.max_batch = int(meta[MAX_BATCH]) if meta.get(INPUT_SHAPE, "").startswith("-1") else None
        self._inputs = [TensorSpec("input", _dims(meta[INPUT_SHAPE]), "float32")]
        self._outputs = [TensorSpec("output", _dims(meta[OUTPUT_SHAPE]), "float32")]

    def _run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self._runner(*[torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays])
        outs = out if isinstance(out, (list, tuple)) else [out]
        return [o.cpu().numpy().copy() for o in outs]

    def timed_call(self, x: np.ndarray):
        """On a GPU: the package on the device-resident batch ``x`` (copied once, now), synchronised, as
        the other GPU rows are timed; on the CPU the base class's call."""
        if self.device != "cuda":
            return super().timed_call(x)
        import torch

        x = self._as_input_types([x])[0]
        step = self._inputs[0].shape[0] or self.max_batch or len(x)
        chunks = torch.from_numpy(np.ascontiguousarray(x)).to(self.device).split(step)

        def call():
            with torch.inference_mode():
                for chunk in chunks:
                    out = self._runner(chunk)
            torch.cuda.synchronize()
            return out
        return call

    def describe(self) -> dict:
        torch = import_torch()
        facts = {"runtime": self.runtime, "version": torch.__version__, "device": self.device,
                 "threads": self.threads or torch.get_num_threads(), "max_batch": self.max_batch,
                 "precision": self.precision, "file": Path(self.path).name}
        if self.device == "cuda":
            major, minor = torch.cuda.get_device_capability()
            facts.update(gpu=torch.cuda.get_device_name(), compute_capability=f"{major}.{minor}",
                         cuda_runtime=torch.version.cuda)
        return facts


def _dims(text: str) -> tuple[int | None, ...]:
    return tuple(None if d == "-1" else int(d) for d in text.split(","))

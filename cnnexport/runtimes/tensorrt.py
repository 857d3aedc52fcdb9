"""TensorRT adapter (``.engine``): a serialized engine deserialized with the TensorRT Python API, run
on one CUDA stream with device buffers from cuda-python. No torch.

An engine runs only on the GPU model (and TensorRT version) it was built for: cnnexport writes the
build facts beside it (``<model>.engine.json``), and loading compares them with this machine's, so a
mismatch is one clear line rather than TensorRT's deserialisation error.

``run`` copies the input to the device and the output back (one copy each way); ``timed_call`` copies
the input once and times only the engine on device-resident buffers, synchronised, as the PyTorch
CUDA rows do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InvalidModelFileError, MissingDependencyError, UsageError
from .base import RuntimeModel, TensorSpec
from .cuda import check_cuda, gpu_facts, import_cudart, row_facts

INSTALL = "TensorRT is not installed: pip install 'cnnexport[gpu]' (on a machine with an NVIDIA GPU)"


def import_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise MissingDependencyError(INSTALL) from None
    return tensorrt


def facts_path(engine: str | os.PathLike) -> Path:
    return Path(f"{engine}.json")


def error_logger(trt):
    """A TensorRT logger that keeps the errors, for the one line a failure shows."""

    class ErrorLog(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(msg))

    return ErrorLog()


class TensorRtModel(RuntimeModel):
    runtime = "tensorrt"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, batch: int | None = None):
        """``batch``: the input batch size set before the first call (any size within the engine's
        optimisation profile works; a new size resets the shapes)."""
        trt = import_tensorrt()
        cudart = import_cudart()
        self.path, self.threads = str(path), threads
        self._check_facts()
        logger = error_logger(trt)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(Path(self.path).read_bytes())
        if self.engine is None:
            raise InvalidModelFileError(f"TensorRT cannot load '{Path(path).name}': "
                                        f"{logger.errors[-1] if logger.errors else 'not a serialized engine'}")
        self.context = self.engine.create_execution_context()
        self.stream = check_cuda(cudart.cudaStreamCreate())
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._in_names = [n for n in names if is_input[n]]
        self._out_names = [n for n in names if not is_input[n]]
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self._inputs = [self._spec(n) for n in self._in_names]
        self._outputs = [self._spec(n) for n in self._out_names]
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self._shape: tuple[int, ...] | None = None
        if batch:
            self._set_shape((int(batch), *self._inputs[0].shape[1:]))

    def _check_facts(self) -> None:
        facts_file = facts_path(self.path)
        if not facts_file.is_file():
            return
        built = json.loads(facts_file.read_text())
        here = gpu_facts()
        if built.get("gpu") and built["gpu"] != here["gpu"]:
            raise UsageError(f"'{Path(self.path).name}' was built for {built['gpu']} (compute capability "
                             f"{built.get('compute_capability')}); this machine has {here['gpu']}: rebuild the "
                             "engine here (cnnexport MODEL --tensorrt)")

    def _spec(self, name: str) -> TensorSpec:
        shape = tuple(None if d < 0 else int(d) for d in self.engine.get_tensor_shape(name))
        return TensorSpec(name, shape, self._dtypes[name].name, "NCHW")

    def _set_shape(self, shape: tuple[int, ...]) -> None:
        """Set the input shape and (re)allocate the device buffers it needs."""
        cudart = import_cudart()
        name = self._in_names[0]
        if not self.context.set_input_shape(name, tuple(int(d) for d in shape)):
            lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
            raise UsageError(f"'{Path(self.path).name}' takes batches {lo[0]}..{hi[0]} (its optimisation profile); "
                             f"got {shape[0]}: rebuild it with a larger --tensorrt-max-batch")
        for n in self._in_names + self._out_names:
            dims = tuple(self.context.get_tensor_shape(n))
            size = int(np.prod(dims)) * self._dtypes[n].itemsize
            if n in self._buffers and self._buffers[n][1] >= size:
                continue
            if n in self._buffers:
                check_cuda(cudart.cudaFree(self._buffers[n][0]))
            self._buffers[n] = (int(check_cuda(cudart.cudaMalloc(max(size, 1)))), size)
            self.context.set_tensor_address(n, self._buffers[n][0])
        self._shape = tuple(shape)

    def _execute(self) -> None:
        cudart = import_cudart()
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError(f"TensorRT failed to run '{Path(self.path).name}'")
        check_cuda(cudart.cudaStreamSynchronize(self.stream))

    def _copy_in(self, x: np.ndarray) -> None:
        cudart = import_cudart()
        x = np.ascontiguousarray(x, dtype=self._dtypes[self._in_names[0]])
        if self._shape != x.shape:
            self._set_shape(x.shape)
        check_cuda(cudart.cudaMemcpy(self._buffers[self._in_names[0]][0], x.ctypes.data, x.nbytes,
                                     cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))

    def _run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        cudart = import_cudart()
        self._copy_in(arrays[0])
        self._execute()
        outs = []
        for n in self._out_names:
            out = np.empty(tuple(self.context.get_tensor_shape(n)), self._dtypes[n])
            check_cuda(cudart.cudaMemcpy(out.ctypes.data, self._buffers[n][0], out.nbytes,
                                         cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost))
            outs.append(out)
        return outs

    def timed_call(self, x: np.ndarray):
        """The engine on the device-resident input ``x`` (copied once, now), synchronised."""
        self._copy_in(self._as_input_types([x])[0])
        return self._execute

    def describe(self) -> dict:
        trt = import_tensorrt()
        facts = json.loads(facts_path(self.path).read_text()) if facts_path(self.path).is_file() else {}
        return {"runtime": self.runtime, "version": trt.__version__, "device": "cuda", "threads": self.threads,
                "file": Path(self.path).name, **row_facts(), "tensorrt": trt.__version__,
                "engine_precision": facts.get("precision"), "engine_built_on": facts.get("gpu")}

    def __del__(self):
        try:
            cudart = import_cudart()
            for ptr, _ in getattr(self, "_buffers", {}).values():
                cudart.cudaFree(ptr)
            if getattr(self, "stream", None) is not None:
                cudart.cudaStreamDestroy(self.stream)
        except Exception:  # interpreter shutdown: the driver frees everything anyway
            pass

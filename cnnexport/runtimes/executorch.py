"""ExecuTorch adapter: ``executorch.runtime`` runs a .pte program (XNNPACK-delegated where the
program says so). Its Python binding takes and returns torch tensors, so this adapter, alone on the
deploy side, imports torch (lazily, when a .pte file is loaded)."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .._quiet import quiet_fds
from ..errors import InvalidModelFileError, MissingDependencyError, cause_line
from .base import RuntimeModel, TensorSpec

# c10::ScalarType codes, as the binding's TensorInfo.dtype() returns them
MAX_BATCH_METHOD = "cnnexport_max_batch"  # as exporter/formats/executorch.py writes it
_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
           11: "bool"}


def import_runtime():
    try:
        with quiet_fds():
            import torch  # noqa: F401  (the binding needs torch loaded first)
            from executorch.runtime import Runtime
    except ImportError:
        raise MissingDependencyError("the ExecuTorch runtime is not installed: pip install executorch torch "
                                     "(or 'cnnexport[executorch]'); its Python binding needs torch") from None
    return Runtime


class ExecuTorchModel(RuntimeModel):
    runtime = "executorch"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None):
        runtime_cls = import_runtime()
        self.path, self.threads = str(path), threads
        logged = io.StringIO()
        try:  # cpuinfo and the program loader log on stderr, through the fd or through Python
            with quiet_fds() as captured, contextlib.redirect_stderr(logged), contextlib.redirect_stdout(logged):
                if threads:
                    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

                    _unsafe_reset_threadpool(int(threads))
                program = runtime_cls.get().load_program(Path(self.path))
                self._method = program.load_method("forward")
                # a dynamic batch's bound, which cnnexport stores as a constant method (the metadata shows
                # no dynamic axis)
                self.max_batch = (int(program.load_method(MAX_BATCH_METHOD).execute([])[0])
                                  if MAX_BATCH_METHOD in program.method_names else None)
        except Exception as exc:
            why = next((ln.split("] ", 1)[-1] for ln in [*captured, *logged.getvalue().splitlines()][::-1]
                        if "program.cpp" in ln or "method.cpp" in ln), None)
            raise InvalidModelFileError(f"ExecuTorch cannot load '{path}': {cause_line(exc)}"
                                        + (f" ({why.strip()})" if why else "")
                                        + "; is it a complete .pte file written by this ExecuTorch version?") from None
        meta = self._method.metadata
        self._inputs = [_spec(f"input{i}" if meta.num_inputs() > 1 else "input", meta.input_tensor_meta(i),
                              dynamic_batch=self.max_batch is not None) for i in range(meta.num_inputs())]
        self._outputs = [_spec(f"output{i}" if meta.num_outputs() > 1 else "output", meta.output_tensor_meta(i), "",
                               dynamic_batch=self.max_batch is not None) for i in range(meta.num_outputs())]

    def _run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch

        outs = self._method.execute([torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
        return [o.detach().numpy().copy() for o in outs]

    def describe(self) -> dict:
        from importlib import metadata

        threads = self.threads
        if threads is None:
            from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count

            threads = int(_threadpool_get_thread_count())
        return {"runtime": self.runtime, "version": metadata.version("executorch"), "device": "cpu",
                "threads": threads, "delegate": "XNNPACK (as lowered)", "max_batch": self.max_batch,
                "file": Path(self.path).name}


def _spec(name: str, meta, layout: str = "NCHW", dynamic_batch: bool = False) -> TensorSpec:
    code = int(meta.dtype())
    dims = tuple(int(d) for d in meta.sizes())
    if dynamic_batch and dims:
        dims = (None, *dims[1:])
    return TensorSpec(name, dims, _DTYPES.get(code, f"scalar type {code}"), layout)

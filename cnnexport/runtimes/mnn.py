"""MNN adapter (``.mnn``): one CPU session with its threads set, NCHW float input; the input is resized
to each batch's size (MNN plans its memory per shape, so a new batch size costs one resize). One copy
in, one copy out per call. Winograd convolutions off by default (see ``MnnModel``). No torch.

Only MNN's core module is imported: ``MNN.tools`` (its console tools' wrappers) imports a logger that
pip-installs a cloud logging SDK and sends usage logs, so cnnexport never touches it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .._quiet import quiet_fds
from ..errors import InvalidModelFileError, MissingDependencyError
from .base import RuntimeModel, TensorSpec

INSTALL = "MNN is not installed: pip install 'cnnexport[mnn]'"
WINOGRAD_MEMORY_LEVEL = 3  # MNN::Interpreter::HintMode; level 0 turns Winograd convolutions off
_mnn = None


def import_mnn():
    """The MNN module; its import prints the CPU's features on stdout, which is silenced here."""
    global _mnn
    if _mnn is None:
        try:
            with quiet_fds():
                import MNN
        except ImportError:
            raise MissingDependencyError(INSTALL) from None
        _mnn = MNN
    return _mnn


class MnnModel(RuntimeModel):
    runtime = "mnn"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, winograd: bool = False):
        """MNN's Winograd convolutions (its own default for 3x3 and 5x5 kernels) are off unless ``winograd``:
        their rounding leaves errors of 1e-4 to 3e-4 of the output scale on VGG and on resnet50 with trained
        statistics, over the 1e-4 every fp32 file is held to. Off, MNN computes plain fp32 convolutions, so
        what is verified is what is benchmarked and evaluated."""
        mnn = import_mnn()
        self.path, self.threads, self.winograd = str(path), threads, winograd
        with quiet_fds() as log:
            try:
                self.interpreter = mnn.Interpreter(self.path)
                if not winograd:
                    self.interpreter.setSessionHint(WINOGRAD_MEMORY_LEVEL, 0)
                self.session = self.interpreter.createSession({"numThread": int(threads or os.cpu_count() or 1)})
            except Exception as exc:
                log.append(str(exc))
                self.session = None
        if self.session is None:
            reason = next((line.strip() for line in reversed(log) if line.strip()), "not an MNN model")
            raise InvalidModelFileError(f"MNN cannot load '{Path(path).name}': {reason}")
        self._input = self.interpreter.getSessionInput(self.session)
        names_in = list(self.interpreter.getSessionInputAll(self.session))
        names_out = list(self.interpreter.getSessionOutputAll(self.session))
        chw = tuple(int(d) for d in self._input.getShape()[1:])
        self._shape = None
        self._inputs = [TensorSpec(names_in[0] if names_in else "input", (None, *chw), "float32", "NCHW")]
        self._outputs = [TensorSpec(n, (None,), "float32", "") for n in names_out[:1] or ["output"]]

    def _run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        x = arrays[0]
        if self._shape != x.shape:
            self._resize(x.shape)
        self._in_view[...] = x  # the one input copy; copyFrom moves it into MNN's own layout
        self._input.copyFrom(self._host_in)
        self.interpreter.runSession(self.session)
        if not self.interpreter.getSessionOutput(self.session).copyToHostTensor(self._host_out):
            # MNN copies nothing (and says so only by this flag) when the output tensor has lost its backend
            raise RuntimeError(f"MNN returned no output for '{Path(self.path).name}' (its output tensor has no backend)")
        return [np.array(self._out_view)]  # the one output copy: the view is reused by the next call

    def intermediates(self, x: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Through MNN's module API, which returns any named tensor of the file (its converter keeps the ONNX
        names), with the session's thread count and Winograd setting."""
        mnn = import_mnn()
        expr, nn = mnn.expr, mnn.nn
        with quiet_fds():
            held = set(expr.load_as_dict(self.path))
            wanted = [n for n in names if n in held]
            if not wanted:
                return {}
            manager = nn.create_runtime_manager(({"backend": 0, "numThread": int(self.threads or os.cpu_count() or 1)},))
            if not self.winograd:
                manager.set_hint(WINOGRAD_MEMORY_LEVEL, 0)
            module = nn.load_module_from_file(self.path, [self._inputs[0].name], wanted, runtime_manager=manager)
            values = module.forward([expr.const(np.ascontiguousarray(x, np.float32), list(x.shape), expr.NCHW)])
            return {n: np.array(expr.convert(v, expr.NCHW).read()).reshape(v.shape) for n, v in zip(wanted, values)}

    def _resize(self, shape: tuple[int, ...]) -> None:
        """Plan the session for ``shape`` and keep host tensors of that shape (their numpy views point into
        MNN's memory, valid while the tensors live)."""
        mnn = import_mnn()
        self.interpreter.resizeTensor(self._input, shape)
        self.interpreter.resizeSession(self.session)
        out_shape = tuple(self.interpreter.getSessionOutput(self.session).getShape())
        caffe, f32 = mnn.Tensor_DimensionType_Caffe, mnn.Halide_Type_Float
        self._host_in = mnn.Tensor(shape, f32, np.zeros(shape, np.float32), caffe)
        self._host_out = mnn.Tensor(out_shape, f32, np.zeros(out_shape, np.float32), caffe)
        self._in_view = self._host_in.getNumpyData()
        self._out_view = self._host_out.getNumpyData()
        self._shape = shape

    def describe(self) -> dict:
        mnn = import_mnn()
        return {"runtime": self.runtime, "version": mnn.version(), "device": "cpu", "threads": self.threads,
                "winograd": self.winograd, "file": Path(self.path).name}

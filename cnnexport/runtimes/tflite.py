"""TFLite/LiteRT adapter: ``ai-edge-litert`` (or ``tflite-runtime`` if that is what is installed), XNNPACK."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .._quiet import quiet_fds
from ..errors import InvalidModelFileError, MissingDependencyError, cause_line
from .base import RuntimeModel, TensorSpec


def import_interpreter():
    """LiteRT's Interpreter class and the package it came from."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        raise MissingDependencyError("the TFLite/LiteRT runtime is not installed: pip install ai-edge-litert "
                                     "(or 'cnnexport[tflite]' to convert as well)") from None


def guess_layout(shape: tuple) -> str:
    """NHWC when a 4-D input's last axis looks like channels and its second does not."""
    if len(shape) == 4 and shape[3] in (1, 3, 4) and (shape[1] or 0) > 4:
        return "NHWC"
    return "NCHW"


class TfliteModel(RuntimeModel):
    runtime = "tflite"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, xnnpack: bool = True,
                 layout: str | None = None):
        interpreter_cls, self.package = import_interpreter()
        self.path, self.threads, self.xnnpack = str(path), threads, xnnpack
        try:
            kwargs = {"model_path": self.path, "num_threads": threads}
            if not xnnpack:
                kwargs["experimental_op_resolver_type"] = _builtin_without_defaults()
            with quiet_fds():  # LiteRT logs "Created TensorFlow Lite XNNPACK delegate" on the process's stderr
                self.interpreter = interpreter_cls(**kwargs)
                self.interpreter.allocate_tensors()
        except Exception as exc:
            first = cause_line(exc)
            raise InvalidModelFileError(f"LiteRT cannot load '{path}': {first}") from None
        ins, outs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        self._in_index = [d["index"] for d in ins]
        self._out_index = [d["index"] for d in outs]
        # Fully integer models (int8 input/output): callers feed and get float; the scale and zero point
        # convert at the boundary, as a mobile app does.
        self._in_q = [_qparams(d) for d in ins]
        self._out_q = [_qparams(d) for d in outs]
        self.quantization = {"inputs": [d["quantization"] for d in ins], "outputs": [d["quantization"] for d in outs],
                             "io_dtype": np.dtype(ins[0]["dtype"]).name}
        self._inputs = [TensorSpec(d["name"], tuple(int(x) for x in d["shape"]),
                                   "float32" if q else np.dtype(d["dtype"]).name,
                                   layout or guess_layout(tuple(d["shape"]))) for d, q in zip(ins, self._in_q)]
        self._outputs = [TensorSpec(d["name"], tuple(int(x) for x in d["shape"]),
                                    "float32" if q else np.dtype(d["dtype"]).name, "")
                         for d, q in zip(outs, self._out_q)]

    def _run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self._invoke([_quantize(a, q) for a, q in zip(arrays, self._in_q)])

    def timed_call(self, x: np.ndarray):
        """A full-integer file is fed int8 quantized once, as an app's preprocessing hands it int8
        pixels; converting a float batch in numpy on every call cost 4% of mobilenet_v2's int8 call."""
        static = self.inputs[0].shape[0] or len(x)
        if len(self.inputs) != 1 or len(x) % static:
            return super().timed_call(x)  # run_batches names the problem
        self.inputs[0].check(x[:static])
        chunks = [_quantize(x[i:i + static], self._in_q[0]) for i in range(0, len(x), static)]
        if len(chunks) == 1:
            return lambda: self._invoke(chunks)[0]
        return lambda: np.concatenate([self._invoke([c])[0] for c in chunks])

    def _invoke(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run inputs already in the file's own dtype; integer outputs come back dequantized."""
        for index, array in zip(self._in_index, arrays):
            self.interpreter.set_tensor(index, np.ascontiguousarray(array))
        self.interpreter.invoke()
        outs = []
        for index, q in zip(self._out_index, self._out_q):
            out = self.interpreter.get_tensor(index).copy()
            outs.append(((out.astype(np.float32) - q[1]) * q[0]).astype(np.float32) if q else out)
        return outs

    def describe(self) -> dict:
        from importlib import metadata

        return {"runtime": self.runtime, "version": metadata.version(self.package), "package": self.package,
                "device": "cpu", "threads": self.threads, "delegate": "XNNPACK" if self.xnnpack else "none",
                "layout": self._inputs[0].layout, "io_dtype": self.quantization["io_dtype"],
                "io_quantization": {"input": self._in_q[0][:2] if self._in_q[0] else None,
                                    "output": self._out_q[0][:2] if self._out_q and self._out_q[0] else None},
                "file": Path(self.path).name}


def _quantize(array: np.ndarray, q: tuple[float, int, np.dtype] | None) -> np.ndarray:
    """A float array in the integer input's own dtype (unchanged for a float input)."""
    if not q:
        return array
    scale, zero, dtype = q
    info = np.iinfo(dtype)
    return np.clip(np.round(array / scale + zero), info.min, info.max).astype(dtype)


def _qparams(detail: dict) -> tuple[float, int, np.dtype] | None:
    """(scale, zero point, dtype) of an integer input/output tensor; None for float ones."""
    scale, zero = detail.get("quantization", (0.0, 0))
    dtype = np.dtype(detail["dtype"])
    return (float(scale), int(zero), dtype) if dtype.kind in "iu" and scale else None


def _builtin_without_defaults():
    from ai_edge_litert.interpreter import OpResolverType

    return OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES

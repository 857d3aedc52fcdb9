"""ONNX Runtime adapter (CPU EP; CUDA/TensorRT EPs when installed and asked for)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .._onnx_safety import check_external_data
from ..errors import InvalidModelFileError, MissingDependencyError, UsageError, cause_line
from .base import RuntimeModel, TensorSpec, require

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
}
_OPT_LEVELS = ("disable", "basic", "extended", "all")


def import_onnxruntime():
    return require("onnxruntime", "ONNX Runtime is not installed: pip install onnxruntime")


class OnnxRuntimeModel(RuntimeModel):
    runtime = "onnxruntime"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, optimization: str = "all",
                 providers: Sequence[str] = ("CPUExecutionProvider",), profile_prefix: str | None = None,
                 batch: int | None = None):
        """``profile_prefix``: record ONNX Runtime's per-node profile to files starting with it.
        ``batch``: compile a named dynamic batch axis (the first input's first dimension) static at this
        size, as a deployment at one batch size would; shape computations on it then fold away at load
        (a channel shuffle's Reshape, for one). Other batch sizes are refused afterwards."""
        ort = import_onnxruntime()
        if optimization not in _OPT_LEVELS:
            raise UsageError(f"unknown graph optimisation level '{optimization}'; choose one of {', '.join(_OPT_LEVELS)}")
        available = ort.get_available_providers()
        missing = [p for p in providers if p not in available]
        if missing:
            raise MissingDependencyError(
                f"ONNX Runtime here has no {', '.join(missing)} (available: {', '.join(available)}); "
                "install onnxruntime-gpu for CUDA/TensorRT"
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            # Spinning threads would steal cycles from other runtimes measured after this one.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        check_external_data(path)
        self.path = str(path)
        self.threads = threads
        self.optimization = optimization
        self.fixed_batch = None
        try:
            self.session = ort.InferenceSession(self.path, options, providers=list(providers))
            axis = self.session.get_inputs()[0].shape[0] if self.session.get_inputs()[0].shape else None
            if batch and isinstance(axis, str) and axis:
                options.add_free_dimension_override_by_name(axis, int(batch))
                self.session = ort.InferenceSession(self.path, options, providers=list(providers))
                self.fixed_batch = int(batch)
        except Exception as exc:
            raise InvalidModelFileError(f"ONNX Runtime cannot load '{path}': {cause_line(exc)}") from None
        self._inputs = [self._spec(i) for i in self.session.get_inputs()]
        self._outputs = [self._spec(o) for o in self.session.get_outputs()]

    @staticmethod
    def _spec(node) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else None for d in node.shape)
        return TensorSpec(node.name, shape, _ORT_TYPES.get(node.type, node.type), "NCHW")

    def _run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        feeds = {spec.name: np.ascontiguousarray(a) for spec, a in zip(self._inputs, arrays)}
        return self.session.run(None, feeds)

    def describe(self) -> dict:
        import onnxruntime

        return {
            "runtime": self.runtime,
            "version": onnxruntime.__version__,
            "device": "cuda" if any("CUDA" in p or "Tensorrt" in p for p in self.session.get_providers()) else "cpu",
            "threads": self.threads,
            "providers": self.session.get_providers(),
            "graph_optimization": self.optimization,
            "fixed_batch": self.fixed_batch,
        }

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
                 batch: int | None = None, ep: str | None = None):
        """``ep``: ``cuda`` (the CUDA execution provider) or ``tensorrt`` (the TensorRT one, falling back to
        CUDA for what it does not take; fp16 or int8 kernels as the file's precision allows, its engines
        cached beside the file); sets ``providers``. On a GPU, ``timed_call`` binds device-resident input
        and output (I/O binding), so host copies are not timed.
        ``profile_prefix``: record ONNX Runtime's per-node profile to files starting with it.
        ``batch``: compile a named dynamic batch axis (the first input's first dimension) static at this
        size, as a deployment at one batch size would; shape computations on it then fold away at load
        (a channel shuffle's Reshape, for one). Other batch sizes are refused afterwards."""
        ort = import_onnxruntime()
        if ep is not None:
            providers = gpu_providers(ep, path)
        if optimization not in _OPT_LEVELS:
            raise UsageError(f"unknown graph optimisation level '{optimization}'; choose one of {', '.join(_OPT_LEVELS)}")
        available = ort.get_available_providers()
        missing = [p for p in (p if isinstance(p, str) else p[0] for p in providers) if p not in available]
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

    @property
    def on_gpu(self) -> bool:
        return any("CUDA" in p or "Tensorrt" in p for p in self.session.get_providers())

    def timed_call(self, x: np.ndarray):
        """On a GPU: the input bound on the device once, the outputs allocated there by the first call and
        bound for the rest (I/O binding), so each call times the graph alone; on a CPU, a plain run."""
        if not self.on_gpu:
            return super().timed_call(x)
        ort = import_onnxruntime()
        x_device = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(self._as_input_types([x])[0]), "cuda", 0)
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self._inputs[0].name, x_device)
        for spec in self._outputs:
            binding.bind_output(spec.name, "cuda")
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        binding.clear_binding_outputs()
        for spec, value in zip(self._outputs, outputs):
            binding.bind_ortvalue_output(spec.name, value)

        def call():
            self.session.run_with_iobinding(binding)  # returns when the device is done
            return x_device  # keeps the bound input alive with the call

        return call

    def describe(self) -> dict:
        import onnxruntime

        facts = {}
        if self.on_gpu:
            from .cuda import row_facts

            facts = row_facts()
            if "TensorrtExecutionProvider" in self.session.get_providers():
                try:
                    import tensorrt

                    facts["tensorrt"] = tensorrt.__version__
                except ImportError:  # the EP loads TensorRT's libraries without the Python package
                    pass
        return {
            "runtime": self.runtime,
            "version": onnxruntime.__version__,
            "device": "cuda" if self.on_gpu else "cpu",
            "threads": self.threads,
            "providers": self.session.get_providers(),
            "graph_optimization": self.optimization,
            "fixed_batch": self.fixed_batch,
            **facts,
        }


def gpu_providers(ep: str, path: str | os.PathLike) -> list:
    """The provider list for ``ep`` (cuda or tensorrt), with the TensorRT EP's precision from the file's
    name (``m.fp16.onnx``, ``m.int8.onnx``) and its engine cache beside the file."""
    if ep == "cuda":
        return ["CUDAExecutionProvider"]
    if ep != "tensorrt":
        raise UsageError(f"unknown ONNX Runtime execution provider '{ep}'; choose cuda or tensorrt")
    name = os.path.basename(str(path))
    cache = os.path.join(os.path.dirname(os.path.abspath(str(path))), ".trt-ep-cache")
    options = {"trt_fp16_enable": ".fp16." in name, "trt_int8_enable": ".int8" in name,
               "trt_engine_cache_enable": True, "trt_engine_cache_path": cache, "trt_timing_cache_enable": True,
               "trt_timing_cache_path": cache}
    return [("TensorrtExecutionProvider", options), "CUDAExecutionProvider"]


def gemm_call(precision: str, a: np.ndarray, b: np.ndarray, threads: int):
    """A timed call of ONNX Runtime's own GEMM on ``threads``: fp32 ``MatMul``, or int8 u8 x s8
    ``MatMulInteger`` (the kernel its QDQ convolutions run), for the roofline's compute ceilings."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    op = "MatMulInteger" if precision == "int8" else "MatMul"
    elem = {np.float32: TensorProto.FLOAT, np.uint8: TensorProto.UINT8}[a.dtype.type]
    out = TensorProto.FLOAT if op == "MatMul" else TensorProto.INT32
    graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("a", elem, list(a.shape))],
                              [helper.make_tensor_value_info("y", out, [a.shape[0], b.shape[1]])],
                              [numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"a": a})


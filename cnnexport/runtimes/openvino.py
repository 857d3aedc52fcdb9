"""OpenVINO adapter: IR (.xml + .bin) or ONNX files; CPU (GPU when present), LATENCY/THROUGHPUT hint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InvalidModelFileError, MissingDependencyError, UsageError, cause_line
from .base import RuntimeDefault, RuntimeModel, TensorSpec, dims_text, require

_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


def import_openvino():
    return require("openvino", "OpenVINO is not installed: pip install 'cnnexport[openvino]'")


CONFIG_SUFFIX = ".config.json"  # beside <model>.xml: benchmark_app's -load_config format


def config_path(xml: str | os.PathLike) -> Path:
    """The compile settings that travel with an IR: ``m.xml`` -> ``m.config.json``."""
    xml = Path(xml)
    return xml.with_name((xml.name[:-4] if xml.name.lower().endswith(".xml") else xml.name) + CONFIG_SUFFIX)


def verified_precision(xml: str | os.PathLike) -> str | None:
    """The CPU inference precision the IR was verified at, from its config file (None without one)."""
    import json

    try:
        config = json.loads(config_path(xml).read_text())
        return str(config["CPU"]["INFERENCE_PRECISION_HINT"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin can compute in bf16 here (its BF16 optimisation capability)."""
    return "BF16" in import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def cpu_default_precision() -> str:
    """The precision OpenVINO's CPU plugin computes in by default here (bf16 on AMX or AVX512-BF16 CPUs)."""
    return import_openvino().Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


def cpu_default_note() -> str | None:
    """A line for bench when OpenVINO's own CPU default is not the f32 its rows ran at."""
    default = cpu_default_precision()
    if default == "f32":
        return None
    return (f"openvino rows ran at the precision each file's config names (f32; bf16 for a .bf16.xml), the one verify "
            f"checks; OpenVINO's own default on this CPU is {default} (core.compile_model(path, \"CPU\") without a "
            "hint): faster, other numbers for an f32 file (verify prints its error)")


class OpenVinoModel(RuntimeModel):
    runtime = "openvino"

    def __init__(self, path: str | os.PathLike, *, device: str = "CPU", threads: int | None = None,
                 hint: str = "LATENCY", precision: str | None = None, input_shape: tuple[int, ...] | None = None,
                 perf_counts: bool = False, batch: int | None = None):
        """``input_shape`` fills the dimensions the file leaves dynamic (an IR from ``ov.convert_model``)
        so that the model compiles static, as ``benchmark_app -shape`` does; its fixed ones must match.
        ``perf_counts``: keep OpenVINO's per-node performance counters (``request.profiling_info``).
        ``batch``: compile a dynamic batch axis (the first input's first dimension) static at this size;
        a dynamic one costs 5-10% on small networks (shape inference and allocation on every call).
        ``precision``: the CPU's inference precision; default: the one the IR's config file records (what it
        was verified at), else f32."""
        ov = import_openvino()
        if hint.upper() not in _HINTS:
            raise UsageError(f"unknown OpenVINO performance hint '{hint}'; choose one of {', '.join(_HINTS)}")
        core = ov.Core()
        device = device.upper()
        if device not in core.available_devices and device != "AUTO":
            raise MissingDependencyError(f"OpenVINO device {device} is not available here "
                                         f"(available: {', '.join(core.available_devices)})")
        precision = precision or verified_precision(path) or "f32"
        config = {"PERFORMANCE_HINT": hint.upper()}
        if perf_counts:
            config["PERF_COUNT"] = True
        if device == "CPU":
            # Keep the verified precision: on CPUs with bf16/AMX OpenVINO would otherwise lower f32 to bf16.
            config["INFERENCE_PRECISION_HINT"] = precision
            if threads:
                config["INFERENCE_NUM_THREADS"] = int(threads)
        self.path, self.device, self.threads, self.hint = str(path), device, threads, hint.upper()
        self.precision = precision
        try:
            model = core.read_model(self.path)
            if input_shape is not None:
                _fill_dynamic_dims(ov, model, input_shape, Path(self.path).name)
            self.fixed_batch = _fix_batch(ov, model, batch) if batch else None
            self.compiled = core.compile_model(model, device, config)
        except UsageError:
            raise
        except Exception as exc:
            first = cause_line(exc)
            raise InvalidModelFileError(f"OpenVINO cannot load '{path}': {first}") from None
        self.request = self.compiled.create_infer_request()
        self._inputs = [self._spec(p) for p in self.compiled.inputs]
        self._outputs = [self._spec(p) for p in self.compiled.outputs]

    @staticmethod
    def _spec(port) -> TensorSpec:
        shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
        name = next(iter(port.get_names()), "") if port.get_names() else ""
        return TensorSpec(name, shape, np.dtype(port.get_element_type().to_dtype()).name, "NCHW")

    def _run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        result = self.request.infer([np.ascontiguousarray(a) for a in arrays])
        return [np.array(result[port]) for port in self.compiled.outputs]

    def intermediates(self, x: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The IR compiled again with the held names as extra outputs, at the verified precision (OpenVINO's
        ONNX frontend keeps the ONNX names)."""
        ov = import_openvino()
        core = ov.Core()
        model = core.read_model(self.path)
        held = {n for op in model.get_ops() for port in op.outputs() for n in port.get_names()}
        wanted = [n for n in names if n in held]
        if not wanted:
            return {}
        model.add_outputs(wanted)
        config = {"INFERENCE_PRECISION_HINT": self.precision} if self.device == "CPU" else {}
        compiled = core.compile_model(model, self.device, config)
        result = compiled.create_infer_request().infer([np.ascontiguousarray(x)])
        return {n: np.array(result[compiled.output(n)]) for n in wanted}

    def runtime_default(self) -> RuntimeDefault | None:
        """OpenVINO's CPU plugin defaults to bf16 on CPUs with AMX-BF16 or AVX512-BF16: what
        ``core.compile_model(path, "CPU")`` runs there, while cnnexport compiles (and verifies) at f32."""
        if self.device != "CPU":
            return None
        default = cpu_default_precision()
        if default == self.precision:
            return None
        path, threads, batch = self.path, self.threads, self.fixed_batch
        return RuntimeDefault(default, self.precision,
                              f'core.compile_model(path, "CPU", {{"INFERENCE_PRECISION_HINT": "{self.precision}"}})',
                              lambda: OpenVinoModel(path, threads=threads, precision=default, batch=batch))

    def describe(self) -> dict:
        import openvino

        return {"runtime": self.runtime, "version": openvino.__version__, "device": self.device.lower(),
                "threads": self.threads, "hint": self.hint, "file": Path(self.path).name,
                "fixed_batch": self.fixed_batch}


def _fix_batch(ov, model, batch: int) -> int | None:
    """Set the first input's dynamic first dimension to ``batch``; None when it was not dynamic."""
    dims = list(model.inputs[0].get_partial_shape())
    if not dims or dims[0].is_static:
        return None
    model.reshape({model.inputs[0]: ov.PartialShape([ov.Dimension(batch), *dims[1:]])})
    return int(batch)


def _fill_dynamic_dims(ov, model, input_shape: tuple[int | None, ...], name: str) -> None:
    """Reshape the first input's dynamic dimensions to ``input_shape`` (None: keep the file's)."""
    port = model.inputs[0]
    dims = list(port.get_partial_shape())
    if len(dims) != len(input_shape) or any(d.is_static and s is not None and d.get_length() != s
                                            for d, s in zip(dims, input_shape)):
        have = "x".join(str(d.get_length()) if d.is_static else "?" for d in dims)
        raise UsageError(f"'{name}' takes input {have}; "
                         f"{dims_text(input_shape)} does not fit it")
    if any(d.is_dynamic for d in dims):
        model.reshape({port: ov.PartialShape([d if d.is_static else s if s is not None else -1
                                              for d, s in zip(dims, input_shape)])})


def gemm_call(precision: str, a: np.ndarray, b: np.ndarray, threads: int):
    """A timed call of OpenVINO's own GEMM on ``threads``, for the roofline's compute ceilings: fp32, a MatMul
    model (f32 hint); int8, ``INT8_CHAIN`` int8 convolutions in a row, as its int8 models run them (u8
    activations stay u8 between layers; one layer alone spends most of its call converting fp32 in and out).
    The call's ``gemms`` says how many M x K x N GEMMs one call computes."""
    import openvino as ov
    from openvino import opset13 as ops

    if precision == "int8":
        model, a = _int8_conv_chain(a, b)
    else:
        p = ops.parameter(list(a.shape), np.float32)
        model = ov.Model([ops.matmul(p, ops.constant(b), False, False)], [p])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                      "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()

    def call():
        return request.infer({0: a})
    call.gemms = INT8_CHAIN if precision == "int8" else 1
    return call


#: int8 layers in the timed chain of OpenVINO's int8 GEMM
INT8_CHAIN = 8


def _int8_conv_chain(a: np.ndarray, b: np.ndarray):
    """The M x K x N GEMM as OpenVINO's int8 kernels run it, ``INT8_CHAIN`` times in a row: a 3x3 convolution of
    N channels over M pixels where K = 9 N (VGG's layers), else 1x1 convolutions K -> N and back (the second
    with a weight of its own, the same MACs); fake-quantized as NNCF writes int8 models. The model and its
    input (``a``'s values, pixels last)."""
    import math

    import openvino as ov
    from openvino import opset13 as ops

    m, k = a.shape
    n = b.shape[1]
    side = math.isqrt(m)
    pixels = [side, side] if side * side == m else [1, m]
    three = k == 9 * n and side * side == m
    channels = n if three else k

    def const(v):
        return ops.constant(np.array(v, np.float32))

    def fake_quantize(x):
        return ops.fake_quantize(x, const(0), const(255), const(0), const(255), 256)

    p = ops.parameter([1, channels, *pixels], np.float32)
    x = fake_quantize(p)
    rng = np.random.default_rng(1)
    for i in range(INT8_CHAIN):
        if three:  # K = 9 N: b's rows are (input channel, ky, kx)
            w = b.T.reshape(n, n, 3, 3)
        else:
            w = (b.T if i % 2 == 0 else rng.integers(-127, 128, (k, n), dtype=np.int8))[:, :, None, None]
        weight = ops.multiply(ops.convert(ops.constant(np.ascontiguousarray(w)), np.float32), const(1e-3))
        pad = [1, 1] if three else [0, 0]
        x = fake_quantize(ops.relu(ops.convolution(x, weight, [1, 1], pad, pad, [1, 1])))
    # C order: a transposed view stays strided through astype, and OpenVINO then copies it on every call
    image = np.ascontiguousarray((a[:, :channels] if three else a).T.reshape(1, channels, *pixels), np.float32)
    return ov.Model([x], [p]), image


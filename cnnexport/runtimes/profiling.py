"""Per-node timings from the runtimes' own profilers: ONNX Runtime's profiling (its JSON trace) and
OpenVINO's performance counters. Each node's time is the median over the timed runs. LiteRT's
Python interpreter, ncnn, ExecuTorch and MNN expose no per-op profiler here. No torch."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError

PROFILED_RUNTIMES = ("onnxruntime", "openvino")
READS_ONNX = ("onnxruntime", "openvino")  # runtimes that load an .onnx file directly


def profiled_file(runtime: str, path: Path, graph: Path) -> Path:
    """The file ``runtime``'s profiler times for ``path``: the file itself when the runtime loads it,
    else ``graph`` (the ONNX file the other was made from)."""
    from . import runtime_for

    return path if runtime_for(path) == runtime or (runtime in READS_ONNX and path.suffix == ".onnx") else graph


@dataclass
class NodeTime:
    name: str   # the runtime's node name (often the ONNX node's, or a fused node named after an output)
    op: str     # the runtime's kernel or layer type
    ms: float   # median over the timed runs


@dataclass
class LayerTimes:
    runtime: str
    threads: int | None
    runs: int
    nodes: list[NodeTime] = field(default_factory=list)

    @property
    def total_ms(self) -> float:
        return sum(n.ms for n in self.nodes)


def layer_times(path: str | os.PathLike, runtime: str, *, threads: int | None = None, runs: int = 20,
                warmup: int = 5, input_shape: tuple[int, ...] | None = None) -> LayerTimes:
    """Time every node of ``path`` on ``runtime`` with its own profiler, ``runs`` runs after ``warmup``,
    on a fixed random input of ``input_shape`` (default: the file's, dynamic dimensions 1)."""
    if runtime not in PROFILED_RUNTIMES:
        raise UsageError(f"per-layer timings come from ONNX Runtime's or OpenVINO's profiler, not {runtime}; "
                         "choose --runtime ort or --runtime openvino")
    if runs < 1 or warmup < 0:
        raise UsageError("runs must be >= 1 and warm-up runs >= 0")
    if runtime == "onnxruntime":
        return _onnxruntime(path, threads, runs, warmup, input_shape)
    return _openvino(path, threads, runs, warmup, input_shape)


def _input(model, input_shape):
    spec = model.inputs[0]
    shape = input_shape or tuple(d if d is not None else 1 for d in spec.shape)
    return np.random.default_rng(0).standard_normal(shape).astype(spec.dtype if spec.dtype != "uint8" else "float32")


def _onnxruntime(path, threads, runs, warmup, input_shape) -> LayerTimes:
    from .ort import OnnxRuntimeModel

    with tempfile.TemporaryDirectory(prefix="cnnexport-ortprof-") as tmp:
        model = OnnxRuntimeModel(path, threads=threads, profile_prefix=str(Path(tmp) / "profile"))
        x = _input(model, input_shape)
        for _ in range(warmup + runs):
            model.run(x)
        trace = json.loads(Path(model.session.end_profiling()).read_text())
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in trace
                     if e.get("cat") == "Session" and e.get("name") == "model_run")[-runs:]
    per_node: dict[tuple[str, str], list[float]] = {}
    for e in trace:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if not any(start <= e["ts"] <= end for start, end in windows):
            continue  # a warm-up run
        key = (e["name"][: -len("_kernel_time")], e.get("args", {}).get("op_name", ""))
        per_node.setdefault(key, []).append(e["dur"] / 1e3)
    nodes = [NodeTime(name, op, _median_per_run(times, runs)) for (name, op), times in per_node.items()]
    return LayerTimes("onnxruntime", threads, runs, nodes)


def _median_per_run(times: list[float], runs: int) -> float:
    """A node that ran k times per run: the median of its per-run sums."""
    per_run = max(1, round(len(times) / runs))
    sums = [sum(times[i:i + per_run]) for i in range(0, len(times), per_run)]
    return statistics.median(sums)


def _openvino(path, threads, runs, warmup, input_shape) -> LayerTimes:
    from .openvino import OpenVinoModel

    model = OpenVinoModel(path, threads=threads, perf_counts=True, input_shape=input_shape)
    x = _input(model, input_shape)
    for _ in range(warmup):
        model.run(x)
    per_node: dict[tuple[str, str], list[float]] = {}
    for _ in range(runs):
        model.run(x)
        for info in model.request.profiling_info:
            if str(info.status).endswith("EXECUTED") and not str(info.status).endswith("NOT_EXECUTED"):
                key = (info.node_name, f"{info.node_type} ({info.exec_type})")
                per_node.setdefault(key, []).append(info.real_time.total_seconds() * 1e3)
    nodes = [NodeTime(name, op, statistics.median(times)) for (name, op), times in per_node.items()]
    return LayerTimes("openvino", threads, runs, nodes)

"""fp16 ONNX: weights and activations in half precision (onnxconverter-common's float16 pass), with
fp32 inputs and outputs by default so callers need not change, and what overflows in fp16 kept in
fp32 between Cast nodes: the ops in ``KEEP_FP32`` and every node of the modules in
``KEEP_FP32_MODULES`` (PyTorch exports LocalResponseNorm as a dozen plain ops, found by their scope).

On a CPU, ONNX Runtime has few fp16 kernels and computes the rest in fp32 between Casts it inserts
itself: the file is for GPUs (CUDA and TensorRT execution providers, TensorRT engines), checked on the
CPU here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ...._atomic import atomic_path
from ....errors import ExportError, MissingDependencyError, cause_line

FP16_MAX = 65504.0
_SQUARES = "sums squares of activations: an activation above 256 squares past fp16's largest value, 65504"
_EXP = "exponentials: exp(x) passes 65504 for x > 11"
#: ONNX ops left in fp32, and why.
KEEP_FP32 = {"LRN": _SQUARES, "Softmax": _EXP, "LogSoftmax": _EXP, "ReduceSumSquare": _SQUARES,
             "ReduceL2": _SQUARES, "ReduceLogSumExp": _EXP}
#: PyTorch modules whose exported nodes are left in fp32, and why.
KEEP_FP32_MODULES = {"LocalResponseNorm": _SQUARES, "Softmax": _EXP, "LogSoftmax": _EXP}
_PASS_THROUGH = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose", "Identity"}


def fp32_scopes(module) -> dict[str, tuple[str, str]]:
    """ONNX scope prefix (``/features/features.2/``, as the TorchScript exporter names nodes) ->
    (module path, type) of every module of ``module`` that ``KEEP_FP32_MODULES`` names."""
    scopes = {}
    for path, m in module.named_modules():
        if path and type(m).__name__ in KEEP_FP32_MODULES:
            parts = path.split(".")
            scopes["/" + "/".join(".".join(parts[:i + 1]) for i in range(len(parts))) + "/"] = (path, type(m).__name__)
    return scopes


def to_fp16_onnx(src: Path, dst: Path, *, fp16_io: bool = False,
                 scopes: dict[str, tuple[str, str]] | None = None) -> dict:
    """Write ``dst``, the fp16 copy of the ONNX file ``src``, with the ``KEEP_FP32`` ops and the nodes
    under ``scopes`` (see ``fp32_scopes``) in fp32; returns what was kept in fp32 and why, and the I/O type."""
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError:
        raise MissingDependencyError("fp16 ONNX needs onnxconverter-common: pip install onnxconverter-common") from None
    model = onnx.load(str(src))
    kept = [{"kept": op, "kind": "op", "nodes": n, "why": KEEP_FP32[op]}
            for op in sorted(KEEP_FP32) if (n := sum(node.op_type == op for node in model.graph.node))]
    blocked: set[str] = set()
    for prefix, (path, kind) in (scopes or {}).items():
        names = {n.name for n in model.graph.node if n.name.startswith(prefix) and n.op_type != "Constant"}
        blocked |= names
        kept.append({"kept": path, "kind": kind, "nodes": len(names), "why": KEEP_FP32_MODULES[kind]})
    blocked = _with_pass_through(model.graph, blocked)
    try:
        with warnings.catch_warnings():  # one warning per weight rounded to fp16's smallest subnormal
            warnings.simplefilter("ignore")
            # max_finite_val: the converter's default (1e4) would clip larger weights well inside fp16's range
            half = float16.convert_float_to_float16(
                model, keep_io_types=not fp16_io, max_finite_val=FP16_MAX, min_positive_val=2 ** -24,
                op_block_list=float16.DEFAULT_OP_BLOCK_LIST + list(KEEP_FP32), node_block_list=sorted(blocked))
    except Exception as exc:
        raise ExportError(f"fp16 ONNX conversion failed: {cause_line(exc)}") from None
    with atomic_path(Path(dst)) as tmp:
        onnx.save(half, str(tmp))
    return {"io": "fp16" if fp16_io else "fp32", "kept_fp32": kept, "converter": "onnxconverter-common float16"}


def _with_pass_through(graph, blocked: set[str]) -> set[str]:
    """``blocked`` plus the shape-only nodes between two blocked ones (a Reshape the simplifier renamed out
    of its module's scope), so no fp32 value is rounded to fp16 and back on its way."""
    producer = {o: n.name for n in graph.node for o in n.output}
    consumers: dict[str, list[str]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    blocked = set(blocked)
    changed = True
    while changed:
        changed = False
        for n in graph.node:
            if n.name in blocked or n.op_type not in _PASS_THROUGH or not n.input:
                continue
            users = [u for o in n.output for u in consumers.get(o, [])]
            if producer.get(n.input[0]) in blocked and users and all(u in blocked for u in users):
                blocked.add(n.name)
                changed = True
    return blocked

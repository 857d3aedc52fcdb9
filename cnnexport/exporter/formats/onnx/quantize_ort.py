"""ONNX Runtime static int8 (QDQ) with real calibration data; no torch.

Per-channel weights by default, ``quant_pre_process`` first, MinMax/Entropy/Percentile
calibration, and ``reduce_range`` switched on where the CPU would otherwise saturate: x86 with
AVX2 but no VNNI multiplies u8 x s8 pairs with ``vpmaddubsw``, whose 16-bit sums can overflow;
7-bit weights avoid that.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from ...._atomic import atomic_path
from ....errors import CalibrationError, ExportError, UsageError, disk_full, first_line
from ...verify import int8_figures
from .mixed_precision import COMPUTE_OPS, match_nodes, module_groups, search_float_groups

METHODS = ("minmax", "entropy", "percentile")
# ONNX Runtime's entropy calibrator defaults to 128 histogram bins and 128 quantized bins: its search
# for the threshold of least KL divergence then has one candidate, the whole range, and the file is
# byte-identical to minmax's. TensorRT's recipe (2048 bins into 128) gives it 961 thresholds to choose
# from. quantize_static does not pass the bin counts on, so the ranges are computed here and handed to
# it through its calibration cache.
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 2048, 128


def _entropy_ranges(model_path: Path, calibration: np.ndarray, input_name: str, cache: Path, tmp: Path) -> None:
    """Entropy calibration with enough bins, written where quantize_static reads its cached ranges."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    calibrator = create_calibrator(model_path, list(set(QLinearOpsRegistry) | set(QDQRegistry)),
                                   augmented_model_path=str(tmp / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Entropy,
                                   extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS,
                                                  "symmetric": False})
    from ....calib.readers import OrtCalibrationReader

    calibrator.collect_data(OrtCalibrationReader(calibration, input_name))
    save_tensors_data(calibrator.compute_data(), cache, smooth_quant=False)
KEEP_FLOAT = ("first", "last", "depthwise", "auto")


def decide_reduce_range(isa: dict, machine: str = "x86_64") -> tuple[bool, str]:
    """Whether to quantize weights to 7 bits, and why, from the CPU's ISA flags."""
    vnni = isa.get("avx512_vnni") or isa.get("avx_vnni")
    if machine not in X86:
        return False, f"{machine}: no u8 x s8 saturation issue"
    if vnni:
        return False, "x86 with VNNI: int8 dot products accumulate in 32 bits"
    if isa.get("avx2") or isa.get("avx512f"):
        return True, ("x86 with AVX2/AVX-512 but no VNNI: vpmaddubsw's 16-bit sums can saturate; "
                      "weights quantized to 7 bits (reduce_range)")
    return False, "x86 without AVX2: reference kernels, no saturation"


X86 = ("x86_64", "AMD64", "i386", "i686")


def decide_activation_type(machine: str = "x86_64") -> tuple[str, str]:
    """uint8 or int8 activations, and why: ONNX Runtime's x86 int8 kernels (MLAS) multiply u8
    activations by s8 weights; with s8 activations its QDQ graphs fall back to slower paths (measured
    here on resnet50: s8 activations 1.2x faster than fp32, u8 activations 3x)."""
    if machine in X86:
        return "uint8", "x86: MLAS's fast int8 kernels take u8 activations x s8 weights"
    return "int8", f"{machine}: s8 x s8 kernels (ARM dot-product instructions)"


def _first_and_last(model) -> dict[str, str]:
    compute = [n for n in model.graph.node if n.op_type in COMPUTE_OPS]
    if not compute:
        return {}
    return {"first": compute[0].name, "last": compute[-1].name}


def depthwise_convs(model) -> list[str]:
    """The depthwise convolutions' node names: group > 1 and one input channel per group (weight C x 1 x k x k)."""
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    out = []
    for node in model.graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        dims = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if group > 1 and dims and len(dims) >= 2 and dims[1] == 1 and dims[0] == group:
            out.append(node.name)
    return out


def _ensure_names(model) -> None:
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def quantize_onnx(src: str | os.PathLike, dst: str | os.PathLike, calibration: np.ndarray, *,
                  method: str = "minmax", per_channel: bool = True, reduce_range: bool | None = None,
                  keep_float: tuple[str, ...] = (), min_cosine: float = 0.99, isa: dict | None = None,
                  machine: str | None = None, max_drop: float | None = None,
                  labels: np.ndarray | None = None) -> dict:
    """Write the int8 QDQ model ``dst``; returns what was done (for the report).

    ``keep_float`` leaves nodes in float: ``first`` / ``last`` (the first and last Conv/Gemm/MatMul),
    ``depthwise`` (every depthwise convolution), node-name globs (``/layer1/*``), or ``auto``: the fewest modules, found by measuring, that bring
    the mean logits cosine with the float model on the calibration samples to ``min_cosine``; with
    ``max_drop`` and the calibration samples' ``labels``, the fewest that keep their top-1 accuracy
    within ``max_drop`` points of the float model's."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ....machine import cpu_facts
    from ....calib.readers import OrtCalibrationReader

    if method not in METHODS:
        raise UsageError(f"unknown calibration method '{method}'; choose one of {', '.join(METHODS)}")
    if len(calibration) == 0:
        raise CalibrationError("the calibration set is empty")
    if "auto" in keep_float and not -1 <= min_cosine <= 1:
        raise UsageError(f"the --keep-float auto target must be a cosine in [-1, 1], got {min_cosine}")
    facts = cpu_facts()
    isa = facts["isa"] if isa is None else isa
    auto, reason = decide_reduce_range(isa, machine or facts["machine"])
    if reduce_range is None:
        reduce_range = auto
    else:
        reason = f"set by the caller ({'on' if reduce_range else 'off'}); the CPU check says: {reason}"
    activation, activation_reason = decide_activation_type(machine or facts["machine"])
    activation_q = QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8
    calibration = calibration.astype(np.float32)
    search = None
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:
            pre = Path(src)  # pre-processing is an optimisation; quantize the file as it is
        model = onnx.load(str(pre))
        _ensure_names(model)
        named = Path(tmp) / "named.onnx"
        onnx.save(model, str(named))
        ends = _first_and_last(model)
        names = [n.name for n in model.graph.node]
        exclude = [ends[k] for k in keep_float if k in ends] + (depthwise_convs(model) if "depthwise" in keep_float else [])
        patterns = [k for k in keep_float if k not in KEEP_FLOAT]
        if patterns:
            exclude = list(dict.fromkeys(exclude + match_nodes(patterns, names)))
        input_name = model.graph.input[0].name
        calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                     "percentile": CalibrationMethod.Percentile}[method]
        # Calibrate once and let the auto search reuse the ranges, where this ONNX Runtime can cache them.
        cache = ({"calibration_cache_path": str(Path(tmp) / "ranges.json")}
                 if "calibration_cache_path" in inspect.signature(quantize_static).parameters else {})
        if method == "entropy":
            if not cache:
                raise ExportError("--calib-method entropy needs ONNX Runtime's calibration cache (onnxruntime>=1.22); "
                                  "upgrade it or use minmax or percentile")
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                _entropy_ranges(named, calibration, input_name, Path(cache["calibration_cache_path"]), Path(tmp))

        def quantize(out: Path, nodes: list[str]) -> None:
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    quantize_static(str(named), str(out), OrtCalibrationReader(calibration, input_name),
                                    quant_format=QuantFormat.QDQ, per_channel=per_channel,
                                    reduce_range=reduce_range, activation_type=activation_q,
                                    weight_type=QuantType.QInt8, nodes_to_exclude=sorted(set(nodes)) or None,
                                    calibrate_method=calibrate, **cache,
                                    extra_options={"CalibMovingAverage": False, "CalibTensorRangeSymmetric": False})
            except Exception as exc:
                first = first_line(exc)
                raise (disk_full(exc) or ExportError(f"ONNX Runtime quantization failed: {first}")) from None

        if "auto" in keep_float:
            search = _search_keep_float(named, model, calibration, quantize, exclude, min_cosine, Path(tmp),
                                        max_drop, labels)
            exclude = exclude + search["nodes"]
        with atomic_path(dst) as out:
            quantize(out, exclude)
            q = onnx.load(str(out))
    ops = [n.op_type for n in q.graph.node]
    compute = [n.name for n in model.graph.node if n.op_type in COMPUTE_OPS]
    excluded = set(exclude)
    info = {"runtime": "onnxruntime", "format": "QDQ", "method": method, "per_channel": per_channel,
            **({"entropy_bins": [ENTROPY_BINS, ENTROPY_QUANTIZED_BINS]} if method == "entropy" else {}),
            "reduce_range": reduce_range, "reduce_range_reason": reason, "activation_type": activation,
            "activation_type_reason": activation_reason, "keep_float": list(keep_float),
            "excluded_nodes": exclude, "float_compute_nodes": sum(1 for n in compute if n in excluded),
            "compute_nodes": len(compute), "calibration_samples": int(len(calibration)),
            "quantize_nodes": ops.count("QuantizeLinear"), "dequantize_nodes": ops.count("DequantizeLinear")}
    if search is not None:
        info["keep_float_search"] = {k: v for k, v in search.items() if k != "nodes"}
    return info


AUTO_TUNE_SAMPLES = 64
#: ``--keep-float auto`` aims this fraction of the remaining distance to 1 above its target: samples the
#: ranges were calibrated on score a little higher than unseen ones (by 0.0003-0.0007 on resnet50).
AUTO_MARGIN = 0.1


def auto_aim(min_cosine: float) -> float:
    """The cosine ``--keep-float auto`` aims at on calibration samples for a target of ``min_cosine``."""
    return min_cosine + AUTO_MARGIN * (1 - min_cosine)


def _search_keep_float(named: Path, model, calibration: np.ndarray, quantize, fixed: list[str],
                       min_cosine: float, tmp: Path, max_drop: float | None = None,
                       labels: np.ndarray | None = None) -> dict:
    """``--keep-float auto``: modules kept in float, chosen by measuring int8 models on calibration samples
    (never on the evaluation samples, which stay held out). With ``max_drop`` and labels it measures the
    top-1 drop on every calibration sample (a cosine needs fewer), else the mean cosine on 64."""
    from ....runtimes.ort import OnnxRuntimeModel

    by_accuracy = max_drop is not None and labels is not None
    tune = calibration if by_accuracy else calibration[:AUTO_TUNE_SAMPLES]
    reference = OnnxRuntimeModel(named).run_batches(tune)
    trial = tmp / "trial.onnx"

    def score(nodes: list[str]) -> float:
        quantize(trial, fixed + nodes)
        fig = int8_figures(reference, OnnxRuntimeModel(trial).run_batches(tune), labels if by_accuracy else None)
        return -fig["accuracy_drop_points"] if by_accuracy else fig["cosine_mean"]

    kept = set(fixed)
    groups = module_groups([(n.name, n.op_type) for n in model.graph.node if n.name not in kept])
    aim = -max_drop if by_accuracy else auto_aim(min_cosine)
    result = search_float_groups(groups, score, aim)
    if by_accuracy:  # the search maximises a score: minus the drop, in points
        result.update(metric="top1_drop_points", target=max_drop, aim=max_drop, drop_points=-result.pop("cosine"),
                      baseline=-result["baseline"], steps=[{**st, "drop_points": -st.pop("cosine")}
                                                            for st in result["steps"]])
    else:
        result.update(metric="cosine", target=min_cosine, aim=aim)
    result["tune_samples"] = int(len(tune))
    return result


def _op_kind(node, graph) -> str:
    """The op type, with depthwise / grouped convolutions named as such (where int8 usually hurts)."""
    if node.op_type != "Conv":
        return node.op_type
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    if group == 1:
        return "Conv"
    weight = next((i for i in graph.initializer if i.name == node.input[1]), None)
    depthwise = weight is not None and weight.dims[1] == 1
    return f"Conv {'depthwise' if depthwise else f'group={group}'}"


def _clamp_bounds(graph) -> dict[str, tuple[float, float]]:
    """Output tensor -> the range its Relu or Clip clamps to (Clip's bounds from attributes or constant inputs)."""
    from onnx import numpy_helper

    consts = {i.name: i for i in graph.initializer}
    consts.update({n.output[0]: n.attribute[0].t for n in graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})

    def scalar(name: str, default: float) -> float | None:
        if not name:
            return default
        tensor = consts.get(name)
        try:
            return float(numpy_helper.to_array(tensor)) if tensor is not None else None
        except (ValueError, TypeError):  # external data not loaded, or not a scalar
            return None

    out = {}
    for node in graph.node:
        if node.op_type == "Relu":
            out[node.output[0]] = (0.0, np.inf)
        elif node.op_type == "Clip":
            attrs = {a.name: a.f for a in node.attribute}
            inputs = list(node.input) + ["", ""]
            lo = scalar(inputs[1], attrs.get("min", -np.inf))
            hi = scalar(inputs[2], attrs.get("max", np.inf))
            if lo is not None and hi is not None:
                out[node.output[0]] = (lo, hi)
    return out


def per_layer_sqnr(float_model: str | os.PathLike, qdq_model: str | os.PathLike, samples: np.ndarray) -> list[dict]:
    """SQNR (dB) of every quantized activation, float model vs int8 model (``qdq_loss_debug``), worst
    first: the layers to keep in float (``--keep-float``) are at the top."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (collect_activations, compute_activation_error,
                                                         create_activation_matching,
                                                         modify_model_output_intermediate_tensors)

    from ....calib.readers import OrtCalibrationReader

    graph = onnx.load(str(float_model), load_external_data=False).graph
    input_name = graph.input[0].name
    producers = {out: _op_kind(node, graph) for node in graph.node for out in node.output}
    with tempfile.TemporaryDirectory() as tmp:
        aug_f, aug_q = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        with contextlib.redirect_stdout(io.StringIO()):
            modify_model_output_intermediate_tensors(str(float_model), str(aug_f))
            modify_model_output_intermediate_tensors(str(qdq_model), str(aug_q))
            f_act = collect_activations(str(aug_f), OrtCalibrationReader(samples, input_name))
            q_act = collect_activations(str(aug_q), OrtCalibrationReader(samples, input_name))
        matching = create_activation_matching(q_act, f_act)
        # The QDQ model drops a Relu or Clip before a Q whose range already clamps (a uint8 zero point at 0), so
        # the tensor ONNX Runtime records "before QDQ" is the input of that activation: clamp it as the float
        # model does, or the own-quantization SQNR counts the clipped part as noise (~3 dB for every ReLU).
        bounds = _clamp_bounds(graph)
        for name, match in matching.items():
            if name in bounds and match.get("pre_qdq"):
                lo, hi = bounds[name]
                match["pre_qdq"] = [np.clip(a, lo, hi) for a in match["pre_qdq"]]
        errors = compute_activation_error(matching)
    rows = [{"tensor": name, "op": producers.get(name, "?"), "sqnr_db": float(err["xmodel_err"]),
             "qdq_sqnr_db": float(err.get("qdq_err", np.nan))}
            for name, err in errors.items() if "xmodel_err" in err]
    return sorted(rows, key=lambda r: r["sqnr_db"])

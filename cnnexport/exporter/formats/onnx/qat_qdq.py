"""A QAT model's int8 ONNX file: its int8 twin (``exporter.qat``) exported, each QuantizeLinear of a weight
computed into an int8 initializer, and each float bias of a convolution or matrix product between quantized
tensors written as int32 at the scale input x weight, as ONNX Runtime's own quantizer writes them: the file
holds int8 weights (a quarter of the fp32 file's size) and ONNX Runtime runs its QDQ groups as integer kernels
(QLinearConv, QGemm). No onnxsim afterwards: it would fold the dequantized weights back into float."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ....errors import ExportError

_DTYPES = {2: np.uint8, 3: np.int8, 6: np.int32}  # ONNX TensorProto types the pass reads and writes


def write_qat_onnx(int8_twin, dst: Path, shape: tuple[int, ...], *, opset: int, dynamic_batch: bool) -> dict:
    """Export ``int8_twin`` to ``dst`` as a QDQ file (at least opset 13: per-channel QuantizeLinear) with int8
    weights and int32 biases; what it holds."""
    import onnx

    from ...._atomic import atomic_path
    from ...onnx_export import to_onnx

    to_onnx(int8_twin, dst, shape, opset=max(opset, 13), dynamic_batch=dynamic_batch)
    model = onnx.load(str(dst))
    weights = fold_weight_quantization(model.graph)
    biases = quantize_biases(model.graph)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the QAT model's QDQ ONNX file does not pass onnx's checker: {exc}") from None
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    ops = [n.op_type for n in model.graph.node]
    return {"runtime": "onnxruntime", "format": "QDQ", "method": "quantization-aware training (the model's own "
            "scales)", "int8_weights": weights, "int32_biases": biases,
            "quantize_nodes": ops.count("QuantizeLinear"), "dequantize_nodes": ops.count("DequantizeLinear")}


def _constants(graph) -> dict:
    """Every constant of ``graph`` by name: its initializers, its Constant nodes' values, and the Identity of one
    (the exporter shares equal constants so: two layers' all-zero zero points)."""
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def _axis(node) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 1)


def _broadcast(values: np.ndarray, rank: int, axis: int) -> np.ndarray:
    """A per-channel parameter shaped to broadcast along ``axis`` of a rank-``rank`` tensor."""
    if values.ndim == 0 or values.size == 1:
        return values.reshape(())
    shape = [1] * rank
    shape[axis % rank] = -1
    return values.reshape(shape)


def fold_weight_quantization(graph) -> int:
    """Each QuantizeLinear of a constant (a weight) replaced by the int8 or uint8 initializer it computes (round
    half to even, saturated), which its DequantizeLinear then reads; how many."""
    from onnx import numpy_helper

    constants = _constants(graph)
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    folded = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] not in constants or len(node.input) < 3:
            continue
        x, scale, zero = (constants.get(n) for n in node.input[:3])
        if scale is None or zero is None:
            continue
        axis = _axis(node)
        info = np.iinfo(zero.dtype)
        q = np.rint(x / _broadcast(scale, x.ndim, axis)) + _broadcast(zero.astype(np.int64), x.ndim, axis)
        tensor = numpy_helper.from_array(np.clip(q, info.min, info.max).astype(zero.dtype), node.output[0] + "_int")
        graph.initializer.append(tensor)
        for user in consumers.get(node.output[0], []):
            user.input[:] = [tensor.name if n == node.output[0] else n for n in user.input]
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    _drop_unused(graph)
    return len(folded)


def quantize_biases(graph) -> int:
    """Each float bias initializer of a Conv or Gemm whose input and weight are both DequantizeLinear outputs
    written as int32 at scale input_scale x weight_scale (zero point 0) behind a DequantizeLinear: the form ONNX
    Runtime fuses into its integer kernels; how many."""
    from onnx import helper, numpy_helper

    constants = _constants(graph)
    made_by = {o: n for n in graph.node for o in n.output}
    initializers = {i.name for i in graph.initializer}
    count = 0
    for node in list(graph.node):
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or node.input[2] not in initializers:
            continue
        x_dq, w_dq = made_by.get(node.input[0]), made_by.get(node.input[1])
        if not (x_dq and w_dq and x_dq.op_type == w_dq.op_type == "DequantizeLinear"):
            continue
        x_scale, w_scale = constants.get(x_dq.input[1]), constants.get(w_dq.input[1])
        if x_scale is None or w_scale is None or x_scale.size != 1 or (node.op_type == "Gemm" and any(
                a.name == "transB" and a.i == 0 for a in node.attribute)):
            continue
        bias = constants[node.input[2]].astype(np.float64)
        scale = (float(x_scale.reshape(())) * w_scale.astype(np.float64)).reshape(-1)
        if scale.size not in (1, bias.size) or not np.all(scale > 0):
            continue
        q = np.clip(np.rint(bias / scale), np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
        stem = node.input[2]
        graph.initializer.extend([numpy_helper.from_array(q, stem + "_int32"),
                                  numpy_helper.from_array(scale.astype(np.float32), stem + "_scale"),
                                  numpy_helper.from_array(np.zeros(scale.shape, np.int32), stem + "_zero")])
        dq = helper.make_node("DequantizeLinear", [stem + "_int32", stem + "_scale", stem + "_zero"],
                              [stem + "_dequantized"], name=stem + "_DequantizeLinear", axis=0)
        graph.node.insert(list(graph.node).index(node), dq)
        node.input[2] = stem + "_dequantized"
        count += 1
    _drop_unused(graph)
    return count


def _drop_unused(graph) -> None:
    """Initializers and Constant nodes nothing reads any more (the float weights a fold replaced)."""
    used = {n for node in graph.node for n in node.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(node)

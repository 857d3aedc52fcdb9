"""Per-node costs of an ONNX file, with the same cost model as ``profile_torch``. onnx and numpy
only (no torch), so ``cnnexport profile model.onnx`` runs on a deploy machine."""

from __future__ import annotations

import math
import os
from pathlib import Path

from .costs import LayerCost, Profile
from ..errors import InvalidModelFileError, UsageError
from .graph import check

# Nodes that only reinterpret memory (no arithmetic, no traffic).
_VIEWS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Constant", "Dropout"}
_NORMS = {"BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization"}


def _shapes(model) -> dict[str, list[int]]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise InvalidModelFileError(f"ONNX shape inference failed: {str(exc).splitlines()[0][:200]}") from None
    shapes = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]  # a scalar's shape, [], is known too
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    for name, array in _constant_nodes(model).items():
        shapes[name] = list(array.shape)
    return shapes


def _shapes_from_a_run(model, input_shape: list[int], names: list[str]) -> dict[str, list[int]]:
    """Shapes of ``names`` recorded from one ONNX Runtime run on zeros: what shape inference cannot
    resolve (a plain export's Shape -> Gather -> Reshape channel shuffle) a run still knows. Empty
    when the run fails."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in known)
    inits = {i.name for i in model.graph.initializer}
    (inp,) = [i for i in model.graph.input if i.name not in inits]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        outputs = session.run(None, {inp.name: np.zeros(input_shape, dtype)})
    except Exception:  # a run is a fallback: the profile then says its totals are lower bounds
        return {}
    return {o.name: list(np.shape(v)) for o, v in zip(session.get_outputs(), outputs)}


def _constant_nodes(model) -> dict:
    """Tensors held in Constant nodes (onnxsim stores some weights that way) by output name."""
    from onnx import numpy_helper

    out = {}
    for node in model.graph.node:
        if node.op_type == "Constant":
            attr = next((a for a in node.attribute if a.name == "value"), None)
            if attr is not None:
                out[node.output[0]] = numpy_helper.to_array(attr.t)
    return out


def _fix_inputs(model, input_shape: tuple[int, ...] | None, name: str = "the ONNX file") -> list[int]:
    """Give every graph input concrete dimensions: ``input_shape`` if given, else the batch 1 where it is
    dynamic; any other dynamic dimension (the image size) needs ``input_shape``: costs at a guessed size
    would be wrong figures."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise UsageError(f"profile supports single-input models; this one has {len(inputs)} inputs")
    dims = inputs[0].type.tensor_type.shape.dim
    if input_shape is not None:
        if len(input_shape) != len(dims) or any(d.HasField("dim_value") and d.dim_value != s
                                                 for d, s in zip(dims, input_shape)):
            fixed = [d.dim_value if d.HasField("dim_value") else None for d in dims]
            raise UsageError(f"input size {list(input_shape)} does not fit the model's input {fixed}")
    if input_shape is None and any(not d.HasField("dim_value") for d in dims[1:]):
        fixed = "x".join(str(d.dim_value) if d.HasField("dim_value") else "?" for d in dims[1:])
        raise UsageError(f"{name} does not fix its input size ({fixed}): pass --input-size (H, HxW or C,H,W)")
    shape = list(input_shape) if input_shape is not None else [d.dim_value if d.HasField("dim_value") else 1
                                                                   for d in dims]
    for d, s in zip(dims, shape):
        d.Clear()
        d.dim_value = s
    return shape


def _node_cost(node, shapes: dict[str, list[int]], float_inits: dict[str, int]) -> LayerCost:
    out = shapes.get(node.output[0], [])
    out_elems = math.prod(out) if node.output[0] in shapes else 0
    ins = [shapes.get(i) for i in node.input if i]
    in_elems = sum(math.prod(s) for s in ins if s is not None)
    cost = LayerCost(name=node.name or node.output[0], type=node.op_type, output_shape=out,
                     output_elements=out_elems, params=sum(float_inits.get(i, 0) for i in node.input))
    if node.op_type in _VIEWS:
        cost.output_elements = 0
        return cost
    cost.memory_access = in_elems + sum(math.prod(shapes[o]) for o in node.output if o in shapes)
    if node.op_type in ("Conv", "ConvTranspose") and len(ins) > 1 and ins[1]:
        w = ins[1]
        per = w[1] * math.prod(w[2:])
        cost.kind = conv_kind(node, w)
        cost.macs = (math.prod(ins[0]) if node.op_type == "ConvTranspose" else out_elems) * per
        cost.winograd = node.op_type == "Conv" and _winograd_shaped(node, w)
    elif node.op_type in ("Gemm", "MatMul") and len(ins) > 1 and ins[0] and ins[1]:
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        k = ins[0][-2] if trans_a else ins[0][-1]
        cost.macs = out_elems * k
    elif node.op_type in _NORMS:
        cost.elementwise_ops = 2 * out_elems
    else:
        cost.elementwise_ops = out_elems
    return cost


def _winograd_shaped(node, weight_shape: list[int]) -> bool:
    """A dense 3x3 convolution at stride 1, undilated: the layers Winograd computes."""
    attrs = {a.name: list(a.ints) or a.i for a in node.attribute}
    return (weight_shape[2:] == [3, 3] and attrs.get("group", 1) == 1
            and all(v == 1 for v in attrs.get("strides", [1])) and all(v == 1 for v in attrs.get("dilations", [1])))


#: Element-wise ops a runtime fuses into the convolution or matrix product before them (ONNX Runtime's
#: FusedConv and NCHWc, OpenVINO's post-ops, XNNPACK's and ncnn's activations): their result is written once.
FUSABLE = {"Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Add", "Mul", "BatchNormalization"}
FUSION_ANCHORS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def fusion_groups(model, shapes: dict[str, list[int]] | None = None) -> dict[str, str]:
    """Node name -> the name of the node it fuses into (itself when it is an anchor or stands alone). An
    element-wise op joins its producer's group when it is that output's only consumer and, with ``shapes``,
    writes a tensor of the same shape (a squeeze-excitation Mul that broadcasts its gate onto a larger map
    does not: the group would then write more than its anchor does)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    for o in model.graph.output:
        consumers[o.name] = consumers.get(o.name, 0) + 1
    ops = {n.name or n.output[0]: n.op_type for n in model.graph.node}
    group: dict[str, str] = {}
    for n in model.graph.node:
        name = n.name or n.output[0]
        group[name] = name
        if n.op_type not in FUSABLE:
            continue
        for i in n.input:
            p = producer.get(i)
            if p is None or consumers.get(i) != 1:
                continue
            if shapes is not None and shapes.get(i) != shapes.get(n.output[0]):
                continue
            root = group.get(p.name or p.output[0])
            if ops.get(root) in FUSION_ANCHORS:
                group[name] = root
                break
    return group


def _mark_fused(model, layers: list[LayerCost], shapes: dict[str, list[int]], float_inits: dict[str, int]) -> None:
    """Set each fused op's ``fused_into`` and ``fused_access`` (the feature maps it reads besides its producer's)."""
    group = fusion_groups(model, shapes)
    producer_name = {o: n.name or n.output[0] for n in model.graph.node for o in n.output}
    for node, cost in zip(model.graph.node, layers):
        name = node.name or node.output[0]
        root = group.get(name, name)
        if root == name:
            continue
        cost.fused_into = root
        cost.fused_access = sum(math.prod(shapes[i]) for i in node.input
                                if i and i in shapes and i not in float_inits
                                and group.get(producer_name.get(i, ""), "") != root)


def conv_kind(node, weight_shape: list[int]) -> str:
    """"Conv 3x3", "Conv 1x1", "Conv depthwise 3x3" (one input channel per group) or "Conv group 1x1"."""
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    kernel = "x".join(map(str, weight_shape[2:])) or "1"
    if group > 1:
        return f"{node.op_type} {'depthwise' if weight_shape[1] == 1 else 'group'} {kernel}"
    return f"{node.op_type} {kernel}"


def profile_onnx(path: str | os.PathLike, input_shape: tuple[int, ...] | None = None) -> Profile:
    """Profile an ONNX file at ``input_shape`` (default: its own, dynamic dimensions set to 1)."""
    import onnx
    from onnx import numpy_helper

    check(path)
    model = onnx.load(str(path))
    shape = _fix_inputs(model, input_shape, f"'{Path(path).name}'")
    shapes = _shapes(model)
    unresolved = [o for n in model.graph.node if n.op_type != "Constant" for o in n.output if o and o not in shapes]
    if unresolved:
        shapes.update(_shapes_from_a_run(model, shape, unresolved))
    float_inits = {i.name: math.prod(i.dims) for i in model.graph.initializer
                   if numpy_helper.to_array(i).dtype.kind == "f"}
    float_inits.update({n: a.size for n, a in _constant_nodes(model).items() if a.dtype.kind == "f"})
    layers = [_node_cost(n, shapes, float_inits) for n in model.graph.node]
    _mark_fused(model, layers, shapes, float_inits)
    missing = [n.op_type for n in model.graph.node if n.output[0] not in shapes and n.op_type != "Constant"]
    notes = [f"{len(missing)} node outputs have unknown shapes ({', '.join(sorted(set(missing)))}) even after a "
             "run: their costs count as 0, so MACs, memory access and activation memory are lower bounds"] \
        if missing else []
    return Profile(source="onnx", input_shape=shape, params=sum(float_inits.values()), layers=layers, notes=notes,
                   unknown_shape_nodes=len(missing))


def costs_graph(path: str | os.PathLike) -> Path | None:
    """The ONNX graph whose layer costs describe ``path``: the file itself when it is an fp32 ONNX
    file, else the fp32 ``<model>.onnx`` beside it (an .xml, .tflite or int8 file was made from it),
    else an int8 ONNX file itself; None when there is none."""
    from ..exporter.formats import precision_of

    path = Path(path)
    beside = path.with_name(f"{path.name.split('.')[0]}.onnx")
    if path.suffix == ".onnx" and precision_of(path) == "fp32":
        return path
    if beside.is_file():
        return beside
    return path if path.suffix == ".onnx" else None


def file_costs(path: str | os.PathLike, input_size: tuple | None = None):
    """The roofline's per-layer costs (``roofline.ModelCosts``) of the graph ``costs_graph`` finds for
    ``path``, at its own input size or ``input_size`` (C or None, H, W); None when they cannot be
    known completely."""
    from .roofline import ModelCosts

    graph = costs_graph(path)
    if graph is None or not graph.is_file():
        return None
    try:
        dims = check(graph, full_check=False).inputs[0]["shape"]
        if input_size:
            c = input_size[0] if input_size[0] is not None else dims[1]
            shape = (1, c, *input_size[1:])
        elif all(isinstance(d, int) for d in dims[1:]):
            shape = None  # its own size, a dynamic batch set to 1
        else:
            return None  # dynamic spatial size: MACs at 1x1 would be wrong
        # A lower bound would print a wrong GMAC/s, % of ceiling and roofline: None leaves them empty.
        return ModelCosts.from_profile(profile_onnx(graph, shape))
    except Exception:  # costs are a nicety for artifacts; a file the profiler cannot read still runs
        return None


def macs_per_image(path: str | os.PathLike, input_size: tuple | None = None) -> float | None:
    """MACs per image of an ONNX file, or of the fp32 ONNX file beside another artifact (see
    ``file_costs``); None when they cannot be known."""
    costs = file_costs(path, input_size)
    return costs.macs if costs else None


def compare(torch_profile: Profile, onnx_profile: Profile) -> dict:
    """Totals side by side, their ratios, and why they differ."""
    t, o = torch_profile.as_dict(per_layer=False), onnx_profile.as_dict(per_layer=False)
    rows = {k: {"pytorch": t[k], "onnx": o[k], "ratio": (o[k] / t[k]) if t[k] else None}
            for k in ("params", "macs", "memory_access_elements", "activation_bytes")}
    bn = [layer for layer in torch_profile.layers if layer.type.startswith("BatchNorm")]
    onnx_bn = [layer for layer in onnx_profile.layers if layer.type == "BatchNormalization"]
    why = []
    if bn and not onnx_bn:
        why.append(f"{len(bn)} BatchNorm layers were folded into convs in the ONNX file: their scale, shift and "
                   "statistics became conv weights and biases (fewer parameters, no BN memory traffic)")
    if rows["memory_access_elements"]["ratio"] not in (None, 1.0):
        why.append("PyTorch copies some tensors the ONNX graph only reshapes (and vice versa); in-place "
                   "activations and fused ops also count differently")
    return {"totals": rows, "why_they_differ": why}

"""Folding inside ONNX graphs made elsewhere: Dropout and Identity nodes removed; nodes that read
only constants computed once (e.g. weight standardisation, a layer scale reshaped at run time);
BatchNormalization into the Conv, ConvTranspose or Gemm before it, a per-channel Mul/Add by
constants into the Conv before it, and a BatchNormalization nothing absorbs into one Mul and one
Add by constants (its eval-mode scale and shift, as ``prepare`` writes it). The export runs it too,
as the last line of defence behind ``prepare`` (and as the only fold of a TorchScript module);
``fold_file`` (``cnnexport fold``) applies it to a file. numpy and onnx only (no torch)."""

from __future__ import annotations

from collections import Counter

import numpy as np

_PRODUCERS = ("Conv", "ConvTranspose", "Gemm")
SCALE_SHIFT = "Mul+Add (scale and shift)"  # what a BatchNormalization nothing absorbs becomes


class _Graph:
    """Indexes over one ONNX graph for rewiring."""

    def __init__(self, model):
        self.model = model
        self.graph = model.graph
        self.inits = {i.name: i for i in self.graph.initializer}
        self.outputs = {o.name for o in self.graph.output}
        self.inputs = {i.name for i in self.graph.input}

    def consumers(self, name: str) -> list:
        return [n for n in self.graph.node if name in n.input]

    def producer(self, name: str):
        return next((n for n in self.graph.node if name in n.output), None)

    def const(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None

    def add_const(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        base, k = name, 0
        while name in self.inits:
            k += 1
            name = f"{base}_{k}"
        tensor = numpy_helper.from_array(array, name)
        self.graph.initializer.append(tensor)
        self.inits[name] = tensor
        return name

    def rename(self, old: str, new: str) -> None:
        for node in self.graph.node:
            node.input[:] = [new if i == old else i for i in node.input]
            node.output[:] = [new if o == old else o for o in node.output]

    def bypass(self, node) -> bool:
        """Remove a one-input pass-through node, connecting its consumers to its input."""
        src, dst = node.input[0], node.output[0]
        if any(o for o in node.output[1:] if self.consumers(o) or o in self.outputs):
            return False  # e.g. Dropout's mask output is used
        if dst in self.outputs:
            prod = self.producer(src)
            if prod is None or src in self.outputs or len(self.consumers(src)) != 1:
                return False
            self.graph.node.remove(node)
            self.rename(src, dst)
            return True
        for consumer in self.consumers(dst):
            consumer.input[:] = [src if i == dst else i for i in consumer.input]
        self.graph.node.remove(node)
        return True

    def prune_initializers(self) -> None:
        used = {i for n in self.graph.node for i in n.input} | self.outputs
        for init in list(self.graph.initializer):
            if init.name not in used:
                self.graph.initializer.remove(init)
                self.inits.pop(init.name, None)


def _attr(node, name: str, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _set_attr(node, name: str, value) -> None:
    from onnx import helper

    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, value))


def _fold_bn(g: _Graph, bn) -> dict | None:
    if len([o for o in bn.output if o]) != 1 or _attr(bn, "training_mode", 0):
        return None
    prod = g.producer(bn.input[0])
    params = [g.const(i) for i in bn.input[1:5]]
    if prod is None or prod.op_type not in _PRODUCERS or any(p is None for p in params):
        return None
    if len(g.consumers(prod.output[0])) != 1 or prod.output[0] in g.outputs:
        return None
    gamma, beta, mean, var = (p.astype(np.float64) for p in params)
    scale = gamma / np.sqrt(var + _attr(bn, "epsilon", 1e-5))
    shift = beta - mean * scale
    w = g.const(prod.input[1])
    if w is None:
        return None
    dtype = w.dtype
    w = w.astype(np.float64)
    if prod.op_type == "Conv":
        w_new = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
    elif prod.op_type == "ConvTranspose":
        groups = _attr(prod, "group", 1)
        grouped = w.reshape(groups, w.shape[0] // groups, w.shape[1], *w.shape[2:])
        w_new = (grouped * scale.reshape(groups, 1, -1, *([1] * (w.ndim - 2)))).reshape(w.shape)
    else:  # Gemm: Y = alpha * A @ B' + beta * C, B' = B.T when transB
        w_new = w * (scale[:, None] if _attr(prod, "transB", 0) else scale[None, :])
    if prod.op_type == "Gemm":
        c = g.const(prod.input[2]) if len(prod.input) > 2 and prod.input[2] else np.zeros(1)
        if c is None:
            return None
        bias_new = c.astype(np.float64) * _attr(prod, "beta", 1.0) * scale + shift
        _set_attr(prod, "beta", 1.0)
    else:
        b = g.const(prod.input[2]) if len(prod.input) > 2 and prod.input[2] else np.zeros_like(scale)
        if b is None:
            return None
        bias_new = b.astype(np.float64) * scale + shift
    inputs = list(prod.input) + [""] * (3 - len(prod.input))
    inputs[1] = g.add_const(f"{prod.input[1]}_bnfolded", w_new.astype(dtype))
    inputs[2] = g.add_const(f"{prod.output[0]}_bias_bnfolded", bias_new.astype(dtype))
    prod.input[:] = inputs[:3]
    old_out = prod.output[0]
    prod.output[0] = bn.output[0]
    g.graph.node.remove(bn)
    return {"batchnorm": bn.name or bn.output[0], "into": prod.name or old_out, "into_type": prod.op_type}


def _batchnorms_to_scale_shift(g: _Graph, ranks: dict[str, int]) -> list[dict]:
    """Each BatchNormalization no producer absorbed (after a concatenation, an addition, the input), in
    inference mode with constant statistics and an input of known rank, as one Mul and one Add by
    per-channel constants in its place; the graph's node list is rebuilt once, in the same order."""
    from onnx import helper

    nodes, folded = [], []
    for node in g.graph.node:
        params = [g.const(i) for i in node.input[1:5]] if node.op_type == "BatchNormalization" else [None]
        rank = ranks.get(node.input[0], 0) if node.input else 0
        if any(p is None for p in params) or rank < 2 or len([o for o in node.output if o]) != 1 \
                or _attr(node, "training_mode", 0):
            nodes.append(node)
            continue
        gamma, beta, mean, var = (p.astype(np.float64) for p in params)
        scale = gamma / np.sqrt(var + _attr(node, "epsilon", 1e-5))
        shape = (-1, *([1] * (rank - 2)))  # broadcasts over (N, C, ...) from the channel axis on
        dtype, out, name = params[0].dtype, node.output[0], node.name or node.output[0]
        s = g.add_const(f"{out}_bn_scale", scale.reshape(shape).astype(dtype))
        t = g.add_const(f"{out}_bn_shift", (beta - mean * scale).reshape(shape).astype(dtype))
        nodes += [helper.make_node("Mul", [node.input[0], s], [f"{out}_bn_scaled"], name=f"{name}_scale"),
                  helper.make_node("Add", [f"{out}_bn_scaled", t], [out], name=f"{name}_shift")]
        folded.append({"batchnorm": name, "into": f"{name}_scale", "into_type": SCALE_SHIFT, "kind": "scale_shift"})
    if folded:
        kept = [type(n)() for n in nodes]  # copies: the graph's own nodes go when its list is cleared
        for copy, n in zip(kept, nodes):
            copy.CopyFrom(n)
        del g.graph.node[:]
        g.graph.node.extend(kept)
    return folded


def value_ranks(model) -> dict[str, int]:
    """The rank of every value shape inference can tell (the graph's inputs and outputs included); none where it
    fails (a graph the checker cannot type, past protobuf's 2 GB): callers then rewrite nothing that needs one."""
    from onnx import shape_inference

    try:
        graph = shape_inference.infer_shapes(model, strict_mode=False).graph
    except Exception:
        return {}
    return {v.name: len(v.type.tensor_type.shape.dim) for v in (*graph.input, *graph.value_info, *graph.output)
            if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")}


def _constant(g: _Graph, name: str) -> np.ndarray | None:
    """An initializer's or a Constant node's value."""
    if name in g.inits:
        return g.const(name)
    prod = g.producer(name)
    if prod is not None and prod.op_type == "Constant":
        from onnx import numpy_helper

        value = next((a.t for a in prod.attribute if a.name == "value"), None)
        return numpy_helper.to_array(value) if value is not None else None
    return None


def _per_channel(a: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """``a`` as one value per channel of an (N, C, ...) tensor of ``rank``, or None when it varies
    along another axis."""
    if a.ndim > rank:
        return None
    shape = (1,) * (rank - a.ndim) + a.shape
    if shape[0] != 1 or shape[1] not in (1, channels) or any(d != 1 for d in shape[2:]):
        return None
    return np.broadcast_to(a.reshape(-1), (channels,)).astype(np.float64)


def affine_after_conv(g: _Graph, conv) -> tuple[object, np.ndarray, bool] | None:
    """The Mul or Add by per-channel constants that reads only ``conv``'s output: (node, values, is_mul)."""
    out = conv.output[0]
    users = g.consumers(out)
    if len(users) != 1 or out in g.outputs or users[0].op_type not in ("Mul", "Add") or len(users[0].input) != 2:
        return None
    node = users[0]
    other = node.input[1] if node.input[0] == out else node.input[0]
    value = _constant(g, other)
    w = g.const(conv.input[1]) if len(conv.input) > 1 else None
    if value is None or w is None or not np.issubdtype(value.dtype, np.floating):
        return None
    per_channel = _per_channel(value, w.shape[0], w.ndim)
    return None if per_channel is None else (node, per_channel, node.op_type == "Mul")


def _fold_affine(g: _Graph, conv) -> list[dict]:
    """Fold the chain of per-channel Mul/Add after a Conv into its weights and bias."""
    folded = []
    while (found := affine_after_conv(g, conv)) is not None:
        node, values, is_mul = found
        w = g.const(conv.input[1])
        dtype = w.dtype
        b = g.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(w.shape[0])
        if b is None:
            break
        w, b = w.astype(np.float64), b.astype(np.float64)
        if is_mul:
            w, b = w * values.reshape(-1, *([1] * (w.ndim - 1))), b * values
        else:
            b = b + values
        inputs = list(conv.input) + [""] * (3 - len(conv.input))
        inputs[1] = g.add_const(f"{conv.input[1]}_affine", w.astype(dtype))
        inputs[2] = g.add_const(f"{conv.output[0]}_bias_affine", b.astype(dtype))
        conv.input[:] = inputs[:3]
        conv.output[0] = node.output[0]
        g.graph.node.remove(node)
        folded.append({"batchnorm": node.name or node.output[0], "into": conv.name, "into_type": "Conv",
                       "what": node.op_type})
    return folded


def count_affine_after_conv(model) -> int:
    """Per-channel Mul/Add nodes that a Conv before them could absorb (left behind by an unfolded norm)."""
    g = _Graph(model)
    return sum(1 for n in g.graph.node if n.op_type == "Conv" and affine_after_conv(g, n) is not None)


# never evaluated ahead of time: their value is not a function of their inputs
_NOT_CONSTANT = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                 "Bernoulli", "Constant"}
_GROWTH_LIMIT = 1 << 16  # elements: a computed constant may exceed its largest input by at most this


def _fold_constants(g: _Graph) -> int:
    """Replace every node that reads only constants by its value, computed once with ONNX's reference
    evaluator (the operator's specification in numpy), and return how many nodes went. A constant
    that would outgrow its inputs (Expand, Tile, ConstantOfShape) stays computed at run time."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    known = {name: g.const(name) for name in g.inits if name not in g.inputs}
    for node in g.graph.node:
        if node.op_type == "Constant" and (value := _constant(g, node.output[0])) is not None:
            known[node.output[0]] = value
    opsets = list(g.model.opset_import)
    computed: set[str] = set()
    folded_nodes = []
    for node in g.graph.node:
        inputs = [i for i in node.input if i]
        if (node.op_type in _NOT_CONSTANT or node.domain not in ("", "ai.onnx") or not inputs
                or any(i not in known for i in inputs) or any(o in g.outputs for o in node.output)
                or any(a.type in (a.GRAPH, a.GRAPHS) for a in node.attribute)):
            continue
        feeds = {f"in{k}": known[i] for k, i in enumerate(node.input) if i}
        single = helper.make_node(node.op_type, [f"in{k}" if i else "" for k, i in enumerate(node.input)],
                                  [f"out{k}" if o else "" for k, o in enumerate(node.output)], domain=node.domain)
        single.attribute.extend(node.attribute)
        graph = helper.make_graph([single], "constant", [], [helper.make_value_info(f"out{k}", helper.TypeProto())
                                                             for k, o in enumerate(node.output) if o],
                                  initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in feeds.items()])
        try:
            values = ReferenceEvaluator(helper.make_model(graph, opset_imports=opsets)).run(None, {})
        except Exception:  # an operator the reference evaluator lacks: leave it to the runtime
            continue
        largest = max(np.asarray(v).size for v in feeds.values())
        if any(np.asarray(v).size > max(largest, _GROWTH_LIMIT) for v in values):
            continue
        for name, value in zip([o for o in node.output if o], values):
            known[name] = np.asarray(value)
            computed.add(name)
        folded_nodes.append(node)
    if not folded_nodes:
        return 0
    gone = {id(n) for n in folded_nodes}
    needed = {i for n in g.graph.node if id(n) not in gone for i in n.input} | g.outputs
    for name in sorted(computed & needed):
        tensor = numpy_helper.from_array(known[name], name)
        g.graph.initializer.append(tensor)
        g.inits[name] = tensor
    for node in folded_nodes:
        g.graph.node.remove(node)
    used = {i for n in g.graph.node for i in n.input} | g.outputs
    for node in [n for n in g.graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        g.graph.node.remove(node)
    return len(folded_nodes)


def fold_model(model) -> tuple[object, list[dict], dict[str, int]]:
    """Remove Dropout/Identity, precompute constant subgraphs, fold BN (and per-channel Mul/Add) into
    producers in ``model`` (modified in place). Returns the model, the folds and the counts of removed
    nodes (``constant`` for precomputed ones)."""
    g = _Graph(model)
    removed: Counter = Counter()
    # pass-throughs first: an exporter routes shared weights through Identity nodes, which would hide
    # them as constants from the folds below
    for node in [n for n in g.graph.node if n.op_type in ("Dropout", "Identity")]:
        if g.bypass(node):
            removed[node.op_type] += 1
    if constants := _fold_constants(g):
        removed["constant"] = constants
    folded = [f for bn in [n for n in g.graph.node if n.op_type == "BatchNormalization"]
              if (f := _fold_bn(g, bn)) is not None]
    folded += [f for conv in [n for n in g.graph.node if n.op_type == "Conv"] for f in _fold_affine(g, conv)]
    if any(n.op_type == "BatchNormalization" for n in g.graph.node):
        folded += _batchnorms_to_scale_shift(g, value_ranks(model))
    g.prune_initializers()
    return model, folded, dict(removed)

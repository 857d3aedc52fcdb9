"""Softmax over an axis other than the last, shifted by its maximum before MNN reads the file.

MNN 3.6's CPU softmax over a middle axis with more than 8 values after it (a (1, 2, 1, 512) tensor over
axis 1, as ResNeSt's split attention takes it; (1, 4, 32) over axis 1) exponentiates its inputs without
first subtracting their maximum. Logits beyond about 87 then saturate Exp, and a pair at -125 and -93
comes out 0.5 and 0.5 where 1e-14 and 1 were due: a wrong file with no error (resnest14d off by 1.8e-2 on
a photo). With 8 or fewer values after the axis, over the last axis, and over the channels of a 4-D
tensor, it subtracts the maximum and is right; the rule below does not depend on that count.

Each such Softmax is given the shift itself: Softmax(x - ReduceMax(x)), the same values (softmax does not
change when a constant is subtracted along the axis it normalises), the largest logit then 0. Before opset
13 Softmax normalises over every axis from ``axis`` on, so the maximum is taken over all of them.
"""

from __future__ import annotations


def stabilize_softmaxes(model) -> int:
    """Rewrite, in place, every Softmax of ``model`` (an onnx ModelProto) that is not over its input's last
    axis (or whose input's rank is unknown) as a Softmax of its input minus its maximum; how many."""
    import numpy as np
    from onnx import helper, numpy_helper

    from ...onnx_fold import value_ranks

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    candidates = [n for n in model.graph.node if n.op_type == "Softmax" and _axis(n, opset) != -1]
    if not candidates:
        return 0
    ranks = value_ranks(model)
    nodes, rewritten = [], 0
    for node in model.graph.node:
        rank = ranks.get(node.input[0]) if node.op_type == "Softmax" else None
        axis = _axis(node, opset) if node.op_type == "Softmax" else -1
        if node.op_type != "Softmax" or axis == -1 or (rank is not None and axis % rank == rank - 1):
            nodes.append(node)
            continue
        if opset < 13 and rank is None:  # the axes to take the maximum over are unknown
            nodes.append(node)
            continue
        name = f"{node.name or node.output[0]}_for_mnn"
        axes = list(range(axis % rank, rank)) if opset < 13 else [axis]
        peak = f"{name}_max"
        if opset >= 18:
            model.graph.initializer.append(numpy_helper.from_array(np.asarray(axes, np.int64), f"{name}_axes"))
            nodes.append(helper.make_node("ReduceMax", [node.input[0], f"{name}_axes"], [peak], name=peak,
                                          keepdims=1))
        else:
            nodes.append(helper.make_node("ReduceMax", [node.input[0]], [peak], name=peak, axes=axes, keepdims=1))
        nodes.append(helper.make_node("Sub", [node.input[0], peak], [f"{name}_shift"], name=f"{name}_shift"))
        node.input[0] = f"{name}_shift"
        nodes.append(node)
        rewritten += 1
    if rewritten:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return rewritten


def _axis(node, opset: int) -> int:
    """The Softmax's axis attribute (its opset's default where absent)."""
    return next((a.i for a in node.attribute if a.name == "axis"), -1 if opset >= 13 else 1)

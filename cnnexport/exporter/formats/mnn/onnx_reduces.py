"""The ONNX reductions MNN's converter gets wrong, rewritten before it reads the file.

From opset 18 a reduction takes its axes as an input. MNN 3.6's converter reads that input for ReduceSum,
ReduceMean, ReduceMax, ReduceMin and ReduceProd, but ReduceL1, ReduceL2, ReduceLogSum, ReduceLogSumExp and
ReduceSumSquare reduce over every axis instead (``F.normalize`` over the channels came out of MNN with shape
(1, 1) where (1, 1, 6, 6) was due). Each becomes the sum it is: ReduceL2 = Sqrt(ReduceSum(x * x)), ReduceL1 =
ReduceSum(Abs(x)), ReduceSumSquare = ReduceSum(x * x), ReduceLogSum = Log(ReduceSum(x)), ReduceLogSumExp =
Log(ReduceSum(Exp(x - m))) + m with m = ReduceMax(x): the same values.
"""

from __future__ import annotations

REWRITTEN = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")


def rewrite_reduces(model) -> int:
    """Rewrite, in place, the ``REWRITTEN`` reductions of ``model`` (an onnx ModelProto) that take their axes
    as an input; how many."""
    from onnx import helper

    nodes, rewritten = [], 0
    for node in model.graph.node:
        if node.op_type not in REWRITTEN or len(node.input) < 2 or not node.input[1] \
                or any(a.name == "noop_with_empty_axes" and a.i for a in node.attribute):
            nodes.append(node)
            continue
        keep = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        x, axes, out = node.input[0], node.input[1], node.output[0]
        name = f"{node.name or out}_for_mnn"

        def make(op, inputs, suffix, output=None, **attrs):
            nodes.append(helper.make_node(op, inputs, [output or f"{name}_{suffix}"], name=f"{name}_{suffix}",
                                          **attrs))
            return nodes[-1].output[0]

        op = node.op_type
        if op in ("ReduceL2", "ReduceSumSquare"):
            total = make("ReduceSum", [make("Mul", [x, x], "square"), axes], "sum",
                         out if op == "ReduceSumSquare" else None, keepdims=keep)
            if op == "ReduceL2":
                make("Sqrt", [total], "sqrt", out)
        elif op == "ReduceL1":
            make("ReduceSum", [make("Abs", [x], "abs"), axes], "sum", out, keepdims=keep)
        elif op == "ReduceLogSum":
            make("Log", [make("ReduceSum", [x, axes], "sum", keepdims=keep)], "log", out)
        else:  # ReduceLogSumExp, shifted by the maximum so that Exp cannot overflow
            peak = make("ReduceMax", [x, axes], "max", keepdims=1)
            shifted = make("Exp", [make("Sub", [x, peak], "shift")], "exp")
            log = make("Log", [make("ReduceSum", [shifted, axes], "sum", keepdims=keep)], "log")
            make("Add", [log, peak if keep else make("ReduceMax", [x, axes], "max_out", keepdims=0)], "add", out)
        rewritten += 1
    if rewritten:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return rewritten

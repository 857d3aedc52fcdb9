"""Strided slices of a feature map's height and width, as ncnn can run them, before pnnx reads the ONNX file.

ncnn's Crop takes no step, so pnnx leaves a slice with one (YOLOv5's Focus: ``x[..., ::2, ::2]``, space to depth
by strided slicing) as ``Tensor.slice``, a layer ncnn has no kernel for, on either of its routes. A slice that
steps over axes 2 and 3 of a 4-D tensor is the same as the slice without the step followed by a max pool with a
1x1 window and the step as its stride: each output element is the one input element under its window, picked
exactly. Slices over other axes, with negative steps, or whose values or rank are unknown are left as they are.
"""

from __future__ import annotations


def strided_slices_as_pools(model) -> int:
    """Rewrite, in place, every Slice of ``model`` (an onnx ModelProto, opset 10 on: starts, ends, axes and steps
    as inputs) with a step over the height or width of a 4-D input, as that Slice without steps and a MaxPool
    with a 1x1 kernel and the steps as strides; how many."""
    import numpy as np
    from onnx import helper, numpy_helper

    from ...onnx_fold import value_ranks

    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    slices = [n for n in model.graph.node if n.op_type == "Slice" and len(n.input) == 5
              and all(name in constants for name in n.input[1:])]
    if not slices:
        return 0
    ranks = value_ranks(model)
    candidates = {id(n) for n in slices}
    nodes, rewritten = [], 0
    for node in model.graph.node:
        strides = _pool_strides(node, constants, ranks) if id(node) in candidates else None
        if strides is None:
            nodes.append(node)
            continue
        name = f"{node.name or node.output[0]}_for_ncnn"
        ones = f"{name}_steps"
        model.graph.initializer.append(numpy_helper.from_array(np.ones_like(constants[node.input[4]]), ones))
        cropped = f"{name}_crop"
        nodes.append(helper.make_node("Slice", [*node.input[:4], ones], [cropped], name=cropped))
        nodes.append(helper.make_node("MaxPool", [cropped], list(node.output), name=f"{name}_pick",
                                      kernel_shape=[1, 1], strides=strides))
        rewritten += 1
    if rewritten:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return rewritten


def _pool_strides(node, constants: dict, ranks: dict) -> list[int] | None:
    """The (height, width) strides a MaxPool picks ``node``'s elements with, or None where it cannot."""
    if ranks.get(node.input[0]) != 4:
        return None
    axes = [int(a) % 4 for a in constants[node.input[3]].ravel()]
    steps = [int(s) for s in constants[node.input[4]].ravel()]
    if len(axes) != len(steps) or any(s < 1 for s in steps):
        return None
    strides = {2: 1, 3: 1}
    for axis, step in zip(axes, steps):
        if step != 1 and axis not in strides:  # a step over the batch or the channels: no pool picks that
            return None
        strides[axis] = step
    return [strides[2], strides[3]] if strides != {2: 1, 3: 1} else None

"""Rewrites of a ``torch.export`` graph for the converters that start from one (litert-torch for TFLite,
ExecuTorch), where an operator has no lowering there but a plain equivalent does. Shared by both, as
``xnnpack_rewrites`` is.

``adaptive_max_pool2d`` (``nn.AdaptiveMaxPool2d``, ``F.adaptive_max_pool2d``: CBAM's channel attention as
users write it) is not in Core ATen, so ExecuTorch refuses it ("is not in Core ATen opset"), and litert-torch
has no lowering for it. Where its indices go unused and the output size divides the input, it is a max-pool
with kernel = stride = input / output: the same values.

``max.dim`` over the channels (``x.max(1, keepdim=True)[0]``: CBAM's spatial attention) is accepted by
ExecuTorch's XNNPACK partitioner, whose kernel then takes only H or W ("amax.default only supports dim == 2 or
dim == 3", and the lowering fails). As ``amax`` it is left to ExecuTorch's portable kernels.
"""

from __future__ import annotations

import operator


def shape_of(arg) -> tuple:
    """The static shape of a graph node's value; () for a Python number (a scalar operand)."""
    import torch

    return tuple(arg.meta["val"].shape) if isinstance(arg, torch.fx.Node) else ()


def _calls(graph, target) -> list:
    """The graph's calls of ``target``, listed first so that rewriting them does not disturb the walk."""
    return [n for n in graph.nodes if n.op == "call_function" and n.target is target]


def _values_only(node) -> bool:
    """Whether a (values, indices) op's indices go unused: its uses are getitems of the values, or of the
    indices with nothing reading them."""
    return all(u.target is operator.getitem and (u.args[1] == 0 or not u.users) for u in node.users)


def _replace_values(graph, node, values) -> None:
    """Route the uses of ``node``'s values to ``values``, and drop ``node`` with its getitems."""
    for use in list(node.users):
        use.replace_all_uses_with(values)
        graph.erase_node(use)
    graph.erase_node(node)


def adaptive_max_pools_as_max(graph) -> int:
    """Rewrite, in place, each ``adaptive_max_pool2d`` whose indices go unused and whose output size divides
    its input (static sizes) as a ``max_pool2d`` of kernel = stride = input / output; how many."""
    import torch

    aten = torch.ops.aten
    rewritten = 0
    for node in _calls(graph, aten.adaptive_max_pool2d.default):
        x, out = node.args[0], node.args[1]
        h, w = shape_of(x)[-2:]
        oh, ow = (out, out) if isinstance(out, int) else (out[0] or h, out[-1] or w)
        if not _values_only(node) or not all(isinstance(d, int) for d in (h, w, oh, ow)) or h % oh or w % ow:
            continue
        kernel = [h // oh, w // ow]
        with graph.inserting_before(node):  # (not amax over H, W: XNNPACK reduces one of them only)
            _replace_values(graph, node, graph.call_function(aten.max_pool2d.default, (x, kernel, kernel)))
        rewritten += 1
    return rewritten


def describe(pools: int, maxes: int = 0) -> list[str]:
    """The report lines for ``pools`` rewritten adaptive max-pools and ``maxes`` channel maxes (none for 0)."""
    return ([f"{pools} adaptive max-pool{'s' * (pools > 1)} done as a max-pool of kernel = stride (the same "
             "values): the converter has no adaptive_max_pool2d"] if pools else []) + (
        [f"{maxes} max over the channels done as amax, on ExecuTorch's portable kernels: XNNPACK's takes "
         "H or W only"] if maxes else [])


def channel_maxes_as_amax(graph) -> int:
    """Rewrite, in place, each ``max.dim`` of a 4-D tensor over a dimension other than H or W whose indices go
    unused as ``amax`` (ExecuTorch's XNNPACK delegate takes H or W only, yet its partitioner claims any); how
    many."""
    import torch

    aten = torch.ops.aten
    rewritten = 0
    for node in _calls(graph, aten.max.dim):
        x, dim = node.args[0], node.args[1]
        keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        rank = len(shape_of(x))
        if rank != 4 or dim % rank in (2, 3) or not _values_only(node):
            continue
        with graph.inserting_before(node):
            _replace_values(graph, node, graph.call_function(aten.amax.default, (x, [dim], keepdim)))
        rewritten += 1
    return rewritten

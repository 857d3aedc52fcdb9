"""Graph changes that let litert-torch convert what it otherwise refuses, computing the same values.

Applied only after a conversion fails (``tflite_file``), to the model as ``torch.export`` captures it: an
``expand``/``expand_as`` whose every use is an element-wise op that broadcasts to the same shape without it is
dropped, so ``x * y.expand_as(x)`` becomes ``x * y`` (the squeeze-and-excitation gate as users copy it from
senet.pytorch, timm's ECA, MobileViTv2's attention). litert-torch 0.10 keeps an expand in NCHW and then, in some
networks, cannot broadcast it against an NHWC operand ("'tfl.mul' op operands don't have broadcast-compatible
shapes"). And a batched matrix-vector product (``matmul``/``bmm`` of (..., M, K) by (..., K, 1)) becomes a
product and a sum over K: litert-torch turns one whose result is reshaped to (B, C, 1, 1) into a BATCH_MATMUL
of rank 4 that its converter refuses ("'tfl.batch_matmul' op found invalid output rank", timm's
global-context attention). Also ``aten_rewrites``' adaptive max-pools, which litert-torch has no lowering for.
"""

from __future__ import annotations

from ..aten_rewrites import adaptive_max_pools_as_max, describe, shape_of


def for_litert(module, example) -> tuple[object, list[str]]:
    """``module`` exported (``torch.export``, static shapes, at ``example``) with the change applied, and one
    line per kind of change made; the module itself and no lines where it does not export or needs none."""
    import torch

    try:
        program = torch.export.export(module, (example,), strict=False)
    except Exception:  # the converter's own error stands
        return module, []
    graph = program.graph_module.graph
    changes = []
    expands = drop_broadcast_expands(graph)
    if expands:
        changes.append(f"{expands} expand{'s' * (expands > 1)} before a broadcasting element-wise op dropped "
                       "(x * y.expand_as(x) computed as x * y): litert-torch's layout pass cannot broadcast an "
                       "expanded tensor against an NHWC one")
    changes += describe(adaptive_max_pools_as_max(graph))
    products = matvecs_as_mul_sum(graph)
    if products:
        changes.append(f"{products} batched matrix-vector product{'s' * (products > 1)} done as a product and a "
                       "sum: litert-torch makes a rank-4 BATCH_MATMUL of one, which its converter refuses")
    if not changes:
        return module, []
    program.graph_module.recompile()
    return program.module(), changes


def drop_broadcast_expands(graph) -> int:
    """Remove, in place, each expand whose uses all broadcast to their own shape without it; how many."""
    import torch

    aten = torch.ops.aten
    broadcasting = {aten.mul.Tensor, aten.add.Tensor, aten.sub.Tensor, aten.div.Tensor}

    def redundant(use, expand) -> bool:
        if use.op != "call_function" or use.target not in broadcasting or len(use.args) < 2:
            return False
        a, b = (shape_of(expand.args[0] if arg is expand else arg) for arg in use.args[:2])
        return torch.broadcast_shapes(a, b) == torch.Size(shape_of(use))

    removed = 0
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target in (aten.expand.default, aten.expand_as.default) \
                and node.users and all(redundant(use, node) for use in node.users):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
            removed += 1
    return removed


def matvecs_as_mul_sum(graph) -> int:
    """Rewrite, in place, each ``matmul``/``bmm`` of (..., M, K) by (..., K, 1) (the same rank, 3 or more) as
    ``(a * b.transpose(-1, -2)).sum(-1, keepdim=True)``; how many."""
    import torch

    aten = torch.ops.aten
    rewritten = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in (aten.matmul.default, aten.bmm.default) \
                or len(node.args) != 2:
            continue
        a, b = node.args
        sa, sb = shape_of(a), shape_of(b)
        if len(sa) < 3 or len(sa) != len(sb) or sb[-1] != 1 or sa[-1] != sb[-2]:
            continue
        with graph.inserting_before(node):
            row = graph.call_function(aten.transpose.int, (b, -1, -2))
            product = graph.call_function(aten.mul.Tensor, (a, row))
            total = graph.call_function(aten.sum.dim_IntList, (product, [-1], True))
        node.replace_all_uses_with(total)
        graph.erase_node(node)
        rewritten += 1
    return rewritten

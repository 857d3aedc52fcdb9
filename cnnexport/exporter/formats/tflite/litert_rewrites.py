"""Graph changes that let litert-torch convert what it otherwise refuses or converts wrongly, computing the
same values, made to the model as ``torch.export`` captures it.

One is made before every conversion, because litert-torch 0.10 gets it wrong without an error: a permute (or
transpose) of an ``expand`` comes out of the converter as the broadcast alone, its transpose dropped (timm's
BotNet relative-position logits, ``x.reshape(B, H, 1, W, W).expand(-1, -1, H, -1, -1).permute(0, 1, 3, 2, 4)``,
off by 0.2 to 0.6 of the output scale; where the transpose moves a broadcast axis the file does not even
load). It becomes the permute first, then the expand to the permuted shape.

The others are made only after a conversion fails (``tflite_file``): an
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


def for_litert(module, example, refused: bool = True) -> tuple[object, list[str]]:
    """``module`` exported (``torch.export``, static shapes, at ``example``) with the changes applied, and one
    line per kind of change made; the module itself and no lines where it does not export or needs none.
    ``refused``: litert-torch refused the model, so the changes for that are made too; without it, only
    those for what it converts wrongly."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch.export's notes on the model's code: litert-torch's own are hidden too
            warnings.simplefilter("ignore")
            program = torch.export.export(module, (example,), strict=False)
    except Exception:  # the converter's own error stands
        return module, []
    graph = program.graph_module.graph
    changes = []
    if refused:
        changes += _for_refusals(graph)
    permutes = permutes_before_expands(graph)  # last: it reads the shapes captured, which new nodes lack
    if permutes:
        changes.append(f"{permutes} permute{'s' * (permutes > 1)} of an expanded tensor done before the expand "
                       "(the same values): litert-torch drops the transpose of a broadcast, a wrong file "
                       "without an error")
    if not changes:
        return module, []
    program.graph_module.recompile()
    return program.module(), changes


def _for_refusals(graph) -> list[str]:
    """The changes for what litert-torch refuses, made in place: one line per kind made."""
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
    return changes


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


def permutes_before_expands(graph) -> int:
    """Rewrite, in place, each ``permute``/``transpose`` of an ``expand`` (static shapes) as the permute of the
    expand's input (given the expand's rank first) followed by an expand to the permuted shape; how many."""
    import torch

    aten = torch.ops.aten
    expands = (aten.expand.default, aten.expand_as.default)
    rewritten = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in (aten.permute.default, aten.transpose.int):
            continue
        expand = node.args[0]
        if not isinstance(expand, torch.fx.Node) or expand.target not in expands \
                or not all("val" in n.meta for n in (expand, expand.args[0])):
            continue
        shape, source = shape_of(expand), expand.args[0]
        rank = len(shape)
        if node.target == aten.permute.default:
            order = [d % rank for d in node.args[1]]
        else:
            order = list(range(rank))
            a, b = (d % rank for d in node.args[1:3])
            order[a], order[b] = order[b], order[a]
        with graph.inserting_before(node):
            if len(shape_of(source)) < rank:  # expand's new leading axes, made explicit
                source = graph.call_function(aten.reshape.default,
                                             (source, [1] * (rank - len(shape_of(source))) + list(shape_of(source))))
            moved = graph.call_function(aten.permute.default, (source, order))
            again = graph.call_function(aten.expand.default, (moved, [shape[d] for d in order]))
        node.replace_all_uses_with(again)
        graph.erase_node(node)
        if not expand.users:
            graph.erase_node(expand)
        rewritten += 1
    return rewritten

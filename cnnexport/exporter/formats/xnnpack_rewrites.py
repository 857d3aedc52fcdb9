"""Graph changes that keep a .tflite inside XNNPACK's partitions.

litert-torch lowers a padded max-pool to PADV2 (pad with -inf) + MAX_POOL_2D. XNNPACK does not
take PADV2, so the interpreter leaves XNNPACK, pads on its reference kernel and comes back: a
partition break at the stem of ResNet and ShuffleNet. When the pool's input comes straight from a
ReLU (so it is >= 0), padding with zeros gives the same maximum, and a zero PAD is delegated. The
TFLite export does not apply it: on the Intel CPU of benchmarks/graph_changes.py it was no faster in
paired rounds (resnet50 a tie, shufflenet_v2_x1_0 3% slower), and a change is kept only when it is.
"""

from __future__ import annotations

import copy

from torch import fx, nn
from torch.nn import functional as F

_NONNEGATIVE_MODULES = (nn.ReLU, nn.ReLU6)
_NONNEGATIVE_FUNCTIONS = {F.relu, F.relu6}
_NONNEGATIVE_METHODS = {"relu", "relu_"}


def _is_nonnegative(node, modules: dict) -> bool:
    if not isinstance(node, fx.Node):
        return False
    if node.op == "call_module":
        return isinstance(modules.get(node.target), _NONNEGATIVE_MODULES)
    if node.op == "call_function":
        import torch

        return node.target in _NONNEGATIVE_FUNCTIONS or node.target is torch.relu
    return node.op == "call_method" and node.target in _NONNEGATIVE_METHODS


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def zero_pad_maxpool_after_relu(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """A copy of ``module`` whose padded ``nn.MaxPool2d`` layers that follow a ReLU pad with zeros
    in a separate ``nn.ZeroPad2d``; the module itself when there is nothing to change. Returns the
    module and one line per change."""
    from ..prepare import _Tracer, _set_submodule

    try:
        graph = _Tracer().trace(module)
    except Exception:  # an untraceable model is converted as it is
        return module, []
    modules = dict(module.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    targets = []
    for node in graph.nodes:
        pool = modules.get(node.target) if node.op == "call_module" else None
        if (isinstance(pool, nn.MaxPool2d) and any(_pair(pool.padding)) and not pool.ceil_mode
                and _pair(pool.dilation) == (1, 1) and calls[node.target] == 1
                and _is_nonnegative(node.args[0], modules)):
            targets.append(node.target)
    if not targets:
        return module, []
    rewritten = copy.deepcopy(module)
    for target in targets:
        pool = rewritten.get_submodule(target)
        ph, pw = _pair(pool.padding)
        _set_submodule(rewritten, target, nn.Sequential(nn.ZeroPad2d((pw, pw, ph, ph)),
                                                        nn.MaxPool2d(pool.kernel_size, pool.stride, 0)))
    return rewritten.eval(), [f"{t}: max-pool padding done as a zero PAD (its input follows a ReLU), so XNNPACK "
                              "keeps the stem in one partition instead of falling back for PADV2" for t in targets]



# ExecuTorch's XNNPACK partitioner takes channel slices but not split_with_sizes (what chunk and split
# lower to), and a mean over H, W only with keepdim: ShuffleNetV2's channel split and its head's
# x.mean([2, 3]) each fell back to the portable kernels, 14 graph breaks in one network.
_SPLITS = {"chunk", "split"}


def _channel_slices(x, arg, kind: str):
    """``x.chunk(arg, 1)`` / ``x.split(arg, 1)`` as plain slices (shapes are static when exported)."""
    n = x.shape[1]
    if kind == "chunk":
        step = -(-n // arg)
        sizes = [min(step, n - i) for i in range(0, n, step)]
    else:
        sizes = [arg] * (n // arg) + ([n % arg] if n % arg else []) if isinstance(arg, int) else list(arg)
    out, start = [], 0
    for size in sizes:
        out.append(x[:, start:start + size])
        start += size
    return tuple(out)


def _spatial_mean(x, dims):
    """``x.mean(dims)`` over H and W of an NCHW tensor, taken with keepdim and flattened."""
    if x.dim() == 4 and sorted(d % 4 for d in dims) == [2, 3]:
        return x.mean(dims, keepdim=True).flatten(1)
    return x.mean(dims)


def _local_response_norm(x, size: int, alpha: float, beta: float, k: float):
    """``nn.LocalResponseNorm`` with a 2-D average pool over (channels, H*W) where torch uses a 3-D one,
    which ExecuTorch's portable kernels lack (the program would not load); the same arithmetic."""
    from torch.nn import functional as F

    if x.dim() != 4:
        return F.local_response_norm(x, size, alpha, beta, k)
    n, c, h, w = x.shape
    squares = F.pad((x * x).reshape(n, 1, c, h * w), (0, 0, size // 2, (size - 1) // 2))
    mean = F.avg_pool2d(squares, (size, 1), stride=1).reshape(n, c, h, w)
    return x / (mean * alpha + k).pow(beta)


def _split_call(node):
    """(input, chunks or sizes, kind) of a channel chunk/split node, else None."""
    import torch

    if node.op == "call_method" and node.target in _SPLITS:
        kind = node.target
    elif node.op == "call_function" and node.target in (torch.chunk, torch.split):
        kind = "chunk" if node.target is torch.chunk else "split"
    else:
        return None
    args = list(node.args) + [None] * 3
    dim = node.kwargs.get("dim", args[2] if args[2] is not None else 0)
    arg = node.kwargs.get("chunks", node.kwargs.get("split_size_or_sections", node.kwargs.get("split_size", args[1])))
    return (args[0], arg, kind) if dim == 1 and arg is not None else None


def _mean_call(node):
    """(input, dims) of a mean over two dims without keepdim, else None."""
    import torch

    if not ((node.op == "call_method" and node.target == "mean") or
            (node.op == "call_function" and node.target is torch.mean)):
        return None
    args = list(node.args) + [None] * 3
    dims = node.kwargs.get("dim", args[1])
    keepdim = node.kwargs.get("keepdim", args[2] or False)
    if keepdim or not isinstance(dims, (list, tuple)) or len(dims) != 2 or "dtype" in node.kwargs:
        return None
    return args[0], tuple(dims)


def for_executorch(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """A copy of ``module`` whose channel chunk/split calls are slices and whose spatial means keep
    their dims, so ExecuTorch's XNNPACK partitioner delegates them, and whose LocalResponseNorm layers
    use ops the portable kernels have; the module itself when there is nothing to change. Returns the
    module and what changed."""
    from ..prepare import _Tracer

    try:
        tracer = _Tracer()
        graph = tracer.trace(module)
    except Exception:  # an untraceable model is lowered as it is
        return module, []
    modules = dict(module.named_modules())
    splits = means = lrns = 0
    for node in list(graph.nodes):
        lrn = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(lrn, nn.LocalResponseNorm):
            with graph.inserting_before(node):
                new = graph.call_function(_local_response_norm, (node.args[0], lrn.size, lrn.alpha, lrn.beta, lrn.k))
            lrns += 1
        elif (call := _split_call(node)) is not None:
            with graph.inserting_before(node):
                new = graph.call_function(_channel_slices, (call[0], call[1], call[2]))
            splits += 1
        elif (call := _mean_call(node)) is not None:
            with graph.inserting_before(node):
                new = graph.call_function(_spatial_mean, call)
            means += 1
        else:
            continue
        node.replace_all_uses_with(new)
        graph.erase_node(node)
    if not splits and not means and not lrns:
        return module, []
    rewritten = fx.GraphModule(tracer.root, graph, type(module).__name__).eval()
    changes = []
    if splits:
        changes.append(f"{splits} channel split(s) done as slices, which XNNPACK delegates (split_with_sizes "
                       "falls back to ExecuTorch's portable kernels)")
    if means:
        changes.append(f"{means} spatial mean(s) taken with keepdim then flattened, which XNNPACK delegates")
    if lrns:
        changes.append(f"{lrns} LocalResponseNorm layer(s) computed with a 2-D average pool (ExecuTorch's "
                       "portable kernels have no 3-D one)")
    return rewritten, changes

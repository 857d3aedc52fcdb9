"""Graph changes that keep a .tflite inside XNNPACK's partitions.

litert-torch lowers a padded max-pool to PADV2 (pad with -inf) + MAX_POOL_2D. XNNPACK does not
take PADV2, so the interpreter leaves XNNPACK, pads on its reference kernel and comes back: a
partition break at the stem of ResNet and ShuffleNet. When the pool's input comes straight from a
ReLU (so it is >= 0), padding with zeros gives the same maximum, and a zero PAD is delegated.
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
    from .prepare import _Tracer, _set_submodule

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


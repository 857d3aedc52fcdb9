"""conv -> batch-norm found where the arithmetic is: in a torch.fx graph of the model, whichever
module's forward makes the call.

A layer counts as stock when its class's ``forward`` is torch.nn's own (a subclass that only adds
attributes is still stock) and it carries no hooks: such a layer stays one node (``call_module``)
and may be replaced as a whole. Every other module is traced through, so a BatchNorm subclass
that adds an activation (timm's ``BatchNormAct2d``), a conv-norm-act block or a functional
``F.batch_norm`` call all show up as the ``batch_norm`` call they make. Folding such a call edits
only the forward of the module that makes it (its *owner*): that one call is removed (or, when no
conv can absorb it, replaced by its eval-mode scale and shift) and the rest of the forward (the
activation, the drop) is kept as it was.

Parts of a model fx cannot trace are handled child by child: each traceable subtree is a scope.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

# Positional parameters of the functional forms that fold (torch's and F's spellings).
_CONV_PARAMS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_LINEAR_PARAMS = ("input", "weight", "bias")
_CONV_FUNCTIONS = {F.conv1d: _CONV_PARAMS, F.conv2d: _CONV_PARAMS, F.conv3d: _CONV_PARAMS,
                   torch.conv1d: _CONV_PARAMS, torch.conv2d: _CONV_PARAMS, torch.conv3d: _CONV_PARAMS,
                   F.linear: _LINEAR_PARAMS}
_BN_FUNCTIONS = {
    F.batch_norm: ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"),
    torch.batch_norm: ("input", "weight", "bias", "running_mean", "running_var", "training", "momentum", "eps",
                       "cudnn_enabled"),
}
_BN_DEFAULTS = {"weight": None, "bias": None, "training": False, "momentum": 0.1, "eps": 1e-5}


def is_stock(m: nn.Module) -> bool:
    """torch.nn's own forward (subclasses that do not override it included), no hooks, not a container."""
    if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)) or has_hooks(m):
        return False
    forward = getattr(type(m), "forward", None)
    # a torch.fx GraphModule's generated forward has no module (None)
    return (getattr(forward, "__module__", None) or "").startswith(("torch.nn.", "torch.ao.nn."))


def has_hooks(m: nn.Module) -> bool:
    """Forward hooks or pre-hooks: code outside ``forward`` that a replacement would lose."""
    return bool(m._forward_hooks or m._forward_pre_hooks)


class StockLeafTracer(fx.Tracer):
    """Stock layers (and any module ``extra_leaf`` accepts) stay single nodes; everything else is
    traced through. A module whose forward fx cannot trace (control flow on values, ``math`` on
    shapes) becomes a single opaque node instead, and is listed in ``opaque``."""

    def __init__(self, extra_leaf=lambda m: False):
        super().__init__()
        self.extra_leaf = extra_leaf
        self.opaque: dict[str, str] = {}  # module path -> why fx could not trace it
        self._opaque_ids: set[int] = set()

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return id(m) in self._opaque_ids or self.extra_leaf(m) or is_stock(m)

    def call_module(self, m, forward, args, kwargs):
        path = self.path_of_module(m)
        if self.is_leaf_module(m, path):
            return super().call_module(m, forward, args, kwargs)
        last, stack = self.graph._root.prev, dict(self.module_stack)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as exc:
            created = []
            node = last.next
            while node is not self.graph._root:
                created.append(node)
                node = node.next
            for node in reversed(created):  # the partial trace of m, last first (no users left)
                self.graph.erase_node(node)
            self.module_stack.clear()
            self.module_stack.update(stack)
            first = str(exc).splitlines()[0][:120] if str(exc) else ""
            self.opaque[path] = f"{type(exc).__name__}: {first}"
            self._opaque_ids.add(id(m))
            return super().call_module(m, forward, args, kwargs)


class _ShallowTracer(fx.Tracer):
    """The root's own forward only: every submodule call stays one node."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return True


@dataclass
class Scope:
    """One traced subtree: its path in the model ('' for the whole model) and its graph."""

    path: str
    graph: fx.Graph

    def name(self, target: str) -> str:
        return f"{self.path}.{target}" if self.path else target


def trace_scopes(model: nn.Module, extra_leaf=lambda m: False) -> tuple[list[Scope], list[tuple[str, str]]]:
    """The model traced whole, each module fx cannot trace kept as one node and its children traced
    as scopes of their own (the same where the model's own forward cannot be traced): the scopes,
    and (module path, reason) for the modules that stay opaque."""
    scopes, opaque = [], []

    def visit(path: str, mod: nn.Module) -> None:
        if is_stock(mod) or extra_leaf(mod):
            return
        tracer = StockLeafTracer(extra_leaf)
        try:
            graph = tracer.trace(mod)
        except Exception as exc:
            first = str(exc).splitlines()[0][:120] if str(exc) else ""
            opaque.append((path or "(model)", f"{type(exc).__name__}: {first}"))
            for name, child in mod.named_children():
                visit(f"{path}.{name}" if path else name, child)
            return
        scopes.append(Scope(path, graph))
        for inner, why in tracer.opaque.items():
            full = f"{path}.{inner}" if path else inner
            opaque.append((full, why))
            for name, child in mod.get_submodule(inner).named_children():
                visit(f"{full}.{name}", child)

    visit("", model)
    return scopes, opaque


def get_path(root: nn.Module, target: str):
    return functools.reduce(getattr, target.split("."), root) if target else root


def bind(node: fx.Node, params: tuple[str, ...], defaults: dict | None = None) -> dict:
    """The call's arguments by parameter name."""
    out = dict(defaults or {})
    out.update(zip(params, node.args))
    out.update(node.kwargs)
    return out


def owner(node: fx.Node, scope: Scope) -> str:
    """The module whose forward made this call (its path in the whole model)."""
    stack = node.meta.get("nn_module_stack") or {}
    inner = next(reversed(stack.values()))[0] if stack else ""
    inner = inner if isinstance(inner, str) else ""
    return scope.name(inner) if inner else scope.path


@dataclass
class NormCall:
    """A foldable batch-norm: a stock module, or a functional call with its statistics as attributes."""

    node: fx.Node
    module: str | None            # the stock BN module's path, or None for a call
    stats: object                 # has running_mean, running_var, weight, bias, eps (bn_scale_shift's inputs)
    owner: str                    # for a call: the module whose forward makes it
    key: str = ""                 # for a call: its running_mean's path relative to the owner
    type_name: str = ""
    num_features: int = 0


@dataclass
class ConvCall:
    """A layer that can absorb a per-channel affine map after it."""

    node: fx.Node
    module: str | None            # the stock layer's path, or None for a call
    weight: str = ""              # for a call: the weight's path in the whole model
    bias: str | None = None       # for a call: the bias's path, None when the call has none
    owner: str = ""
    kind: type = nn.Conv2d        # nn.Conv2d-like (weight: out, in, *k) or nn.Linear
    out_channels: int = 0
    type_name: str = ""


@dataclass
class _Stats:
    running_mean: torch.Tensor
    running_var: torch.Tensor
    weight: torch.Tensor | None
    bias: torch.Tensor | None
    eps: float


def channel_slice(bn, start: int, stop: int) -> _Stats:
    """The statistics of channels ``start:stop`` of a batch-norm (a module or a call's)."""
    def part(t):
        return t[start:stop] if t is not None else None

    return _Stats(part(bn.running_mean), part(bn.running_var), part(getattr(bn, "weight", None)),
                  part(getattr(bn, "bias", None)), float(bn.eps))


def concatenated_convs(node, scope: Scope, model: nn.Module, layer_types: tuple) -> list[ConvCall] | None:
    """The layers whose outputs a channel concatenation joins (timm's MixedConv2d), each read only there."""
    if not (isinstance(node, fx.Node) and node.op == "call_function" and node.target is torch.cat):
        return None
    parts = node.args[0] if node.args else node.kwargs.get("tensors")
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    if dim != 1 or not isinstance(parts, (list, tuple)) or len(set(parts)) != len(parts):
        return None
    convs = [conv_call(p, scope, model, layer_types) if isinstance(p, fx.Node) else None for p in parts]
    if any(c is None or c.kind is nn.Linear or len(value_users(c.node)) != 1 for c in convs):
        return None
    return convs


def _attr_target(arg, scope: Scope) -> str | None:
    return scope.name(arg.target) if isinstance(arg, fx.Node) and arg.op == "get_attr" else None


def norm_call(node: fx.Node, scope: Scope, model: nn.Module, foldable_module) -> NormCall | None:
    """``node`` as a foldable batch-norm (eval mode, running statistics), or None."""
    if node.op == "call_module":
        mod = get_path(model, scope.name(node.target))
        if foldable_module(mod):
            return NormCall(node, scope.name(node.target), mod, "", type_name=type(mod).__name__,
                            num_features=int(mod.running_mean.numel()))
        return None
    if node.op != "call_function" or node.target not in _BN_FUNCTIONS:
        return None
    args = bind(node, _BN_FUNCTIONS[node.target], _BN_DEFAULTS)
    if args.get("training") is not False or not isinstance(args.get("eps"), (int, float)):
        return None
    targets = {k: _attr_target(args.get(k), scope) for k in ("running_mean", "running_var", "weight", "bias")}
    if targets["running_mean"] is None or targets["running_var"] is None:
        return None
    if any(args.get(k) is not None and targets[k] is None for k in ("weight", "bias")):
        return None  # an affine computed at run time
    tensors = {k: (get_path(model, t) if t else None) for k, t in targets.items()}
    stats = _Stats(tensors["running_mean"], tensors["running_var"], tensors["weight"], tensors["bias"],
                   float(args["eps"]))
    where = owner(node, scope)
    key = targets["running_mean"][len(where) + 1:] if where else targets["running_mean"]
    owner_type = type(get_path(model, where)).__name__
    return NormCall(node, None, stats, where, key, type_name=f"{owner_type} (batch_norm call)",
                    num_features=int(stats.running_mean.numel()))


def conv_call(node: fx.Node, scope: Scope, model: nn.Module, layer_types: tuple) -> ConvCall | None:
    """``node`` as a layer that can absorb the affine map after it, or None."""
    if node.op == "call_module":
        mod = get_path(model, scope.name(node.target))
        if isinstance(mod, layer_types) and is_stock(mod):
            out = mod.out_features if isinstance(mod, nn.Linear) else mod.out_channels
            return ConvCall(node, scope.name(node.target), kind=type(mod), out_channels=out,
                            type_name=type(mod).__name__)
        return None
    if node.op != "call_function" or node.target not in _CONV_FUNCTIONS:
        return None
    args = bind(node, _CONV_FUNCTIONS[node.target], {"bias": None})
    weight = _attr_target(args.get("weight"), scope)
    bias = _attr_target(args.get("bias"), scope)
    if weight is None or (args.get("bias") is not None and bias is None):
        return None
    w = get_path(model, weight)
    kind = nn.Linear if node.target is F.linear else nn.Conv2d
    where = owner(node, scope)
    return ConvCall(node, None, weight, bias, where, kind, int(w.shape[0]),
                    f"{type(get_path(model, where)).__name__} ({getattr(node.target, '__name__', 'conv')} call)")


_SHAPE_ATTRS = {"shape", "ndim", "dtype", "device", "is_cuda"}
_SHAPE_METHODS = {"size", "dim", "numel", "type"}


def value_users(node: fx.Node) -> list[fx.Node]:
    """The users that read ``node``'s values, not only its shape (a block's ``_assert(x.ndim == 4)``
    reads the shape, which folding does not change)."""
    def shape_only(u: fx.Node) -> bool:
        if u.op == "call_function" and u.target is getattr:
            return len(u.args) > 1 and u.args[1] in _SHAPE_ATTRS
        return u.op == "call_method" and u.target in _SHAPE_METHODS

    return [u for u in node.users if not shape_only(u)]


def uses_of(graph: fx.Graph, target: str) -> int:
    """How many nodes read the attribute or call the module ``target``."""
    return sum(1 for n in graph.nodes if n.op in ("get_attr", "call_module") and n.target == target)


@dataclass
class OwnerEdits:
    """Edits to one module's own forward, applied on a shallow trace of it."""

    drop: list[str] = field(default_factory=list)                     # batch_norm calls removed (by key)
    scale_shift: list[tuple[str, nn.Module]] = field(default_factory=list)  # (key, ScaleShift) replacing calls
    add_bias: list[tuple[str, torch.Tensor]] = field(default_factory=list)  # (weight key, bias) for calls without


def rewrite_owner(module: nn.Module, edits: OwnerEdits) -> fx.GraphModule:
    """``module`` as a GraphModule of its own forward with ``edits`` applied (submodules kept as they are)."""
    graph = _ShallowTracer().trace(module)
    gm = fx.GraphModule(module, graph, class_name=type(module).__name__)
    for i, (key, replacement) in enumerate(edits.scale_shift):
        node = _find_norm(gm.graph, key)
        name = f"cnnexport_scale_shift_{i}"
        gm.add_submodule(name, replacement)
        with gm.graph.inserting_before(node):
            new = gm.graph.call_module(name, (bind(node, _BN_FUNCTIONS[node.target])["input"],))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
    for key in edits.drop:
        node = _find_norm(gm.graph, key)
        node.replace_all_uses_with(bind(node, _BN_FUNCTIONS[node.target])["input"])
        gm.graph.erase_node(node)
    for i, (key, bias) in enumerate(edits.add_bias):
        node = next(n for n in gm.graph.nodes if n.op == "call_function" and n.target in _CONV_FUNCTIONS
                    and _attr_target(bind(n, _CONV_FUNCTIONS[n.target]).get("weight"), Scope("", graph)) == key)
        name = f"cnnexport_folded_bias_{i}"
        gm.register_parameter(name, nn.Parameter(bias, requires_grad=False))
        with gm.graph.inserting_before(node):
            attr = gm.graph.get_attr(name)
        if len(node.args) > 2:
            node.args = (*node.args[:2], attr, *node.args[3:])
        else:
            node.kwargs = {**node.kwargs, "bias": attr}
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def _find_norm(graph: fx.Graph, key: str) -> fx.Node:
    for n in graph.nodes:
        if n.op == "call_function" and n.target in _BN_FUNCTIONS:
            mean = bind(n, _BN_FUNCTIONS[n.target]).get("running_mean")
            if isinstance(mean, fx.Node) and mean.op == "get_attr" and mean.target == key:
                return n
    raise LookupError(f"batch_norm call on '{key}' not found on a second trace")

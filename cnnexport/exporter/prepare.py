"""Exact eval semantics before export, always on a copy of the caller's module.

What ``prepare`` does, in order:

1. drops training-only auxiliary heads (GoogLeNet, Inception v3 list them in ``aux_heads``);
2. removes weight normalisation (both PyTorch APIs), materialising the weight;
3. folds each ``inference_scale`` a module declares (traditional dropout's 1 - p) into the next linear layer's
   weights (through ReLU, pooling and reshapes, which commute with a positive factor), or into
   the previous one's; replaces every other dropout by the identity;
4. folds each BatchNorm (and InstanceNorm with running statistics, which eval-mode computes the
   same way) into the conv, linear or transposed conv before it:
   w' = w * g / sqrt(v + eps),  b' = (b - m) * g / sqrt(v + eps) + beta;
   or, when nothing before can absorb it, into an unpadded conv right after it; a BatchNorm that
   no layer can absorb becomes ``ScaleShift`` (one Mul and one Add with constant tensors);
5. records the normalisations that cannot be folded (statistics computed per sample).

The module graph is read from a torch.fx trace; a model fx cannot trace is handled through
``nn.Sequential`` adjacency instead, with a warning.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_TRANSPOSES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_LINEARS = (*_CONVS, *_CONV_TRANSPOSES, nn.Linear)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
# Layers through which a positive scalar factor passes unchanged: f(c x) = c f(x) for c > 0.
_HOMOGENEOUS_MODULES = (nn.Identity, nn.Flatten, nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d,
                        nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                        nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool2d, *_DROPOUTS)
_HOMOGENEOUS_FUNCTIONS = {torch.flatten, torch.relu, F.relu, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
                          torch.reshape, torch.squeeze, torch.unsqueeze, torch.mean}
_HOMOGENEOUS_METHODS = {"flatten", "view", "reshape", "squeeze", "unsqueeze", "relu", "mean", "contiguous"}
_KEPT_NORMS = {
    nn.LayerNorm: "statistics computed per sample at inference; exported as LayerNormalization",
    nn.GroupNorm: "statistics computed per sample at inference; exported as InstanceNormalization over the "
                  "groups + per-channel Mul/Add (ONNX GroupNormalization before opset 21 scales per group)",
    nn.InstanceNorm1d: "statistics computed per sample (no running statistics); exported as InstanceNormalization",
    nn.InstanceNorm2d: "statistics computed per sample (no running statistics); exported as InstanceNormalization",
    nn.InstanceNorm3d: "statistics computed per sample (no running statistics); exported as InstanceNormalization",
    nn.LocalResponseNorm: "depends on each input's neighbouring channels; exported as LRN",
}


def _inference_scale(m: nn.Module) -> float | None:
    """The factor a module declares its eval mode multiplies by (``inference_scale``: traditional
    dropout's 1 - p, e.g. ``models.layers.TraditionalDropout``), or None."""
    scale = getattr(m, "inference_scale", None)  # a tensor of that name (a parameter) is not one
    return float(scale) if isinstance(scale, (int, float)) and not isinstance(scale, bool) else None


def _is_foldable_norm(m: nn.Module) -> bool:
    """BatchNorm, or InstanceNorm with running statistics: eval mode is a per-channel affine map."""
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return m.running_mean is not None and m.running_var is not None
    if isinstance(m, nn.modules.instancenorm._InstanceNorm):
        return m.track_running_stats and m.running_mean is not None
    return False


class ScaleShift(nn.Module):
    """Per-channel ``x * scale + shift`` (channel axis 1): an eval-mode BatchNorm made constant."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        view = (-1,) + (1,) * (x.dim() - 2)  # x.dim() is static, so the exporter folds this reshape
        return x * self.scale.reshape(view) + self.shift.reshape(view)


@dataclass
class PrepareSummary:
    """What ``prepare`` changed, for the report."""

    was_training: bool = False
    folded: list[dict] = field(default_factory=list)
    scale_shift: list[dict] = field(default_factory=list)
    dropout_removed: list[str] = field(default_factory=list)
    dropout_types: list[str] = field(default_factory=list)  # the class of each, in the same order
    dropout_folded: list[dict] = field(default_factory=list)
    weight_norm_removed: list[str] = field(default_factory=list)
    kept_normalizations: list[dict] = field(default_factory=list)
    aux_removed: list[str] = field(default_factory=list)
    aux_params: int = 0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "was_training": self.was_training,
            "folded": self.folded,
            "scale_shift": self.scale_shift,
            "dropout_removed": len(self.dropout_removed),
            # every train-only random op replaced by the identity: class -> count, and the modules
            "train_only_removed": dict(sorted(Counter(self.dropout_types).items())),
            "train_only_modules": [{"module": n, "type": t} for n, t in zip(self.dropout_removed, self.dropout_types)],
            "dropout_folded": self.dropout_folded,
            "weight_norm_removed": self.weight_norm_removed,
            "aux_removed": self.aux_removed,
        }

    def folded_counts(self) -> list[dict]:
        """What was folded into what, with counts (the report's ``graph.folded``)."""
        rows = Counter((f["type"], f["into_type"], f["kind"]) for f in self.folded)
        rows.update((d["type"], d["into_type"], d["kind"]) for d in self.dropout_folded)
        rows.update((s["type"], "Mul+Add (scale and shift)", "scale_shift") for s in self.scale_shift)
        return [{"what": w, "into": i, "kind": k, "count": n} for (w, i, k), n in sorted(rows.items())]


def prepare(module: nn.Module, *, fold_bn: bool = True) -> nn.Module:
    """An eval-mode copy of ``module`` with BatchNorm folded and dropout removed."""
    return prepare_with_summary(module, fold_bn=fold_bn)[0]


def prepare_with_summary(module: nn.Module, *, fold_bn: bool = True) -> tuple[nn.Module, PrepareSummary]:
    """``prepare`` plus a record of every change made."""
    summary = PrepareSummary(was_training=module.training)
    prepared = _deepcopy(module).eval()
    _remove_aux_heads(prepared, summary)
    _remove_weight_norm(prepared, summary)
    for p in prepared.parameters():
        p.requires_grad_(False)
    graph = _trace(prepared, summary)
    _fold_traditional_dropout(prepared, graph, summary)
    _remove_dropout(prepared, summary)
    if fold_bn:
        _fold_batchnorms(prepared, graph, summary)
    _record_kept_norms(prepared, summary, fold_bn)
    if summary.was_training:
        summary.warnings.append("the model was in training mode; it was exported in eval mode")
    return prepared, summary


# --- helpers ---------------------------------------------------------------------------------------

def _deepcopy(module: nn.Module) -> nn.Module:
    """``copy.deepcopy``, also for modules with legacy ``weight_norm``: after a forward pass their
    ``weight`` is a non-leaf tensor, which deepcopy refuses; a detached stand-in is used meanwhile."""
    stash = []
    for m in module.modules():
        for hook in m._forward_pre_hooks.values():
            value = getattr(m, getattr(hook, "name", ""), None) if type(hook).__name__ == "WeightNorm" else None
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                stash.append((m, hook.name, value))
                setattr(m, hook.name, value.detach())
    try:
        return copy.deepcopy(module)
    finally:
        for m, name, value in stash:
            setattr(m, name, value)


def _set_submodule(root: nn.Module, name: str, new: nn.Module | None) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


class _Tracer(fx.Tracer):
    """torch.nn's layers and modules with an ``inference_scale`` stay single nodes."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _inference_scale(m) is not None or super().is_leaf_module(m, qualname)


def _trace(model: nn.Module, summary: PrepareSummary) -> fx.Graph | None:
    try:
        return _Tracer().trace(model)
    except Exception as exc:
        summary.warnings.append(
            f"torch.fx could not trace the model ({type(exc).__name__}); BatchNorm and dropout folded only between "
            "neighbours inside nn.Sequential"
        )
        return None


def _module(node, modules: dict) -> nn.Module | None:
    return modules.get(node.target) if isinstance(node, fx.Node) and node.op == "call_module" else None


def _called_once(graph: fx.Graph, target: str) -> bool:
    return sum(1 for n in graph.nodes if n.op == "call_module" and n.target == target) == 1


def _is_homogeneous(node: fx.Node, modules: dict) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), _HOMOGENEOUS_MODULES)
    if node.op == "call_function":
        return node.target in _HOMOGENEOUS_FUNCTIONS
    return node.op == "call_method" and node.target in _HOMOGENEOUS_METHODS


def _describe(node) -> str:
    if not isinstance(node, fx.Node):
        return "a constant"
    if node.op == "placeholder":
        return "the model input"
    if node.op == "call_module":
        return f"{node.target}"
    target = getattr(node.target, "__name__", str(node.target))
    return {"cat": "a concatenation", "add": "an addition", "iadd": "an addition"}.get(target, f"'{target}'")


# --- aux heads and weight norm ---------------------------------------------------------------------

def _remove_aux_heads(model: nn.Module, summary: PrepareSummary) -> None:
    for name, mod in list(model.named_modules()):
        heads = getattr(mod, "aux_heads", ())
        for head in heads:
            sub = getattr(mod, head, None)
            if isinstance(sub, nn.Module):
                summary.aux_params += sum(p.numel() for p in sub.parameters())
                setattr(mod, head, None)
                summary.aux_removed.append(f"{name}.{head}" if name else head)
        if heads and hasattr(mod, "aux_logits"):
            mod.aux_logits = False


def _remove_weight_norm(model: nn.Module, summary: PrepareSummary) -> None:
    """Both APIs: ``parametrizations.weight_norm`` and the legacy ``utils.weight_norm`` hook."""
    from torch.nn.utils import parametrize

    for name, mod in list(model.named_modules()):
        if parametrize.is_parametrized(mod):
            kinds = {p: [type(f).__name__ for f in mod.parametrizations[p]] for p in mod.parametrizations.keys()}
            if all(k == ["_WeightNorm"] for k in kinds.values()):
                _set_submodule(model, name, _unparametrized(mod, list(kinds)))
                summary.weight_norm_removed += [f"{name}.{p}" if name else p for p in kinds]
            else:
                summary.warnings.append(f"'{name}' has parametrizations other than weight norm; left in place")
        for hook in list(mod._forward_pre_hooks.values()):
            if type(hook).__name__ == "WeightNorm":
                torch.nn.utils.remove_weight_norm(mod, hook.name)
                summary.weight_norm_removed.append(f"{name}.{hook.name}" if name else hook.name)


def _unparametrized(mod: nn.Module, names: list[str]) -> nn.Module:
    """A plain copy of a parametrized module with the parametrized tensors materialised.

    ``parametrize.remove_parametrizations`` would delete the properties from the generated
    ``Parametrized*`` class, which the caller's module (of which ``mod`` is a deep copy) shares.
    """
    values = {n: getattr(mod, n).detach().clone() for n in names}
    plain = object.__new__(type(mod).__bases__[0])  # copy.copy would hit the parametrized class's pickling guard
    plain.__dict__.update(mod.__dict__)
    plain._modules = {k: v for k, v in mod._modules.items() if k != "parametrizations"}
    plain._parameters = {**mod._parameters, **{n: nn.Parameter(v, requires_grad=False) for n, v in values.items()}}
    return plain


# --- dropout ---------------------------------------------------------------------------------------

# Train-only random ops of other libraries, known by class name: torchvision's StochasticDepth,
# timm's DropPath / DropBlock2d, DropConnect and the like. Removed only when eval mode is the identity.
_TRAIN_ONLY_NAME = re.compile(r"dropout|droppath|drop_path|stochasticdepth|dropblock|dropconnect|droplayer|shakedrop",
                              re.IGNORECASE)


def _is_train_only_random(mod: nn.Module) -> bool:
    if isinstance(mod, _DROPOUTS):
        return True
    if _inference_scale(mod) is not None or not _TRAIN_ONLY_NAME.search(type(mod).__name__):
        return False
    return _identity_in_eval(mod)


@torch.no_grad()
def _identity_in_eval(mod: nn.Module) -> bool:
    """Whether ``mod`` (in eval mode) returns its input unchanged, on a few shapes."""
    try:
        return all(torch.equal(mod(x), x) for x in (torch.randn(2, 8, 5, 5), torch.randn(2, 6, 8)))
    except Exception:
        return False


def _remove_dropout(model: nn.Module, summary: PrepareSummary) -> None:
    """Replace every train-only random op (torch's dropouts, stochastic depth / drop path) by the identity."""
    for name, mod in list(model.named_modules()):
        if name and not any(name.startswith(r + ".") for r in summary.dropout_removed) and _is_train_only_random(mod):
            _set_submodule(model, name, nn.Identity())
            summary.dropout_removed.append(name)
            summary.dropout_types.append(type(mod).__name__)


@torch.no_grad()
def _scale_layer(layer: nn.Module, factor: float, with_bias: bool) -> None:
    layer.weight.mul_(factor)
    if with_bias and layer.bias is not None:
        layer.bias.mul_(factor)


def _fold_traditional_dropout(model: nn.Module, graph: fx.Graph | None, summary: PrepareSummary) -> None:
    modules = dict(model.named_modules())
    for name, mod in list(modules.items()):
        factor = _inference_scale(mod)
        if factor is None:
            continue
        target = _dropout_target(model, graph, name, modules)
        if target is None:
            from ..errors import ExportError

            raise ExportError(f"{type(mod).__name__} '{name}' has no linear layer next to it to absorb its inference "
                              f"factor {factor:g} (put it directly before or after a Linear/Conv)")
        layer_name, direction = target
        layer = modules[layer_name]
        _scale_layer(layer, factor, with_bias=direction == "previous")
        _set_submodule(model, name, nn.Identity())
        summary.dropout_folded.append({"dropout": name, "into": layer_name, "factor": factor,
                                       "type": type(mod).__name__, "into_type": type(layer).__name__,
                                       "kind": f"{direction}_layer"})


def _dropout_target(model, graph, name: str, modules: dict) -> tuple[str, str] | None:
    if graph is None:
        return _sequential_neighbour(model, name)
    node = next((n for n in graph.nodes if n.op == "call_module" and n.target == name), None)
    if node is None or not _called_once(graph, name):
        return None
    cur = node  # forward: through homogeneous ops to the next linear layer, which gets the factor on its weight
    while len(cur.users) == 1:
        nxt = next(iter(cur.users))
        if nxt.args and nxt.args[0] is cur and isinstance(_module(nxt, modules), _LINEARS) \
                and _called_once(graph, nxt.target):
            return nxt.target, "next"
        if not (nxt.args and nxt.args[0] is cur and _is_homogeneous(nxt, modules)):
            break
        cur = nxt
    cur = node.args[0] if node.args else None  # backward: the previous linear layer, weight and bias
    seen = node
    while isinstance(cur, fx.Node) and len(cur.users) == 1 and next(iter(cur.users)) is seen:
        if isinstance(_module(cur, modules), _LINEARS) and _called_once(graph, cur.target):
            return cur.target, "previous"
        if not _is_homogeneous(cur, modules):
            break
        seen, cur = cur, cur.args[0] if cur.args else None
    return None


def _sequential_neighbour(model: nn.Module, name: str) -> tuple[str, str] | None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if not isinstance(parent, nn.Sequential):
        return None
    names = [n for n, _ in parent.named_children()]
    i = names.index(child)
    prefix = f"{parent_name}." if parent_name else ""
    for j in range(i + 1, len(names)):
        m = parent[j]
        if isinstance(m, _LINEARS):
            return prefix + names[j], "next"
        if not isinstance(m, _HOMOGENEOUS_MODULES):
            break
    for j in range(i - 1, -1, -1):
        m = parent[j]
        if isinstance(m, _LINEARS):
            return prefix + names[j], "previous"
        if not isinstance(m, _HOMOGENEOUS_MODULES):
            break
    return None


# --- batchnorm -------------------------------------------------------------------------------------

def bn_scale_shift(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN (or InstanceNorm with running stats) as y = x * scale + shift, in float64."""
    var = bn.running_var.double()
    mean = bn.running_mean.double()
    gamma = bn.weight.double() if getattr(bn, "weight", None) is not None else torch.ones_like(var)
    beta = bn.bias.double() if getattr(bn, "bias", None) is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    return scale, beta - mean * scale


def _with_params(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    fused = copy.deepcopy(layer)
    dtype = layer.weight.dtype
    fused.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
    fused.bias = nn.Parameter(bias.to(dtype), requires_grad=False)
    return fused


@torch.no_grad()
def fold_conv_bn(layer: nn.Module, bn: nn.Module) -> nn.Module:
    """A conv/linear/transposed conv computing ``layer`` followed by eval-mode ``bn``
    (grouped and depthwise convs included)."""
    scale, shift = bn_scale_shift(bn)
    w = layer.weight.double()
    if isinstance(layer, _CONV_TRANSPOSES):  # weight: (in, out / groups, *k); output channels on axis 1 per group
        g = layer.groups
        grouped = w.reshape(g, w.shape[0] // g, w.shape[1], *w.shape[2:])
        w_new = (grouped * scale.reshape(g, 1, -1, *([1] * (w.dim() - 2)))).reshape(w.shape)
    else:
        w_new = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(scale)
    return _with_params(layer, w_new, bias * scale + shift)


@torch.no_grad()
def fold_bn_into_next_conv(bn: nn.Module, conv: nn.Conv2d) -> nn.Module:
    """A conv computing eval-mode ``bn`` followed by ``conv``. Exact only without padding: a padded
    border would see the shift where the original sees zeros."""
    s, t = bn_scale_shift(bn)
    w = conv.weight.double()
    out, cin_g = w.shape[0], w.shape[1]
    group = torch.arange(out) // (out // conv.groups)
    idx = group[:, None] * cin_g + torch.arange(cin_g)[None, :]  # input channel seen by weight[o, i]
    tail = (1,) * (w.dim() - 2)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros(out, dtype=torch.float64)
    bias = bias + (w * t[idx].reshape(out, cin_g, *tail)).sum(dim=tuple(range(1, w.dim())))
    return _with_params(conv, w * s[idx].reshape(out, cin_g, *tail), bias)


def _unpadded(conv: nn.Module) -> bool:
    return isinstance(conv, _CONVS) and (conv.padding == "valid" or all(p == 0 for p in conv.padding))


def _fold_batchnorms(model: nn.Module, graph: fx.Graph | None, summary: PrepareSummary) -> None:
    modules = dict(model.named_modules())
    done: set[str] = set()
    for bn_name, layer_name, kind in _bn_fold_plan(model, graph, modules):
        bn, layer = modules[bn_name], model.get_submodule(layer_name)
        fused = fold_conv_bn(layer, bn) if kind == "previous" else fold_bn_into_next_conv(bn, layer)
        _set_submodule(model, layer_name, fused)
        _set_submodule(model, bn_name, nn.Identity())
        done.add(bn_name)
        summary.folded.append({"batchnorm": bn_name, "into": layer_name, "kind": kind, "type": type(bn).__name__,
                               "into_type": type(layer).__name__})
    reasons = _unfoldable_reasons(graph, modules)
    for name, mod in modules.items():
        if name in done or not _is_foldable_norm(mod):
            continue
        scale, shift = bn_scale_shift(mod)
        dtype = mod.running_mean.dtype
        _set_submodule(model, name, ScaleShift(scale.to(dtype), shift.to(dtype)))
        summary.scale_shift.append({"batchnorm": name, "type": type(mod).__name__,
                                    "reason": reasons.get(name, "no conv or linear layer next to it")})


def _bn_fold_plan(model, graph, modules) -> list[tuple[str, str, str]]:
    """(bn, layer, 'previous' | 'next') for every BN a neighbouring layer can absorb."""
    if graph is None:
        return _sequential_pairs(model)
    # Applied in graph order on the current modules, so one conv may absorb the BN before it and the one after it.
    plan = []
    for node in graph.nodes:
        bn = _module(node, modules)
        if bn is None or not _is_foldable_norm(bn) or not _called_once(graph, node.target):
            continue
        src = node.args[0] if node.args else None
        src_mod = _module(src, modules)
        if isinstance(src_mod, _LINEARS) and len(src.users) == 1 and _called_once(graph, src.target) \
                and _out_features(src_mod) == bn.num_features:
            plan.append((node.target, src.target, "previous"))
            continue
        if len(node.users) == 1:
            nxt = next(iter(node.users))
            nxt_mod = _module(nxt, modules)
            if _unpadded(nxt_mod) and nxt.args[0] is node and _called_once(graph, nxt.target) \
                    and nxt_mod.in_channels == bn.num_features:
                plan.append((node.target, nxt.target, "next"))
    return plan


def _out_features(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _unfoldable_reasons(graph, modules) -> dict[str, str]:
    if graph is None:
        return {}
    reasons = {}
    for node in graph.nodes:
        if _is_foldable_norm(_module(node, modules)):
            src = node.args[0] if node.args else None
            users = ", ".join(_describe(u) for u in node.users) or "nothing"
            reasons[node.target] = (f"its input comes from {_describe(src)}, not from a conv or linear layer, and "
                                    f"its output feeds {users}, not an unpadded conv")
    return reasons


def _sequential_pairs(model: nn.Module) -> list[tuple[str, str, str]]:
    pairs = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Sequential):
            children = list(mod.named_children())
            for (a_name, a), (b_name, b) in zip(children, children[1:]):
                if isinstance(a, _LINEARS) and _is_foldable_norm(b) and _out_features(a) == b.num_features:
                    prefix = f"{name}." if name else ""
                    pairs.append((prefix + b_name, prefix + a_name, "previous"))
    return pairs


def _kept_norm_kind(mod: nn.Module) -> type | None:
    """The torch normalisation class ``mod`` is (subclasses included: ConvNeXt's LayerNorm2d is a
    LayerNorm), most specific first."""
    matches = [cls for cls in _KEPT_NORMS if isinstance(mod, cls)]
    return min(matches, key=lambda cls: -len(cls.__mro__)) if matches else None


def _record_kept_norms(model: nn.Module, summary: PrepareSummary, fold_bn: bool) -> None:
    counts: Counter = Counter()
    for mod in model.modules():
        if _is_foldable_norm(mod):
            if not fold_bn:
                counts[(type(mod).__name__, None)] += 1
        elif (kind := _kept_norm_kind(mod)) is not None:
            counts[(type(mod).__name__, kind)] += 1
    for (name, kind), n in counts.items():
        reason = _KEPT_NORMS[kind] if kind else "--no-fold-bn: kept as BatchNormalization on request"
        entry = {"type": name, "count": n, "reason": reason}
        if kind is not None and kind.__name__ != name:
            entry["kind"] = kind.__name__
        summary.kept_normalizations.append(entry)


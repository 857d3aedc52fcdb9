"""Exact eval semantics before export, always on a copy of the caller's module.

What ``prepare`` does, in order:

1. drops training-only auxiliary heads (GoogLeNet, Inception v3 list them in ``aux_heads``);
2. removes weight normalisation (both PyTorch APIs), materialising the weight;
3. folds each ``inference_scale`` a module declares (traditional dropout's 1 - p) into the next linear layer's
   weights (through ReLU, pooling and reshapes, which commute with a positive factor), or into
   the previous one's; replaces every other dropout by the identity;
4. applies the deploy-time reparameterisation blocks offer (``reparameterize.py``), makes each frozen
   BatchNorm module the ``nn.BatchNorm2d`` it equals, then folds each
   BatchNorm (and InstanceNorm with running statistics, which eval-mode computes the same way)
   into the conv, linear or transposed conv before it, wherever the call sits (``fold_graph.py``):
   w' = w * g / sqrt(v + eps),  b' = (b - m) * g / sqrt(v + eps) + beta;
   or, when nothing before can absorb it, into an unpadded conv right after it; a BatchNorm that
   no layer can absorb becomes ``ScaleShift`` (one Mul and one Add with constant tensors);
5. records the normalisations that cannot be folded (statistics computed per sample).

The module graph is read from a torch.fx trace whose leaves are the stock torch layers; a module fx
cannot trace stays whole (its children are traced on their own), with a warning. Every change is
counted (``Budget``), so ``limit`` can replay the first k of them: the prepare check bisects with it.
"""

from __future__ import annotations

import copy
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from .fold_graph import (ConvCall, NormCall, OwnerEdits, Scope, channel_slice, concatenated_convs, conv_call,
                         get_path, is_stock, norm_call, rewrite_owner, trace_scopes, uses_of, value_users)
from .reparameterize import reparameterize_blocks


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


_FROZEN_BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


def frozen_batchnorm_equivalent(m: nn.Module) -> nn.Module | None:
    """For a frozen BatchNorm (torchvision's ``FrozenBatchNorm2d``, timm's ``FrozenBatchNormAct2d``,
    and the like: statistics and affine held as buffers, the arithmetic in its own forward, which no
    ``batch_norm`` call shows), the ``nn.BatchNorm2d`` in eval mode, followed by the module's ``drop`` and
    ``act`` where it has them, that computes the same; checked on a probe. None for any other module."""
    if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)) \
            or "batchnorm" not in type(m).__name__.lower():
        return None
    tensors = [getattr(m, n, None) for n in _FROZEN_BN_TENSORS]
    eps = getattr(m, "eps", None)
    if not isinstance(eps, float) or not all(isinstance(t, torch.Tensor) and t.dim() == 1 for t in tensors) \
            or len({t.numel() for t in tensors}) != 1:
        return None
    weight, bias, mean, var = (t.detach() for t in tensors)
    bn = nn.BatchNorm2d(weight.numel(), eps=eps).to(weight.dtype).eval()
    with torch.no_grad():
        for dst, src in ((bn.weight, weight), (bn.bias, bias), (bn.running_mean, mean), (bn.running_var, var)):
            dst.copy_(src)
    bn.requires_grad_(False)
    tail = [t for t in (getattr(m, "drop", None), getattr(m, "act", None)) if isinstance(t, nn.Module)]
    new = nn.Sequential(bn, *tail) if tail else bn
    probe = torch.randn(2, weight.numel(), 3, 3, generator=torch.Generator().manual_seed(0)).to(weight.dtype)
    try:
        with torch.no_grad():
            same = torch.allclose(m(probe), new(probe), rtol=1e-5, atol=1e-6)
    except Exception:  # not an NCHW per-channel map after all
        return None
    return new if same else None


def _thaw_frozen_batchnorms(model: nn.Module, summary: PrepareSummary, budget: Budget) -> None:
    """Each frozen BatchNorm module replaced by its ``nn.BatchNorm2d`` equivalent, which the fold then takes."""
    for name, mod in list(model.named_modules()):
        new = frozen_batchnorm_equivalent(mod) if name else None
        if new is not None and budget.take(f"frozen BatchNorm '{name}' as nn.BatchNorm2d"):
            _set_submodule(model, name, new)
            summary.frozen_batchnorms.append({"module": name, "type": type(mod).__name__})


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
    # other reparametrisations of a weight baked into it: spectral norm, orthogonal, a user's parametrization
    parametrizations_baked: list[dict] = field(default_factory=list)
    pruning_made_permanent: list[dict] = field(default_factory=list)  # torch.nn.utils.prune's masks applied
    kept_normalizations: list[dict] = field(default_factory=list)
    aux_removed: list[str] = field(default_factory=list)
    aux_params: int = 0
    reparameterized: list[dict] = field(default_factory=list)
    frozen_batchnorms: list[dict] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)  # every change, in the order made
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
            "parametrizations_baked": self.parametrizations_baked,
            "pruning_made_permanent": self.pruning_made_permanent,
            "aux_removed": self.aux_removed,
            "reparameterized": self.reparameterized,
            "frozen_batchnorms": self.frozen_batchnorms,
            "changes": len(self.changes),
        }

    def folded_counts(self) -> list[dict]:
        """What was folded into what, with counts (the report's ``graph.folded``)."""
        rows = Counter((f["type"], f["into_type"], f["kind"], f.get("level", "module")) for f in self.folded)
        rows.update((d["type"], d["into_type"], d["kind"], "module") for d in self.dropout_folded)
        rows.update((s["type"], "Mul+Add (scale and shift)", "scale_shift", s.get("level", "module"))
                    for s in self.scale_shift)
        return [{"what": w, "into": i, "kind": k, "level": lv, "count": n} for (w, i, k, lv), n in sorted(rows.items())]


def prepare(module: nn.Module, *, fold_bn: bool = True, reparameterize: bool = True) -> nn.Module:
    """An eval-mode copy of ``module`` with BatchNorm folded and dropout removed."""
    return prepare_with_summary(module, fold_bn=fold_bn, reparameterize=reparameterize)[0]


def prepare_with_summary(module: nn.Module, *, fold_bn: bool = True, reparameterize: bool = True,
                         limit: int | None = None) -> tuple[nn.Module, PrepareSummary]:
    """``prepare`` plus a record of every change made. ``limit``: make only the first ``limit``
    changes (the prepare check bisects over them to name the one that broke a model)."""
    summary = PrepareSummary(was_training=module.training)
    budget = Budget(limit)
    prepared = _deepcopy(module).eval()
    _remove_aux_heads(prepared, summary, budget)
    _bake_weight_parametrizations(prepared, summary, budget)
    _make_pruning_permanent(prepared, summary, budget)
    for p in prepared.parameters():
        p.requires_grad_(False)
    if reparameterize:
        summary.reparameterized = reparameterize_blocks(prepared, budget)
    if fold_bn:
        _thaw_frozen_batchnorms(prepared, summary, budget)
    scopes, untraced = trace_scopes(prepared, extra_leaf=lambda m: _inference_scale(m) is not None)
    if untraced:
        where = ", ".join(f"'{p}' ({why})" for p, why in untraced[:3]) + (" ..." if len(untraced) > 3 else "")
        summary.warnings.append(f"torch.fx could not trace {len(untraced)} module(s): {where}; each was kept as it "
                                "is, and only the modules inside it were folded")
    graph = scopes[0].graph if scopes and scopes[0].path == "" else None
    _fold_traditional_dropout(prepared, graph, summary, budget)
    _remove_dropout(prepared, summary, budget)
    if fold_bn:
        prepared = _fold_batchnorms(prepared, scopes, summary, budget)
    _record_kept_norms(prepared, summary, fold_bn)
    summary.changes = budget.taken
    if summary.was_training:
        summary.warnings.append("the model was in training mode; it was exported in eval mode")
    return prepared, summary


class Budget:
    """Counts the changes ``prepare`` makes, in order, and stops making them after ``limit``."""

    def __init__(self, limit: int | None = None):
        self.limit = limit
        self.taken: list[str] = []

    def take(self, change: str) -> bool:
        if self.limit is not None and len(self.taken) >= self.limit:
            return False
        self.taken.append(change)
        return True


# --- helpers ---------------------------------------------------------------------------------------

def _hooked_tensor(hook) -> str | None:
    """The tensor a forward pre-hook recomputes before every call: legacy ``weight_norm``'s and ``spectral_norm``'s
    ``name``, a ``torch.nn.utils.prune`` method's ``_tensor_name``; None for other hooks."""
    if type(hook).__name__ in ("WeightNorm", "SpectralNorm"):
        return getattr(hook, "name", None)
    if _is_pruning(hook):
        return getattr(hook, "_tensor_name", None)
    return None


def _is_pruning(hook) -> bool:
    from torch.nn.utils import prune

    return isinstance(hook, prune.BasePruningMethod)


def _deepcopy(module: nn.Module) -> nn.Module:
    """``copy.deepcopy``, also for modules with legacy ``weight_norm`` or ``spectral_norm`` or pruned by
    ``torch.nn.utils.prune``: after a forward pass their ``weight`` is a non-leaf tensor, which deepcopy refuses;
    a detached stand-in is used meanwhile."""
    stash = []
    for m in module.modules():
        for hook in m._forward_pre_hooks.values():
            name = _hooked_tensor(hook)
            value = getattr(m, name, None) if name else None
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                stash.append((m, name, value))
                setattr(m, name, value.detach())
    try:
        return copy.deepcopy(module)
    finally:
        for m, name, value in stash:
            setattr(m, name, value)


def _set_submodule(root: nn.Module, name: str, new: nn.Module | None) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


class _Tracer(fx.Tracer):
    """torch.nn's layers and modules with an ``inference_scale`` stay single nodes (the XNNPACK
    rewrites trace with it; prepare itself traces with ``fold_graph.StockLeafTracer``)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _inference_scale(m) is not None or super().is_leaf_module(m, qualname)


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

def _remove_aux_heads(model: nn.Module, summary: PrepareSummary, budget: Budget) -> None:
    for name, mod in list(model.named_modules()):
        heads = getattr(mod, "aux_heads", ())
        for head in heads:
            sub = getattr(mod, head, None)
            if isinstance(sub, nn.Module) and budget.take(f"remove the auxiliary head '{name}.{head}'"):
                summary.aux_params += sum(p.numel() for p in sub.parameters())
                setattr(mod, head, None)
                summary.aux_removed.append(f"{name}.{head}" if name else head)
        if heads and hasattr(mod, "aux_logits"):
            mod.aux_logits = False


def _bake_weight_parametrizations(model: nn.Module, summary: PrepareSummary, budget: Budget) -> None:
    """Weight norm in both APIs (``parametrizations.weight_norm``, the legacy ``utils.weight_norm`` hook), and
    every other parametrization (spectral norm in both APIs, orthogonal, a user's own): each weight baked as the
    eval-mode module computes it (spectral norm's stored singular vectors, no power iteration), so the exporters
    see a plain tensor (the ONNX exporters have no conversion for an orthogonal map's Householder product)."""
    from torch.nn.utils import parametrize

    for name, mod in list(model.named_modules()):
        if parametrize.is_parametrized(mod):
            kinds = {p: [type(f).__name__ for f in mod.parametrizations[p]] for p in mod.parametrizations.keys()}
            if budget.take(f"bake the parametrizations of '{name}'"):
                _set_submodule(model, name, _unparametrized(mod, list(kinds)))
                for tensor, chain in kinds.items():
                    qualified = f"{name}.{tensor}" if name else tensor
                    if chain == ["_WeightNorm"]:
                        summary.weight_norm_removed.append(qualified)
                    else:
                        summary.parametrizations_baked.append({"tensor": qualified, "parametrizations": chain})
        for hook in list(mod._forward_pre_hooks.values()):
            kind = type(hook).__name__
            if kind in ("WeightNorm", "SpectralNorm") and budget.take(f"remove {kind} of '{name}'"):
                qualified = f"{name}.{hook.name}" if name else hook.name
                if kind == "WeightNorm":
                    torch.nn.utils.remove_weight_norm(mod, hook.name)
                    summary.weight_norm_removed.append(qualified)
                else:  # eval mode: the weight with the stored singular vectors
                    torch.nn.utils.remove_spectral_norm(mod, hook.name)
                    summary.parametrizations_baked.append({"tensor": qualified, "parametrizations": ["SpectralNorm"]})


def _make_pruning_permanent(model: nn.Module, summary: PrepareSummary, budget: Budget) -> None:
    """``torch.nn.utils.prune``'s masks applied for good (``prune.remove``): the weight becomes ``weight_orig *
    weight_mask``, one plain parameter, and the forward pre-hook that recomputed it goes. The zeros stay dense
    in the files: the runtimes here do not skip them."""
    from torch.nn.utils import prune

    elements = zeros = 0
    for name, mod in list(model.named_modules()):
        for hook in [h for h in mod._forward_pre_hooks.values() if _is_pruning(h)]:
            tensor = hook._tensor_name
            if not budget.take(f"make the pruning of '{name}.{tensor}' permanent"):
                continue
            if not isinstance(getattr(mod, tensor, None), torch.Tensor):  # never run: the hook sets it
                setattr(mod, tensor, hook.apply_mask(mod))
            prune.remove(mod, tensor)
            weight = getattr(mod, tensor)
            zero = int((weight == 0).sum())
            elements, zeros = elements + weight.numel(), zeros + zero
            summary.pruning_made_permanent.append({
                "tensor": f"{name}.{tensor}" if name else tensor, "method": type(hook).__name__,
                "zeros": round(zero / weight.numel(), 4)})
    if summary.pruning_made_permanent:
        summary.warnings.append(
            f"{len(summary.pruning_made_permanent)} pruned tensor(s) (torch.nn.utils.prune) made permanent, "
            f"{zeros / elements:.0%} of their weights zero: the files hold the zeros densely, so the pruning makes "
            "them no smaller or faster here (remove whole channels for that)")


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


def _remove_dropout(model: nn.Module, summary: PrepareSummary, budget: Budget) -> None:
    """Replace every train-only random op (torch's dropouts, stochastic depth / drop path) by the identity."""
    for name, mod in list(model.named_modules()):
        if name and not any(name.startswith(r + ".") for r in summary.dropout_removed) and _is_train_only_random(mod) \
                and budget.take(f"remove the train-only {type(mod).__name__} '{name}'"):
            _set_submodule(model, name, nn.Identity())
            summary.dropout_removed.append(name)
            summary.dropout_types.append(type(mod).__name__)


@torch.no_grad()
def _scale_layer(layer: nn.Module, factor: float, with_bias: bool) -> None:
    layer.weight.mul_(factor)
    if with_bias and layer.bias is not None:
        layer.bias.mul_(factor)


def _fold_traditional_dropout(model: nn.Module, graph: fx.Graph | None, summary: PrepareSummary,
                              budget: Budget) -> None:
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
        if not budget.take(f"fold {type(mod).__name__} '{name}' (x{factor:g}) into '{layer_name}'"):
            continue
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


def _siblings(model: nn.Module, name: str) -> tuple[nn.Sequential, list[str], int, str] | None:
    """The nn.Sequential holding ``name``, its children's names, ``name``'s index and the path prefix."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if not isinstance(parent, nn.Sequential):
        return None
    names = [n for n, _ in parent.named_children()]
    return parent, names, names.index(child), f"{parent_name}." if parent_name else ""


def _sequential_neighbour(model: nn.Module, name: str) -> tuple[str, str] | None:
    if (found := _siblings(model, name)) is None:
        return None
    parent, names, i, prefix = found
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
def folded_params(weight: torch.Tensor, bias: torch.Tensor | None, bn,
                  transposed_groups: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) in float64 of a conv/linear (output channels on axis 0; a transposed conv's
    ``transposed_groups`` given) followed by eval-mode ``bn``."""
    scale, shift = bn_scale_shift(bn)
    w = weight.double()
    if transposed_groups is not None:  # weight: (in, out / groups, *k); output channels on axis 1 per group
        g = transposed_groups
        grouped = w.reshape(g, w.shape[0] // g, w.shape[1], *w.shape[2:])
        w_new = (grouped * scale.reshape(g, 1, -1, *([1] * (w.dim() - 2)))).reshape(w.shape)
    else:
        w_new = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    b = bias.double() if bias is not None else torch.zeros_like(scale)
    return w_new, b * scale + shift


@torch.no_grad()
def fold_conv_bn(layer: nn.Module, bn) -> nn.Module:
    """A conv/linear/transposed conv computing ``layer`` followed by eval-mode ``bn``
    (grouped and depthwise convs included)."""
    groups = layer.groups if isinstance(layer, _CONV_TRANSPOSES) else None
    return _with_params(layer, *folded_params(layer.weight, layer.bias, bn, groups))


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


def _fold_batchnorms(model: nn.Module, scopes: list[Scope], summary: PrepareSummary,
                     budget: "Budget") -> nn.Module:
    """Fold every batch-norm a neighbouring layer can absorb, wherever it is called; make the rest
    constant scale-and-shift. Returns the model (a GraphModule when its own forward was edited)."""
    edits: dict[str, OwnerEdits] = defaultdict(OwnerEdits)
    shared = _shared_tensors(model)
    handled: set[int] = set()  # id() of the stock BN modules and statistics tensors dealt with
    for scope in scopes:
        for node in list(scope.graph.nodes):
            norm = norm_call(node, scope, model, _is_stock_norm)
            if norm is None or id(norm.stats.running_mean) in handled:
                continue
            if norm.module is not None and uses_of(scope.graph, node.target) != 1:
                continue  # one module called twice: the neighbours differ
            handled.add(id(norm.stats.running_mean))
            src = node.args[0] if node.args else None
            conv = conv_call(src, scope, model, _LINEARS) if isinstance(src, fx.Node) else None
            if conv is not None and _absorbs(conv, norm, src, scope, model, shared):
                if budget.take(f"fold {norm.type_name} '{norm.module or norm.owner}' into {conv.type_name} "
                               f"'{conv.module or conv.owner}'"):
                    _apply_fold(model, conv, norm, edits)
                    summary.folded.append({"batchnorm": norm.module or f"{norm.owner}:{norm.key}",
                                           "into": conv.module or conv.weight.rpartition(".")[0],
                                           "kind": "previous", "level": "module" if norm.module else "graph",
                                           "type": norm.type_name, "into_type": conv.type_name})
                continue
            parts = concatenated_convs(src, scope, model, _LINEARS) if conv is None else None
            if parts and sum(c.out_channels for c in parts) == norm.num_features and all(
                    _absorbs(c, _channels(norm, c.out_channels), c.node, scope, model, shared) for c in parts):
                if budget.take(f"fold {norm.type_name} '{norm.module or norm.owner}' into the {len(parts)} layers "
                               "its input concatenates"):
                    start = 0
                    for c in parts:
                        _apply_fold(model, c, _channels(norm, c.out_channels, start), None)
                        summary.folded.append({"batchnorm": norm.module or f"{norm.owner}:{norm.key}",
                                               "into": c.module or c.weight.rpartition(".")[0],
                                               "kind": "previous_through_concat",
                                               "level": "module" if norm.module else "graph",
                                               "type": norm.type_name, "into_type": c.type_name,
                                               "channels": [start, start + c.out_channels]})
                        start += c.out_channels
                    _drop_norm(model, norm, edits)
                continue
            nxt = _next_conv(node, norm, scope, model) if norm.module is not None else None
            if nxt is not None:
                if budget.take(f"fold {norm.type_name} '{norm.module}' into the conv after it, '{nxt}'"):
                    layer = model.get_submodule(nxt)
                    _set_submodule(model, nxt, fold_bn_into_next_conv(norm.stats, layer))
                    _set_submodule(model, norm.module, nn.Identity())
                    summary.folded.append({"batchnorm": norm.module, "into": nxt, "kind": "next", "level": "module",
                                           "type": norm.type_name, "into_type": type(layer).__name__})
                continue
            if not budget.take(f"make {norm.type_name} '{norm.module or norm.owner}' a constant scale and shift"):
                continue
            scale, shift = bn_scale_shift(norm.stats)
            dtype = norm.stats.running_mean.dtype
            replacement = ScaleShift(scale.to(dtype), shift.to(dtype))
            if norm.module is not None:
                _set_submodule(model, norm.module, replacement)
            else:
                edits[norm.owner].scale_shift.append((norm.key, replacement))
            summary.scale_shift.append({"batchnorm": norm.module or f"{norm.owner}:{norm.key}",
                                        "level": "module" if norm.module else "graph",
                                        "type": norm.type_name, "reason": _unfoldable_reason(node, conv)})
    for name, mod in list(model.named_modules()):  # stock BNs outside every traced scope: by nn.Sequential order
        if _is_stock_norm(mod) and id(mod.running_mean) not in handled:
            handled.add(id(mod.running_mean))
            pair = _sequential_previous(model, name)
            if pair and budget.take(f"fold {type(mod).__name__} '{name}' into '{pair}'"):
                _set_submodule(model, pair, fold_conv_bn(model.get_submodule(pair), mod))
                _set_submodule(model, name, nn.Identity())
                summary.folded.append({"batchnorm": name, "into": pair, "kind": "previous", "level": "module",
                                       "type": type(mod).__name__, "into_type": type(model.get_submodule(pair)).__name__})
            elif budget.take(f"make {type(mod).__name__} '{name}' a constant scale and shift"):
                scale, shift = bn_scale_shift(mod)
                dtype = mod.running_mean.dtype
                _set_submodule(model, name, ScaleShift(scale.to(dtype), shift.to(dtype)))
                summary.scale_shift.append({"batchnorm": name, "type": type(mod).__name__,
                                            "reason": "outside the traced graph; no conv before it in its nn.Sequential"})
    return _apply_owner_edits(model, edits)


def _is_stock_norm(m: nn.Module) -> bool:
    """A foldable norm whose forward is torch's own: it can be replaced as a whole."""
    return _is_foldable_norm(m) and is_stock(m)


def _shared_tensors(model: nn.Module) -> set[int]:
    """id() of parameters and buffers registered under more than one name (tied weights)."""
    seen: Counter = Counter(id(t) for _, t in model.named_parameters(remove_duplicate=False))
    seen.update(id(t) for _, t in model.named_buffers(remove_duplicate=False))
    return {i for i, n in seen.items() if n > 1}


def _absorbs(conv: ConvCall, norm: NormCall, src: fx.Node, scope: Scope, model: nn.Module, shared: set[int]) -> bool:
    """Whether ``conv``'s output feeds only ``norm`` and its weights are its own (not tied, read once)."""
    if len(value_users(src)) != 1 or conv.out_channels != norm.num_features:
        return False
    if conv.module is not None:
        return uses_of(scope.graph, src.target) == 1 and id(get_path(model, conv.module).weight) not in shared
    paths = [t for t in (conv.weight, conv.bias) if t]
    relative = [t[len(scope.path) + 1:] if scope.path else t for t in paths]
    return all(uses_of(scope.graph, t) == 1 for t in relative) and not any(id(get_path(model, t)) in shared
                                                                          for t in paths)


def _channels(norm: NormCall, count: int, start: int = 0) -> NormCall:
    """``norm`` restricted to channels ``start:start + count`` (for one part of a concatenation)."""
    return NormCall(norm.node, norm.module, channel_slice(norm.stats, start, start + count), norm.owner, norm.key,
                    norm.type_name, count)


def _drop_norm(model: nn.Module, norm: NormCall, edits: dict[str, OwnerEdits]) -> None:
    if norm.module is not None:
        _set_submodule(model, norm.module, nn.Identity())
    else:
        edits[norm.owner].drop.append(norm.key)


def _apply_fold(model: nn.Module, conv: ConvCall, norm: NormCall, edits: dict[str, OwnerEdits] | None) -> None:
    """Fold ``norm`` into ``conv``'s weights; with ``edits``, also remove ``norm``."""
    if conv.module is not None:
        _set_submodule(model, conv.module, fold_conv_bn(model.get_submodule(conv.module), norm.stats))
    else:
        weight = get_path(model, conv.weight)
        bias = get_path(model, conv.bias) if conv.bias else None
        w, b = folded_params(weight, bias, norm.stats)
        _set_tensor(model, conv.weight, w.to(weight.dtype))
        if conv.bias:
            _set_tensor(model, conv.bias, b.to(weight.dtype))
        else:
            key = conv.weight[len(conv.owner) + 1:] if conv.owner else conv.weight
            edits[conv.owner].add_bias.append((key, b.to(weight.dtype)))
    if edits is not None:
        _drop_norm(model, norm, edits)


def _set_tensor(model: nn.Module, path: str, value: torch.Tensor) -> None:
    parent_name, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if attr in parent._parameters:
        setattr(parent, attr, nn.Parameter(value, requires_grad=False))
    else:
        setattr(parent, attr, value)


def _apply_owner_edits(model: nn.Module, edits: dict[str, OwnerEdits]) -> nn.Module:
    """Each module whose own forward makes a folded call becomes a GraphModule of that forward without
    the call (deepest first; its submodules and plain attributes are kept)."""
    for path in sorted(edits, key=lambda p: (-(p.count(".") + 1) if p else 1)):
        original = model.get_submodule(path) if path else model
        rewritten = rewrite_owner(original, edits[path])
        for key, value in vars(original).items():  # plain attributes (num_classes, cnnexport_name, ...)
            if not key.startswith("_") and key != "training" and not hasattr(rewritten, key):
                setattr(rewritten, key, value)
        rewritten.train(original.training)
        if path:
            _set_submodule(model, path, rewritten)
        else:
            model = rewritten
    return model


def _next_conv(node: fx.Node, norm: NormCall, scope: Scope, model: nn.Module) -> str | None:
    """The unpadded conv right after a stock BN that can absorb it (exact: no padded border)."""
    users = value_users(node)
    if len(users) != 1:
        return None
    nxt = users[0]
    if nxt.op != "call_module" or not nxt.args or nxt.args[0] is not node:
        return None
    mod = get_path(model, scope.name(nxt.target))
    if _unpadded(mod) and is_stock(mod) and uses_of(scope.graph, nxt.target) == 1 \
            and mod.in_channels == norm.num_features:
        return scope.name(nxt.target)
    return None


def _unfoldable_reason(node: fx.Node, conv: ConvCall | None) -> str:
    src = node.args[0] if node.args else None
    users = ", ".join(_describe(u) for u in node.users) or "nothing"
    if conv is not None:
        return (f"its input comes from {_describe(src)}, whose output also feeds another node or whose weights are "
                "shared, so folding would change them")
    return (f"its input comes from {_describe(src)}, not from a conv or linear layer, and its output feeds "
            f"{users}, not an unpadded conv")


def _sequential_previous(model: nn.Module, name: str) -> str | None:
    """The layer before ``name`` in its nn.Sequential, when it can absorb it (untraced models)."""
    found = _siblings(model, name)
    if found is None or found[2] == 0:
        return None
    parent, names, i, prefix = found
    prev, bn = parent[i - 1], parent[i]
    if isinstance(prev, _LINEARS) and is_stock(prev) and _out_features(prev) == bn.num_features:
        return prefix + names[i - 1]
    return None


def _out_features(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


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
            elif not is_stock(mod):
                counts[(type(mod).__name__, "custom")] += 1
        elif (kind := _kept_norm_kind(mod)) is not None:
            counts[(type(mod).__name__, kind)] += 1
    for (name, kind), n in counts.items():
        reason = (_KEPT_NORMS[kind] if kind not in (None, "custom") else
                  "--no-fold-bn: kept as BatchNormalization on request" if kind is None else
                  "its own forward (or a hook on it) could not be traced: kept as it computes, in eval mode")
        entry = {"type": name, "count": n, "reason": reason}
        if isinstance(kind, type) and kind.__name__ != name:
            entry["kind"] = kind.__name__
        summary.kept_normalizations.append(entry)


"""Exact eval semantics before export: BatchNorm folded, dropout removed, always on a copy.

A BatchNorm whose input comes straight from a conv (and from nothing else) is folded into that
conv:  w' = w * g / sqrt(v + eps),  b' = (b - m) * g / sqrt(v + eps) + beta.  A BatchNorm that
no conv can absorb becomes ``ScaleShift`` (one Mul and one Add with constant tensors), so an
exported graph never holds a BatchNormalization node.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import fx, nn

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


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
    aux_removed: list[str] = field(default_factory=list)
    aux_params: int = 0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "was_training": self.was_training,
            "folded": self.folded,
            "scale_shift": self.scale_shift,
            "dropout_removed": len(self.dropout_removed),
            "aux_removed": self.aux_removed,
        }


def prepare(module: nn.Module, *, fold_bn: bool = True) -> nn.Module:
    """An eval-mode copy of ``module`` with BatchNorm folded and dropout removed."""
    return prepare_with_summary(module, fold_bn=fold_bn)[0]


def prepare_with_summary(module: nn.Module, *, fold_bn: bool = True) -> tuple[nn.Module, PrepareSummary]:
    """``prepare`` plus a record of every change made."""
    summary = PrepareSummary(was_training=module.training)
    prepared = copy.deepcopy(module).eval()
    for p in prepared.parameters():
        p.requires_grad_(False)
    _remove_aux_heads(prepared, summary)
    _remove_dropout(prepared, summary)
    if fold_bn:
        _fold_batchnorms(prepared, summary)
    if summary.was_training:
        summary.warnings.append("the model was in training mode; it was exported in eval mode")
    return prepared, summary


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


def _remove_aux_heads(model: nn.Module, summary: PrepareSummary) -> None:
    """Training-only auxiliary classifiers (GoogLeNet, Inception v3 list them in ``aux_heads``)."""
    for name, mod in list(model.named_modules()):
        for head in getattr(mod, "aux_heads", ()):
            sub = getattr(mod, head, None)
            if isinstance(sub, nn.Module):
                summary.aux_params += sum(p.numel() for p in sub.parameters())
                setattr(mod, head, None)
                summary.aux_removed.append(f"{name}.{head}" if name else head)
        if getattr(mod, "aux_heads", ()) and hasattr(mod, "aux_logits"):
            mod.aux_logits = False


def _remove_dropout(model: nn.Module, summary: PrepareSummary) -> None:
    for name, mod in list(model.named_modules()):
        if name and isinstance(mod, _DROPOUTS):
            _set_submodule(model, name, nn.Identity())
            summary.dropout_removed.append(name)


def _conv_bn_pairs(model: nn.Module, summary: PrepareSummary) -> list[tuple[str, str]]:
    """(conv, bn) module names where the BN's only input is the conv's only use.

    Found on a torch.fx trace; when the model cannot be traced, falls back to adjacent
    modules inside ``nn.Sequential`` containers.
    """
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:
        summary.warnings.append(
            f"torch.fx could not trace the model ({type(exc).__name__}); BatchNorm folded only where a conv directly "
            "precedes it inside nn.Sequential"
        )
        return _sequential_pairs(model)
    pairs = []
    modules = dict(model.named_modules())
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), _BATCHNORMS):
            continue
        src = node.args[0] if node.args else None
        if (
            isinstance(src, fx.Node)
            and src.op == "call_module"
            and isinstance(modules.get(src.target), _CONVS)
            and len(src.users) == 1
            and _calls_of(graph, src.target) == 1
        ):
            pairs.append((src.target, node.target))
    return pairs


def _calls_of(graph: fx.Graph, target: str) -> int:
    return sum(1 for n in graph.nodes if n.op == "call_module" and n.target == target)


def _sequential_pairs(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Sequential):
            children = list(mod.named_children())
            for (a_name, a), (b_name, b) in zip(children, children[1:]):
                if isinstance(a, _CONVS) and isinstance(b, _BATCHNORMS):
                    prefix = f"{name}." if name else ""
                    pairs.append((prefix + a_name, prefix + b_name))
    return pairs


def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as y = x * scale + shift, computed in float64."""
    var = bn.running_var.double() if bn.running_var is not None else torch.ones(bn.num_features, dtype=torch.float64)
    mean = bn.running_mean.double() if bn.running_mean is not None else torch.zeros(bn.num_features, dtype=torch.float64)
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    return scale, beta - mean * scale


@torch.no_grad()
def fold_conv_bn(conv: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """A conv computing conv followed by eval-mode ``bn`` (grouped and depthwise included)."""
    scale, shift = bn_scale_shift(bn)
    fused = copy.deepcopy(conv)
    w = conv.weight.double()
    fused.weight = nn.Parameter(
        (w * scale.reshape(-1, *([1] * (w.dim() - 1)))).to(conv.weight.dtype), requires_grad=False
    )
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    fused.bias = nn.Parameter((bias * scale + shift).to(conv.weight.dtype), requires_grad=False)
    return fused


def _fold_batchnorms(model: nn.Module, summary: PrepareSummary) -> None:
    for conv_name, bn_name in _conv_bn_pairs(model, summary):
        bn = model.get_submodule(bn_name)
        if not bn.track_running_stats or bn.running_mean is None:
            continue
        _set_submodule(model, conv_name, fold_conv_bn(model.get_submodule(conv_name), bn))
        _set_submodule(model, bn_name, nn.Identity())
        summary.folded.append({"batchnorm": bn_name, "into": conv_name, "kind": "conv"})
    for name, mod in list(model.named_modules()):
        if isinstance(mod, _BATCHNORMS) and mod.track_running_stats and mod.running_mean is not None:
            scale, shift = bn_scale_shift(mod)
            dtype = mod.running_mean.dtype
            _set_submodule(model, name, ScaleShift(scale.to(dtype), shift.to(dtype)))
            summary.scale_shift.append({"batchnorm": name, "reason": "no conv directly before it to absorb it"})

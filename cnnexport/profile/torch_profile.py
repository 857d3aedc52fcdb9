"""Per-layer costs of a PyTorch module, from the aten operations it actually runs.

A ``TorchDispatchMode`` sees every operation, functional ones included (additions, concatenation,
channel shuffle's copy), and module hooks say which layer is running. Each leaf module becomes one
row; an operation called directly in a composite module's ``forward`` (e.g. a residual addition)
becomes a row of its own, named ``<module>/<op>``.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .costs import LayerCost, Profile

aten = torch.ops.aten

# Operations that only reinterpret memory: no arithmetic, no traffic.
_VIEWS = {
    aten.view, aten._unsafe_view, aten.t, aten.transpose, aten.permute, aten.expand, aten.slice, aten.select,
    aten.split, aten.split_with_sizes, aten.unsqueeze, aten.squeeze, aten.alias, aten.detach, aten.as_strided,
    aten.unbind, aten.chunk, aten.narrow, aten.lift_fresh, aten._reshape_alias, aten.reshape,
}
_NORMS = {aten._native_batch_norm_legit_no_training, aten.native_batch_norm, aten.batch_norm,
          aten._native_batch_norm_legit, aten.cudnn_batch_norm, aten.native_layer_norm, aten.native_group_norm,
          aten.instance_norm}


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _tensors(item)]
    return []


def _op_cost(func, args, out) -> tuple[int, int, int]:
    """(macs, memory access in elements, elementwise ops) of one aten call."""
    packet = func.overloadpacket
    if packet in _VIEWS:
        return 0, 0, 0
    outs = _tensors(out)
    out_elems = sum(t.numel() for t in outs)
    if packet is aten.convolution:
        x, weight, bias, transposed = args[0], args[1], args[2], args[6]
        per_out = weight.shape[1] * math.prod(weight.shape[2:])
        macs = (x.numel() if transposed else out_elems) * per_out
        return macs, x.numel() + weight.numel() + (bias.numel() if bias is not None else 0) + out_elems, 0
    if packet in (aten.addmm, aten.mm, aten.bmm):
        a, b = (args[1], args[2]) if packet is aten.addmm else (args[0], args[1])
        macs = a.numel() * b.shape[-1]
        bias = args[0].numel() if packet is aten.addmm else 0
        return macs, a.numel() + b.numel() + bias + out_elems, 0
    ins = sum(t.numel() for t in _tensors(list(args)))
    if packet in _NORMS:
        first = outs[0].numel() if outs else 0
        return 0, ins + first, 2 * first
    return 0, ins + out_elems, out_elems


class _Recorder(TorchDispatchMode):
    def __init__(self, stack: list[str]):
        super().__init__()
        self.stack = stack
        self.calls: list[tuple[str, str, int, int, int, list[int]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        macs, mem, ew = _op_cost(func, args, out)
        if macs or mem or ew:
            first = _tensors(out)
            shape = list(first[0].shape) if first else []
            self.calls.append((self.stack[-1], func.overloadpacket.__name__, macs, mem, ew, shape))
        return out


def profile_module(model: nn.Module, input_shape: tuple[int, ...]) -> Profile:
    """Profile ``model`` (run in eval mode on zeros of ``input_shape``; its modes are restored)."""
    names = {m: n for n, m in model.named_modules()}
    leaves = {m for m in model.modules() if not any(True for _ in m.children())}
    stack = [""]
    outputs: dict[str, list[int]] = {}
    written: dict[str, int] = {}  # output elements over every call (a module may be called several times)
    handles = []
    for module, name in names.items():
        handles.append(module.register_forward_pre_hook(lambda m, i, n=name: stack.append(n)))

        def post(m, i, o, n=name):
            stack.pop()
            if isinstance(o, torch.Tensor):
                outputs[n] = list(o.shape)
                written[n] = written.get(n, 0) + o.numel()
        handles.append(module.register_forward_hook(post))
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    recorder = _Recorder(stack)
    x = torch.zeros(input_shape)
    try:
        with torch.no_grad(), recorder:
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
    by_module = {n: m for m, n in names.items()}
    rows: "OrderedDict[str, LayerCost]" = OrderedDict()
    for owner, op, macs, mem, ew, shape in recorder.calls:
        module = by_module.get(owner)
        if module is not None and module in leaves:
            key, kind = owner, type(module).__name__
        else:
            key, kind = f"{owner or '<model>'}/{op}", op
            while key in rows and rows[key].type != kind:
                key += "'"
        row = rows.setdefault(key, LayerCost(name=key, type=kind))
        row.macs += macs
        row.memory_access += mem
        row.elementwise_ops += ew
        if key in outputs:  # a leaf module: its output
            row.output_shape = outputs[key]
            row.output_elements = written[key]
        else:  # a functional op, perhaps called several times in this module: every output it wrote
            row.output_shape = shape
            row.output_elements += math.prod(shape) if shape else 0
    for name, module in by_module.items():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if own and name in rows:
            rows[name].params = own
    aux = [getattr(m, h) for m in model.modules() for h in getattr(m, "aux_heads", ())
           if isinstance(getattr(m, h, None), nn.Module)]
    aux_params = sum(p.numel() for head in aux for p in head.parameters())
    notes = [f"training-only auxiliary heads not counted: {aux_params:,} params"] if aux_params else []
    return Profile(source="pytorch", input_shape=list(input_shape),
                   params=sum(p.numel() for p in model.parameters()) - aux_params, layers=list(rows.values()),
                   notes=notes)


def module_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of ``model`` at ``input_shape`` (the whole batch)."""
    return profile_module(model, input_shape).macs


def module_costs(model: nn.Module, input_shape: tuple[int, ...]):
    """The roofline's per-layer costs (``roofline.ModelCosts``) of ``model``: the input when no ONNX file
    exists (PyTorch alone measured); None when its profile is incomplete."""
    from .roofline import ModelCosts

    return ModelCosts.from_profile(profile_module(model, input_shape))

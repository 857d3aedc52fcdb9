"""A model trained with quantization-aware training (``torch.ao.quantization.prepare_qat``, eager or FX) keeps the
scales it learned: its int8 file is written from them, not calibrated anew.

Two plain copies are made of it. The int8 twin computes what the QAT model computes in eval mode with its
observers off: each fake-quantize module becomes a fixed quantize-dequantize (``QDQ``, which the ONNX exporter
writes as QuantizeLinear + DequantizeLinear), each QAT convolution or linear layer a plain one whose BatchNorm is
folded in (``QdqConv2d``, ``QdqLinear``: the weight quantized per channel by the layer's own trained scales), and
the observer hooks eager mode adds become explicit modules. The float twin is the same network without the
quantize-dequantize steps: the trained weights, BatchNorm folded, for the fp32 files.

Quantized ranges ONNX cannot express are widened: an activation trained on 0..127 (x86's ``reduce_range``)
is written as 0..255 at the same scale, as torch.ao's own ``convert`` deploys it (its quint8 tensors take
0..255), so values beyond the trained range saturate at 255 steps, not 127; the int8 check measures the file
against the QAT model itself."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError

_OBSERVER_HOOKS = ("_observer_forward_hook", "_observer_forward_pre_hook")
QAT_HELDOUT = "samples"  # the int8 check's held-out images where a QAT model's --int8 names no data


def is_qat(module: nn.Module) -> bool:
    """Whether ``module`` holds torch.ao's fake-quantize modules (QAT, prepared by prepare_qat or prepare_qat_fx)."""
    from torch.ao.quantization.fake_quantize import FakeQuantizeBase

    return any(isinstance(m, FakeQuantizeBase) for m in module.modules())


class QDQ(nn.Module):
    """A fake-quantize module's quantize-dequantize at its trained scale and zero point, fixed (per tensor, or per
    channel along its axis), in a range ONNX's QuantizeLinear has: int8 -128..127 or uint8 0..255."""

    def __init__(self, fake_quant: nn.Module):
        super().__init__()
        scheme = fake_quant.qscheme
        self.per_channel = scheme in (torch.per_channel_symmetric, torch.per_channel_affine)
        self.axis = int(getattr(fake_quant, "ch_axis", 0))
        self.low, self.high = (-128, 127) if int(fake_quant.quant_min) < 0 else (0, 255)
        self.trained_range = (int(fake_quant.quant_min), int(fake_quant.quant_max))
        self.register_buffer("scale", fake_quant.scale.detach().float().reshape(-1).clone())
        self.register_buffer("zero_point", fake_quant.zero_point.detach().reshape(-1).to(torch.int32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_channel:
            return torch.fake_quantize_per_channel_affine(x, self.scale, self.zero_point, self.axis, self.low,
                                                          self.high)
        return torch.fake_quantize_per_tensor_affine(x, float(self.scale), int(self.zero_point), self.low, self.high)


class QdqConv2d(nn.Module):
    """A QAT convolution as it deploys: its weight (BatchNorm folded in) quantized by its trained per-channel
    scales, a float bias, and the ReLU it was fused with."""

    def __init__(self, conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None, weight_qdq: QDQ, relu: bool):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None
        self.weight_qdq, self.relu = weight_qdq, relu
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        if conv.padding_mode != "zeros":
            raise UsageError(f"a QAT convolution with padding_mode={conv.padding_mode!r} is not supported: "
                             "train it with zero padding, or export the float model with --int8 --calib")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight_qdq(self.weight), self.bias, self.stride, self.padding, self.dilation, self.groups)
        return F.relu(y) if self.relu else y


class QdqLinear(nn.Module):
    """A QAT linear layer as it deploys: its weight quantized by its trained per-channel scales, and its ReLU."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, weight_qdq: QDQ, relu: bool):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None
        self.weight_qdq, self.relu = weight_qdq, relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight_qdq(self.weight), self.bias)
        return F.relu(y) if self.relu else y


@dataclass
class QatTwins:
    """``reference``: the QAT model in eval mode with its observers off (what the int8 file is checked against);
    ``int8``: its exportable copy; ``float``: the same without quantization, for the fp32 files; ``summary``:
    for the report."""

    reference: nn.Module
    int8: nn.Module
    float: nn.Module
    summary: dict = field(default_factory=dict)


def qat_twins(module: nn.Module) -> QatTwins:
    """The QAT model's reference, int8 twin and float twin (see the module's docstring); raises ``UsageError``
    naming a QAT layer it has no twin for."""
    from torch.ao.quantization import disable_observer

    reference = copy.deepcopy(module).eval()
    reference.apply(disable_observer)
    summary = {"layers": 0, "activations": 0, "widened_ranges": []}
    int8 = _twin(copy.deepcopy(reference), quantize=True, summary=summary)
    float_twin = _twin(copy.deepcopy(reference), quantize=False, summary={"layers": 0, "activations": 0,
                                                                        "widened_ranges": []})
    for m in (int8, float_twin):
        m.eval().requires_grad_(False)
    summary["widened_ranges"] = sorted(set(summary["widened_ranges"]))
    return QatTwins(reference, int8, float_twin, summary)


def _twin(module: nn.Module, *, quantize: bool, summary: dict) -> nn.Module:
    """``module`` with every QAT layer, fake-quantize module and observer hook replaced (in place, recursively)."""
    from torch.ao.quantization import DeQuantStub, QuantStub
    from torch.ao.quantization.fake_quantize import FakeQuantizeBase

    def activation(fake_quant) -> nn.Module:
        summary["activations"] += 1
        if not quantize:
            return nn.Identity()
        qdq = QDQ(fake_quant)
        if qdq.trained_range != (qdq.low, qdq.high):
            summary["widened_ranges"].append(f"{qdq.trained_range[0]}..{qdq.trained_range[1]}")
        return qdq

    def replace(child: nn.Module) -> nn.Module:
        if isinstance(child, FakeQuantizeBase):  # FX mode's activation_post_process_N, called by the graph
            return activation(child)
        if isinstance(child, DeQuantStub):
            return nn.Identity()
        post = _observer_hook(child, "_observer_forward_hook")
        pre = _observer_hook(child, "_observer_forward_pre_hook")
        fake_quant = getattr(child, "activation_post_process", None)
        if isinstance(child, QuantStub):
            return activation(fake_quant) if fake_quant is not None else nn.Identity()
        layer = _layer_twin(child, quantize, summary)
        if layer is None:
            _twin(child, quantize=quantize, summary=summary)
            if fake_quant is not None and not (post or pre):  # FloatFunctional: its methods call it by name
                child.activation_post_process = activation(fake_quant)
            layer = child
        if post or pre:
            for hooks in (child._forward_hooks, child._forward_pre_hooks):
                for key in [k for k, h in hooks.items() if getattr(h, "__name__", "") in _OBSERVER_HOOKS]:
                    del hooks[key]
            if layer is child and hasattr(child, "activation_post_process"):
                del child.activation_post_process
            qdq = activation(fake_quant)
            if not quantize:  # nothing to add: the layer alone, where prepare can fold a BatchNorm into it
                return layer
            return nn.Sequential(qdq, layer) if pre else nn.Sequential(layer, qdq)
        return layer

    done: dict[int, nn.Module] = {}  # one replacement per module, registered under every name it has (FX shares
    for name, child in list(module._modules.items()):  # an observer between an add's inputs and output)
        if child is not None:
            if id(child) not in done:
                done[id(child)] = replace(child)
            setattr(module, name, done[id(child)])
    return module


def _observer_hook(module: nn.Module, name: str) -> bool:
    hooks = module._forward_pre_hooks if name.endswith("pre_hook") else module._forward_hooks
    return any(getattr(h, "__name__", "") == name for h in hooks.values())


def _layer_twin(layer: nn.Module, quantize: bool, summary: dict) -> nn.Module | None:
    """A QAT convolution or linear layer's twin; None for a module that is neither (its children are looked at)."""
    import torch.ao.nn.intrinsic.qat as niqat
    import torch.ao.nn.qat as nnqat

    fused_bn = (niqat.ConvBn2d, niqat.ConvBnReLU2d)
    convs = fused_bn + (niqat.ConvReLU2d, nnqat.Conv2d)
    linears = (niqat.LinearReLU, nnqat.Linear)
    if not isinstance(layer, convs + linears):
        qat_type = type(layer).__module__.startswith(("torch.ao.nn.qat", "torch.ao.nn.intrinsic.qat"))
        if qat_type:
            raise UsageError(f"the QAT model holds {type(layer).__name__}, which cnnexport has no int8 twin for "
                             "(it takes Conv2d, Linear and their fusions with BatchNorm2d and ReLU): export the float "
                             "model with --int8 --calib")
        return None
    summary["layers"] += 1
    relu = isinstance(layer, (niqat.ConvBnReLU2d, niqat.ConvReLU2d, niqat.LinearReLU))
    weight, bias = layer.weight.detach(), layer.bias.detach() if layer.bias is not None else None
    if isinstance(layer, fused_bn):  # eval: bn(conv(x, fq(w * s)) / s + b), s = gamma / std: fold it
        bn = layer.bn
        std = torch.sqrt(bn.running_var + bn.eps)
        s = (bn.weight if bn.weight is not None else torch.ones_like(std)) / std
        weight = weight * s.reshape(-1, 1, 1, 1)
        shift = bn.bias if bn.bias is not None else torch.zeros_like(std)
        bias = ((bias if bias is not None else torch.zeros_like(std)) - bn.running_mean) * s + shift
    if not quantize:
        if isinstance(layer, linears):
            plain = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        else:
            plain = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                              layer.dilation, layer.groups, bias=bias is not None)
        with torch.no_grad():
            plain.weight.copy_(weight)
            if bias is not None:
                plain.bias.copy_(bias)
        return nn.Sequential(plain, nn.ReLU()) if relu else plain
    weight_qdq = QDQ(layer.weight_fake_quant)
    if isinstance(layer, linears):
        return QdqLinear(weight, bias, weight_qdq, relu)
    return QdqConv2d(layer, weight, bias, weight_qdq, relu)

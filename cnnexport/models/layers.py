"""Blocks shared by several families."""

from __future__ import annotations

import torch
from torch import nn


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without going below 90% of ``v`` (MobileNet, timm)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> activation; torchvision's ``Conv2dNormActivation`` layout
    (state_dict names ``0.weight``, ``1.*``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, activation: type[nn.Module] | None = nn.ReLU, padding: int | None = None):
        padding = (kernel_size - 1) // 2 if padding is None else padding
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if activation is not None:
            layers.append(activation(inplace=True) if activation in (nn.ReLU, nn.ReLU6) else activation())
        super().__init__(*layers)
        self.out_channels = out_channels


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle. The batch is -1 and never read from the tensor, so an export
    with a dynamic batch axis runs at any batch size (a traced ``x.size(0)`` would be frozen)."""
    _, channels, height, width = x.shape
    x = x.reshape(-1, groups, channels // groups, height, width)
    return x.transpose(1, 2).reshape(-1, channels, height, width)


def concat_shuffle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``channel_shuffle(torch.cat((a, b), 1), 2)`` as one interleave: channel 2i is a's i-th, 2i+1
    is b's. Same numbers, a smaller graph: in an NHWC .tflite two transposes per block instead of
    three (benchmarks/REPORT.md has the measured effect)."""
    _, channels, height, width = a.shape
    return torch.stack((a, b), 2).reshape(-1, 2 * channels, height, width)


def init_he_fan_out(module: nn.Module) -> None:
    """He (fan_out) for convs with zero bias, identity BatchNorm, N(0, 0.01) linears (torchvision's
    MobileNet/VGG scheme), for ``Module.apply``."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0, 0.01)
        nn.init.zeros_(module.bias)


class TraditionalDropout(nn.Module):
    """Dropout as in the original papers (e.g. AlexNet): training drops units WITHOUT rescaling the
    kept ones; inference multiplies every unit by (1 - p), the expected keep rate.

    (``nn.Dropout`` is inverted dropout: training scales kept units by 1/(1-p), inference is the
    identity.) ``cnnexport.exporter.prepare`` folds the (1 - p) factor into the next linear layer's
    weights, or the previous one's, so the exported graph holds no Dropout and no extra Mul.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    @property
    def inference_scale(self) -> float:
        """The constant factor eval mode multiplies by: ``prepare`` folds a module's ``inference_scale``
        into a neighbouring linear layer (any module may declare one)."""
        return 1.0 - self.p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return x * (torch.rand_like(x) >= self.p).to(x.dtype)
        return x * self.inference_scale

    def extra_repr(self) -> str:
        return f"p={self.p}"

"""MobileNetV1 (Howard et al.) with width multipliers, and MobileNetV2 (Sandler et al.) in
torchvision's layout (state_dict names included)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import ConvBNAct, init_he_fan_out, make_divisible
from .registry import register_model

# --- MobileNetV1 -----------------------------------------------------------------------------------

# Table 1 of the paper: (output channels, stride) of each depthwise-separable layer after conv 3x3/2, 32.
V1_LAYERS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
             (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU (the paper's Figure 3)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__(
            ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels),
            ConvBNAct(in_channels, out_channels, 1),
        )


class MobileNetV1(nn.Module):
    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.001):
        super().__init__()
        channels = int(32 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(3, channels, 3, 2)]
        for out, stride in V1_LAYERS:
            out = int(out * width_mult)
            layers.append(DepthwiseSeparable(channels, out, stride))
            channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        # The paper trains with little regularisation; TF-slim's reference uses dropout keep_prob 0.999.
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(channels, num_classes))
        self.apply(init_he_fan_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


V1 = dict(family="mobilenet_v1", paper="MobileNets: Efficient Convolutional Neural Networks for Mobile Vision "
          "Applications", arxiv="1704.04861", source="paper, Table 6")


@register_model(params=4_200_000, macs=569_000_000, **V1)
def mobilenet_v1(**kwargs) -> MobileNetV1:
    return MobileNetV1(1.0, **kwargs)


@register_model(params=2_600_000, macs=325_000_000, **V1)
def mobilenet_v1_0_75(**kwargs) -> MobileNetV1:
    return MobileNetV1(0.75, **kwargs)


@register_model(params=1_300_000, macs=149_000_000, **V1)
def mobilenet_v1_0_5(**kwargs) -> MobileNetV1:
    return MobileNetV1(0.5, **kwargs)


@register_model(params=500_000, macs=41_000_000, **V1)
def mobilenet_v1_0_25(**kwargs) -> MobileNetV1:
    return MobileNetV1(0.25, **kwargs)


# --- MobileNetV2 -----------------------------------------------------------------------------------

class InvertedResidual(nn.Module):
    """1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6) -> 1x1 linear projection; residual when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(inp, hidden_dim, kernel_size=1, activation=nn.ReLU6))
        layers.extend([
            ConvBNAct(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim, activation=nn.ReLU6),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ])
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# Table 2 of the paper: expansion t, channels c, repeats n, stride s.
V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
              (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, round_nearest: int = 8,
                 dropout: float = 0.2):
        super().__init__()
        input_channel = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [ConvBNAct(3, input_channel, stride=2, activation=nn.ReLU6)]
        for t, c, n, s in V2_SETTING:
            output_channel = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t))
                input_channel = output_channel
        features.append(ConvBNAct(input_channel, self.last_channel, kernel_size=1, activation=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        self.apply(init_he_fan_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


V2 = dict(family="mobilenet_v2", paper="MobileNetV2: Inverted Residuals and Linear Bottlenecks", arxiv="1801.04381")
# Width variants: the paper's Table 6 / Figure 5 figures as listed by the authors' TF-slim release.
V2_PAPER = dict(V2, source="paper (authors' TF release, 224x224)")


@register_model(params=3_504_872, macs=300_000_000, source="torchvision", torchvision_compatible=True, **V2)
def mobilenet_v2(**kwargs) -> MobileNetV2:
    return MobileNetV2(width_mult=1.0, **kwargs)


@register_model(params=6_060_000, macs=582_000_000, **V2_PAPER)
def mobilenet_v2_1_4(**kwargs) -> MobileNetV2:
    return MobileNetV2(width_mult=1.4, **kwargs)


@register_model(params=2_610_000, macs=209_000_000, **V2_PAPER)
def mobilenet_v2_0_75(**kwargs) -> MobileNetV2:
    return MobileNetV2(width_mult=0.75, **kwargs)


@register_model(params=1_950_000, macs=97_000_000, **V2_PAPER)
def mobilenet_v2_0_5(**kwargs) -> MobileNetV2:
    return MobileNetV2(width_mult=0.5, **kwargs)


@register_model(params=1_660_000, macs=59_000_000, **V2_PAPER)
def mobilenet_v2_0_35(**kwargs) -> MobileNetV2:
    return MobileNetV2(width_mult=0.35, **kwargs)

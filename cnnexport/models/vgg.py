"""VGG (Simonyan & Zisserman), torchvision's layout: configurations A, B, D, E, with or without BN."""

from __future__ import annotations

import torch
from torch import nn

from .layers import init_he_fan_out
from .registry import register_model

# Table 1 of the paper: conv widths, "M" = 2x2 max pooling.
CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_features(cfg: list[int | str], batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, features: nn.Sequential, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        self.apply(init_he_fan_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


PAPER = "Very Deep Convolutional Networks for Large-Scale Image Recognition"
_TV = dict(source="torchvision", paper=PAPER, arxiv="1409.1556", torchvision_compatible=True)


def _vgg(cfg: str, batch_norm: bool, **kwargs) -> VGG:
    return VGG(make_features(CONFIGS[cfg], batch_norm), **kwargs)


@register_model("vgg", params=132_863_336, macs=7_610_000_000, **_TV)
def vgg11(**kwargs) -> VGG:
    return _vgg("A", False, **kwargs)


@register_model("vgg", params=132_868_840, macs=7_610_000_000, **_TV)
def vgg11_bn(**kwargs) -> VGG:
    return _vgg("A", True, **kwargs)


@register_model("vgg", params=133_047_848, macs=11_310_000_000, **_TV)
def vgg13(**kwargs) -> VGG:
    return _vgg("B", False, **kwargs)


@register_model("vgg", params=133_053_736, macs=11_310_000_000, **_TV)
def vgg13_bn(**kwargs) -> VGG:
    return _vgg("B", True, **kwargs)


@register_model("vgg", params=138_357_544, macs=15_470_000_000, **_TV)
def vgg16(**kwargs) -> VGG:
    return _vgg("D", False, **kwargs)


@register_model("vgg", params=138_365_992, macs=15_470_000_000, **_TV)
def vgg16_bn(**kwargs) -> VGG:
    return _vgg("D", True, **kwargs)


@register_model("vgg", params=143_667_240, macs=19_630_000_000, **_TV)
def vgg19(**kwargs) -> VGG:
    return _vgg("E", False, **kwargs)


@register_model("vgg", params=143_678_248, macs=19_630_000_000, **_TV)
def vgg19_bn(**kwargs) -> VGG:
    return _vgg("E", True, **kwargs)

"""ResNet (He et al., 2015), laid out exactly as torchvision's ``resnet.py`` so that
torchvision checkpoints load with ``strict=True``.

ResNeXt reuses ``Bottleneck`` with ``groups``/``width_per_group``.
"""

from __future__ import annotations

from typing import Type

import torch
from torch import nn

from .registry import register_model

RESNET_PAPER = "Deep Residual Learning for Image Recognition"
RESNET_ARXIV = "1512.03385"


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        in_planes, out_planes, 3, stride=stride, padding=dilation, groups=groups, bias=False, dilation=dilation
    )


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs; used by ResNet-18/34."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride here, as torchvision's "ResNet v1.5"), 1x1 expand."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def init_resnet_weights(module: nn.Module) -> None:
    """torchvision's initialisation, applied with ``Module.apply``: He (fan_out) for convs, BN to identity."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.constant_(module.weight, 1)
        nn.init.constant_(module.bias, 0)


class ResNet(nn.Module):
    def __init__(self, block: Type[BasicBlock | Bottleneck], layers: list[int], num_classes: int = 1000,
                 groups: int = 1, width_per_group: int = 64, in_chans: int = 3):
        super().__init__()
        self.inplanes = 64
        self.dilation = 1
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(in_chans, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self.apply(init_resnet_weights)

    def _make_layer(self, block: Type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, self.dilation)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups, base_width=self.base_width,
                                dilation=self.dilation))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _resnet(block: Type[BasicBlock | Bottleneck], layers: list[int], **kwargs) -> ResNet:
    return ResNet(block, layers, **kwargs)


# Published figures: torchvision's model docs (params exact; GFLOPS = GMACs, two decimals).
_TV = dict(family="resnet", source="torchvision", paper=RESNET_PAPER, arxiv=RESNET_ARXIV, torchvision_compatible=True)


@register_model(params=11_689_512, macs=1_810_000_000, **_TV)
def resnet18(**kwargs) -> ResNet:
    return _resnet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register_model(params=21_797_672, macs=3_660_000_000, **_TV)
def resnet34(**kwargs) -> ResNet:
    return _resnet(BasicBlock, [3, 4, 6, 3], **kwargs)


@register_model(params=25_557_032, macs=4_090_000_000, **_TV)
def resnet50(**kwargs) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 6, 3], **kwargs)


@register_model(params=44_549_160, macs=7_800_000_000, **_TV)
def resnet101(**kwargs) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 23, 3], **kwargs)


@register_model(params=60_192_808, macs=11_510_000_000, **_TV)
def resnet152(**kwargs) -> ResNet:
    return _resnet(Bottleneck, [3, 8, 36, 3], **kwargs)


@register_model(params=68_883_240, macs=11_400_000_000, **{**_TV, "paper": "Wide Residual Networks",
                                                            "arxiv": "1605.07146"})
def wide_resnet50_2(**kwargs) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 6, 3], width_per_group=128, **kwargs)


RESNEXT = dict(family="resnext", source="torchvision", paper="Aggregated Residual Transformations for Deep Neural "
               "Networks", arxiv="1611.05431", torchvision_compatible=True)


@register_model(params=25_028_904, macs=4_230_000_000, **RESNEXT)
def resnext50_32x4d(**kwargs) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4, **kwargs)


@register_model(params=88_791_336, macs=16_410_000_000, **RESNEXT)
def resnext101_32x8d(**kwargs) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=8, **kwargs)


# --- CIFAR ResNets (paper section 4.2): 3 stages of 2n 3x3 layers, 16/32/64 channels -----------------

class CifarBasicBlock(nn.Module):
    """Two 3x3 convs. Shortcut option "A": subsample and zero-pad channels (no parameters);
    option "B": 1x1 projection + BN where the shape changes."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, shortcut: str = "A"):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.stride = stride
        self.pad = planes - inplanes
        self.downsample = None
        if (stride != 1 or inplanes != planes) and shortcut == "B":
            self.downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
        elif shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        self.option_a = self.downsample is None and (stride != 1 or inplanes != planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            identity = self.downsample(x)
        elif self.option_a:
            # x[:, :, ::s, ::s] as a 1x1 pooling with stride s: the same values, and a layer every converter
            # knows (ncnn has no strided slice)
            sub = nn.functional.max_pool2d(x, kernel_size=1, stride=self.stride)
            identity = nn.functional.pad(sub, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        else:
            identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def init_cifar_resnet(module: nn.Module) -> None:
    """He initialisation (the paper's [13]) for convs and linears."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10, shortcut: str = "A", in_chans: int = 3):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = conv3x3(in_chans, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        inplanes, stages = 16, []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(CifarBasicBlock(inplanes, planes, stride if i == 0 else 1, shortcut))
                inplanes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        self.apply(init_cifar_resnet)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# Published: the paper's Table 6 (params, option A).
_CIFAR = dict(family="resnet_cifar", input_size=(3, 32, 32), num_classes=10, source="paper, Table 6",
              paper=RESNET_PAPER, arxiv=RESNET_ARXIV)


@register_model(params=270_000, **_CIFAR)
def resnet20(shortcut: str = "A", **kwargs) -> CifarResNet:
    return CifarResNet(20, shortcut=shortcut, **kwargs)


@register_model(params=460_000, **_CIFAR)
def resnet32(shortcut: str = "A", **kwargs) -> CifarResNet:
    return CifarResNet(32, shortcut=shortcut, **kwargs)


@register_model(params=850_000, **_CIFAR)
def resnet56(shortcut: str = "A", **kwargs) -> CifarResNet:
    return CifarResNet(56, shortcut=shortcut, **kwargs)

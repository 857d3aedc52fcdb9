"""ShuffleNetV2's micro-benchmark networks (section 2): 10 stacked blocks on a 56x56 feature map.

No BatchNorm or classifier: the blocks are what the guidelines are about. ``build`` is importable
as ``cnnexport.study.micronets:build`` so a benchmark worker can rebuild a network from its settings.
"""

from __future__ import annotations

import torch
from torch import nn

from .analysis import series_width
from .paper import BLOCKS, SPATIAL


class Conv1x1Pair(nn.Sequential):
    """G1: c1 -> c2 -> c1, two 1x1 convolutions."""

    def __init__(self, c1: int, c2: int):
        super().__init__(nn.Conv2d(c1, c2, 1, bias=False), nn.Conv2d(c2, c1, 1, bias=False))


class GroupConv1x1(nn.Sequential):
    """G2: one 1x1 group convolution c -> c."""

    def __init__(self, c: int, groups: int):
        super().__init__(nn.Conv2d(c, c, 1, groups=groups, bias=False))


class Fragments(nn.Module):
    """G3: 1x1 convolutions as ``fragments`` pieces, in series (c -> m -> ... -> c) or in parallel
    (each branch c -> c/k, concatenated); FLOPs matched to one c -> c convolution."""

    def __init__(self, c: int, fragments: int, parallel: bool):
        super().__init__()
        self.parallel = parallel
        if parallel:
            self.branches = nn.ModuleList(nn.Conv2d(c, c // fragments, 1, bias=False) for _ in range(fragments))
        else:
            m = series_width(c, fragments)
            widths = [c] + [m] * (fragments - 1) + [c]
            self.branches = nn.ModuleList(nn.Conv2d(a, b, 1, bias=False) for a, b in zip(widths, widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.parallel:
            return torch.cat([b(x) for b in self.branches], 1)
        for conv in self.branches:
            x = conv(x)
        return x


class Bottleneck(nn.Module):
    """G4: ResNet's bottleneck, 1x1 -> 3x3 -> 1x1 at c channels, with or without ReLU and shortcut."""

    def __init__(self, c: int, relu: bool, shortcut: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 1, bias=False)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.conv3 = nn.Conv2d(c, c, 1, bias=False)
        self.act = nn.ReLU() if relu else nn.Identity()
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        if self.shortcut:
            out = out + x
        return self.act(out)


BLOCK_KINDS = {"conv1x1_pair": Conv1x1Pair, "group_conv1x1": GroupConv1x1, "fragments": Fragments,
               "bottleneck": Bottleneck}


def input_channels(block: str, settings: dict) -> int:
    return settings["c1"] if block == "conv1x1_pair" else settings["c"]


def build(block: str, num_classes: int | None = None, **settings) -> nn.Module:
    """``BLOCKS`` stacked blocks of one kind, initialised with a fixed seed."""
    torch.manual_seed(0)
    return nn.Sequential(*[BLOCK_KINDS[block](**settings) for _ in range(BLOCKS)]).eval()


def input_shape(block: str, settings: dict) -> tuple[int, int, int, int]:
    return (1, input_channels(block, settings), SPATIAL, SPATIAL)

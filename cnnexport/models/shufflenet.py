"""ShuffleNetV1 (Zhang et al., 2017) and ShuffleNetV2 (Ma et al., 2018; torchvision's layout).

Channel shuffle never reads the batch size (``layers.channel_shuffle``), so exports with a
dynamic batch axis run at any batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import channel_shuffle, concat_shuffle, make_divisible
from .registry import register_model

# --- ShuffleNetV2 ----------------------------------------------------------------------------------


class ShuffleV2Block(nn.Module):
    """Stride 1: split channels in half, transform one half, concat, shuffle. Stride 2: both
    branches see the whole input (the paper's Figure 3 c/d)."""

    def __init__(self, inp: int, oup: int, stride: int):
        super().__init__()
        if not 1 <= stride <= 3:
            raise ValueError("illegal stride value")
        self.stride = stride
        branch_features = oup // 2
        if stride == 1 and inp != branch_features << 1:
            raise ValueError(f"stride-1 block needs inp == oup, got {inp} and {oup}")
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(inp, inp, 3, stride, 1, bias=False, groups=inp), nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch_features, 1, 1, 0, bias=False), nn.BatchNorm2d(branch_features),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else branch_features, branch_features, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch_features), nn.ReLU(inplace=True),
            nn.Conv2d(branch_features, branch_features, 3, stride, 1, bias=False, groups=branch_features),
            nn.BatchNorm2d(branch_features),
            nn.Conv2d(branch_features, branch_features, 1, 1, 0, bias=False), nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            return concat_shuffle(x1, self.branch2(x2))
        return concat_shuffle(self.branch1(x), self.branch2(x))


class ShuffleNetV2(nn.Module):
    def __init__(self, stages_repeats: tuple[int, ...], stages_out_channels: tuple[int, ...], num_classes: int = 1000):
        super().__init__()
        input_channels, output_channels = 3, stages_out_channels[0]
        self.conv1 = nn.Sequential(nn.Conv2d(input_channels, output_channels, 3, 2, 1, bias=False),
                                   nn.BatchNorm2d(output_channels), nn.ReLU(inplace=True))
        input_channels = output_channels
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for name, repeats, output_channels in zip(("stage2", "stage3", "stage4"), stages_repeats,
                                                  stages_out_channels[1:]):
            blocks = [ShuffleV2Block(input_channels, output_channels, 2)]
            blocks += [ShuffleV2Block(output_channels, output_channels, 1) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*blocks))
            input_channels = output_channels
        output_channels = stages_out_channels[-1]
        self.conv5 = nn.Sequential(nn.Conv2d(input_channels, output_channels, 1, 1, 0, bias=False),
                                   nn.BatchNorm2d(output_channels), nn.ReLU(inplace=True))
        self.fc = nn.Linear(output_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(x.mean([2, 3]))


V2_PAPER = "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design"
# Params: torchvision. MACs: the paper's Table 8 (41/146/299/591 MFLOPs).
_V2 = dict(family="shufflenet_v2", source="torchvision (params), paper Table 8 (MACs)", paper=V2_PAPER,
           arxiv="1807.11164", torchvision_compatible=True)


@register_model(params=1_366_792, macs=41_000_000, **_V2)
def shufflenet_v2_x0_5(**kwargs) -> ShuffleNetV2:
    return ShuffleNetV2((4, 8, 4), (24, 48, 96, 192, 1024), **kwargs)


@register_model(params=2_278_604, macs=146_000_000, **_V2)
def shufflenet_v2_x1_0(**kwargs) -> ShuffleNetV2:
    return ShuffleNetV2((4, 8, 4), (24, 116, 232, 464, 1024), **kwargs)


@register_model(params=3_503_624, macs=299_000_000, **_V2)
def shufflenet_v2_x1_5(**kwargs) -> ShuffleNetV2:
    return ShuffleNetV2((4, 8, 4), (24, 176, 352, 704, 1024), **kwargs)


@register_model(params=7_393_996, macs=591_000_000, **_V2)
def shufflenet_v2_x2_0(**kwargs) -> ShuffleNetV2:
    return ShuffleNetV2((4, 8, 4), (24, 244, 488, 976, 2048), **kwargs)


# --- ShuffleNetV1 ----------------------------------------------------------------------------------

# Table 1 of the paper: output channels of stages 2-4 at 1x, per number of groups g.
V1_STAGE_CHANNELS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
                     8: (384, 768, 1536)}
V1_REPEATS = (4, 8, 4)
# conv1 width per scale, from the authors' release (megvii ShuffleNet-Series); with it the counts match
# Table 8 of the V2 paper (0.5x: 38M, 2x: 524M MACs), which the paper's text alone does not pin down.
V1_STEM = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}
# Table 1's complexity row (MFLOPs at 1x, 224x224) and Table 8 of the V2 paper for other scales (g=3).
V1_PAPER_MACS = {(1, 1.0): 143_000_000, (2, 1.0): 140_000_000, (3, 1.0): 137_000_000, (4, 1.0): 133_000_000,
                 (8, 1.0): 137_000_000, (3, 0.5): 38_000_000, (3, 1.5): 292_000_000, (3, 2.0): 524_000_000}


class ShuffleV1Unit(nn.Module):
    """1x1 group conv -> channel shuffle -> 3x3 depthwise -> 1x1 group conv (Figure 2 b/c). Stride 2:
    3x3 average-pooled shortcut, concatenated instead of added. ``first_group_conv=False`` makes the first
    pointwise conv dense (the paper does so on Stage 2's first unit, whose input has only 24 channels)."""

    def __init__(self, inp: int, oup: int, stride: int, groups: int, first_group_conv: bool = True):
        super().__init__()
        self.stride = stride
        branch_out = oup - inp if stride == 2 else oup
        mid = oup // 4
        g1 = groups if first_group_conv else 1
        self.groups = g1
        self.conv1 = nn.Conv2d(inp, mid, 1, groups=g1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, branch_out, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(branch_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        if self.groups > 1:
            out = channel_shuffle(out, self.groups)
        out = self.bn3(self.conv3(self.bn2(self.conv2(out))))
        if self.stride == 2:
            return self.relu(torch.cat((self.shortcut(x), out), 1))
        return self.relu(x + out)


class ShuffleNetV1(nn.Module):
    def __init__(self, groups: int = 3, scale: float = 1.0, num_classes: int = 1000):
        super().__init__()
        if groups not in V1_STAGE_CHANNELS:
            raise ValueError(f"ShuffleNetV1 groups must be one of {sorted(V1_STAGE_CHANNELS)}, got {groups}")
        # Every stage width is a multiple of 4*g: the bottleneck (width/4) and the 1x1 group convs divide evenly.
        stage_channels = [make_divisible(c * scale, 4 * groups) for c in V1_STAGE_CHANNELS[groups]]
        # Rounded up to a multiple of g so that Stage 2's first branch (width - stem) splits into g groups.
        stem = -(-V1_STEM.get(scale, make_divisible(24 * scale, 4)) // groups) * groups
        self.conv1 = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem),
                                   nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inp = stem
        for idx, (repeats, oup) in enumerate(zip(V1_REPEATS, stage_channels)):
            units = [ShuffleV1Unit(inp, oup, 2, groups, first_group_conv=idx > 0)]
            units += [ShuffleV1Unit(oup, oup, 1, groups) for _ in range(repeats - 1)]
            setattr(self, f"stage{idx + 2}", nn.Sequential(*units))
            inp = oup
        self.fc = nn.Linear(inp, num_classes)
        self.apply(init_shufflenet_v1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def init_shufflenet_v1(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0, 0.01)
        nn.init.zeros_(module.bias)


V1_PAPER = "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices"
_SCALES = {0.5: "0_5", 1.0: "", 1.5: "1_5", 2.0: "2_0"}


def _register_v1(groups: int, scale: float) -> None:
    name = f"shufflenet_v1_g{groups}" + (f"_{_SCALES[scale]}" if _SCALES[scale] else "")
    macs = V1_PAPER_MACS.get((groups, scale))

    def builder(**kwargs) -> ShuffleNetV1:
        return ShuffleNetV1(groups=groups, scale=scale, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"ShuffleNetV1 {scale}x, g={groups}."
    source = ("paper, Table 1" if scale == 1.0 else "ShuffleNetV2 paper, Table 8") if macs else \
        "none published (the papers list 1x for every g, other scales for g=3 only)"
    register_model("shufflenet_v1", macs=macs, source=source, paper=V1_PAPER, arxiv="1707.01083")(builder)
    globals()[name] = builder


for _g in V1_STAGE_CHANNELS:
    for _s in _SCALES:
        _register_v1(_g, _s)

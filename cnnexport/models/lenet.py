"""LeNet-5 (LeCun et al., 1998), laid out as the paper: C1-S2-C3-S4-C5-F6-output, 32x32 grayscale.

Faithful to the paper where it changes the network's numbers: trainable subsampling (each S map
sums its 2x2 window, times a trainable coefficient, plus a trainable bias), C3's partial
connection table (Table I: 60 of the 96 map pairs), and the scaled tanh 1.7159 tanh(2a/3).
That gives the paper's 60,000 trainable parameters through F6. The output layer is a Linear
layer instead of the paper's fixed Euclidean RBF units, so the model trains with cross-entropy.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model

# Table I of the paper: which S2 maps feed each of C3's 16 maps.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    *[tuple((i + k) % 6 for k in range(3)) for i in range(6)],  # maps 0-5: 3 contiguous S2 maps
    *[tuple((i + k) % 6 for k in range(4)) for i in range(6)],  # maps 6-11: 4 contiguous
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),                  # maps 12-14: 4 discontinuous
    (0, 1, 2, 3, 4, 5),                                         # map 15: all six
)


class ScaledTanh(nn.Module):
    """f(a) = A tanh(S a) with A = 1.7159, S = 2/3 (the paper's appendix A)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class Subsampling(nn.Module):
    """S2/S4: 2x2 sum (avg pool x 4) times a per-map coefficient plus a per-map bias: 2 params per map."""

    def __init__(self, channels: int):
        super().__init__()
        self.pool = nn.AvgPool2d(2, 2)
        self.scale = nn.Conv2d(channels, channels, 1, groups=channels)  # weight = 4 x coefficient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale(self.pool(x))


class PartialConv(nn.Module):
    """C3: each output map sees only the input maps its row of ``C3_TABLE`` names. Built as a
    channel gather plus grouped convolutions, so the parameter count is the paper's (1,516)."""

    def __init__(self, table=C3_TABLE, kernel_size: int = 5):
        super().__init__()
        groups: dict[int, list[tuple[int, ...]]] = {}
        for row in table:
            groups.setdefault(len(row), []).append(row)
        self.fan_ins = sorted(groups)  # one grouped conv per fan-in size: 3, 4, 6
        order = [row for n in self.fan_ins for row in groups[n]]
        # The gather as slices of consecutive channels (20 of them): runs everywhere, ncnn included,
        # where a Gather/index_select is not supported.
        self.runs = _runs([i for row in order for i in row])
        ends = [sum(len(groups[n]) * n for n in self.fan_ins[:k + 1]) for k in range(len(self.fan_ins))]
        self.split_ranges = list(zip([0] + ends[:-1], ends))  # each grouped conv's slice of the gathered maps
        self.convs = nn.ModuleList(
            nn.Conv2d(len(groups[n]) * n, len(groups[n]), kernel_size, groups=len(groups[n])) for n in self.fan_ins
        )
        # output channel of each table row, so maps come out in the paper's order 0..15
        position = {row: k for k, row in enumerate(order)}
        self.out_runs = _runs([position[row] for row in table])
        self.reorder_out = self.out_runs != [(0, len(table))]  # Table I already lists maps grouped by fan-in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gathered = torch.cat([x[:, a:b] for a, b in self.runs], dim=1)
        out = torch.cat([conv(gathered[:, a:b]) for conv, (a, b) in zip(self.convs, self.split_ranges)], dim=1)
        if not self.reorder_out:
            return out
        return torch.cat([out[:, a:b] for a, b in self.out_runs], dim=1)


def _runs(index: list[int]) -> list[tuple[int, int]]:
    """[0, 1, 2, 1, 2, 3, 5] -> [(0, 3), (1, 4), (5, 6)]: consecutive channels as slices."""
    runs: list[tuple[int, int]] = []
    for i in index:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 1):
        super().__init__()
        self.c1 = nn.Conv2d(in_chans, 6, 5)    # 32 -> 28
        self.s2 = Subsampling(6)                # 28 -> 14
        self.c3 = PartialConv()                 # 14 -> 10
        self.s4 = Subsampling(16)               # 10 -> 5
        self.c5 = nn.Conv2d(16, 120, 5)         # 5 -> 1
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, num_classes)
        self.act = ScaledTanh()
        self.apply(init_lenet)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.s2(self.act(self.c1(x))))
        x = self.act(self.s4(self.act(self.c3(x))))
        x = torch.flatten(self.act(self.c5(x)), 1)
        return self.output(self.act(self.f6(x)))


def init_lenet(module: nn.Module) -> None:
    """The paper's appendix: weights uniform in +-2.4/F_in (F_in = the unit's fan-in), zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        fan_in = module.weight[0].numel()
        nn.init.uniform_(module.weight, -2.4 / fan_in, 2.4 / fan_in)
        nn.init.zeros_(module.bias)


# The paper: 60,000 trainable parameters through F6 (C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164);
# the output layer adds 850 here.
@register_model("lenet", input_size=(1, 32, 32), num_classes=10, params=60_850,
                source="paper, section II.B (60,000 through F6) + 850 output", paper="Gradient-Based Learning "
                "Applied to Document Recognition")
def lenet5(**kwargs) -> LeNet5:
    return LeNet5(**kwargs)

"""The blocks users write, as they write them, through every format: which converts and verifies where.

    python benchmarks/user_blocks.py [--blocks cbam,gem] [--formats onnx,mnn] [--redo]

Each block sits in the same small classifier (a strided conv stem with BatchNorm, the block, average pooling
and a linear head; 32x32 inputs), with random weights (seed 0) and BatchNorm statistics from three random
batches. Each format's file is converted and checked against PyTorch as ``benchmarks/coverage.py`` does (the
export's own convert and verify steps), failures recorded with the converter's, runtime's or check's words
and rewrites with their ``graph_changes``. Appends to results/user_blocks.json (resumable);
scripts/coverage_table.py turns it into the README's table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from coverage import cover
from cnnexport.exporter.formats import FORMATS
from cnnexport.exporter.report_fields import versions
from cnnexport.machine import cpu_facts

RESULTS = Path(__file__).parent / "results" / "user_blocks.json"
WIDTH, SHAPE = 32, (1, 3, 32, 32)


class SEExpand(nn.Module):
    """Squeeze-and-excitation as senet.pytorch writes it: Linear layers, the gate ``expand_as`` x."""

    def __init__(self, c):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(c, c // 4), nn.ReLU(), nn.Linear(c // 4, c), nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        return x * self.fc(F.adaptive_avg_pool2d(x, 1).view(b, c)).view(b, c, 1, 1).expand_as(x)


class GlobalContext(nn.Module):
    """GCNet's context block: attention pooling by a matrix-vector product of 4-D tensors."""

    def __init__(self, c):
        super().__init__()
        self.attn = nn.Conv2d(c, 1, 1)
        self.transform = nn.Sequential(nn.Conv2d(c, c // 4, 1), nn.ReLU(), nn.Conv2d(c // 4, c, 1))

    def forward(self, x):
        b, c, h, w = x.shape
        attn = self.attn(x).reshape(b, 1, h * w).softmax(-1).unsqueeze(3)
        return x + self.transform((x.reshape(b, c, h * w).unsqueeze(1) @ attn).view(b, c, 1, 1))


class CBAM(nn.Module):
    """CBAM: channel attention from average- and max-pooled planes, spatial attention from the channels' mean
    and max."""

    def __init__(self, c):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(c, c // 4, 1), nn.ReLU(), nn.Conv2d(c // 4, c, 1))
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x):
        x = x * torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1)))
        return x * torch.sigmoid(self.spatial(torch.cat([x.mean(1, keepdim=True), x.max(1, keepdim=True)[0]], 1)))


class CoordAttention(nn.Module):
    """Coordinate attention: pooled rows and columns, concatenated, split again."""

    def __init__(self, c):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c, c // 4, 1), nn.BatchNorm2d(c // 4)
        self.to_h, self.to_w = nn.Conv2d(c // 4, c, 1), nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        _, _, h, w = x.size()
        rows, cols = F.adaptive_avg_pool2d(x, (h, 1)), F.adaptive_avg_pool2d(x, (1, w)).permute(0, 1, 3, 2)
        y = F.hardswish(self.bn(self.conv(torch.cat([rows, cols], 2))))
        yh, yw = torch.split(y, [h, w], 2)
        return x * self.to_h(yh).sigmoid() * self.to_w(yw.permute(0, 1, 3, 2)).sigmoid()


class NonLocal(nn.Module):
    """Non-local block: embedded-Gaussian attention over the pixels with ``bmm``."""

    def __init__(self, c):
        super().__init__()
        self.theta, self.phi, self.g = (nn.Conv2d(c, c // 2, 1) for _ in range(3))
        self.out = nn.Conv2d(c // 2, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        t = self.theta(x).view(b, c // 2, -1).permute(0, 2, 1)
        att = torch.softmax(torch.bmm(t, self.phi(x).view(b, c // 2, -1)), -1)
        y = torch.bmm(att, self.g(x).view(b, c // 2, -1).permute(0, 2, 1)).permute(0, 2, 1).contiguous()
        return x + self.out(y.view(b, c // 2, h, w))


class SelectiveKernel(nn.Module):
    """SK convolution: two branches stacked, a softmax over the branches."""

    def __init__(self, c):
        super().__init__()
        self.b3 = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=4), nn.BatchNorm2d(c), nn.ReLU())
        self.b5 = nn.Sequential(nn.Conv2d(c, c, 3, padding=2, dilation=2, groups=4), nn.BatchNorm2d(c), nn.ReLU())
        self.fc, self.fcs = nn.Linear(c, c // 2), nn.ModuleList(nn.Linear(c // 2, c) for _ in range(2))

    def forward(self, x):
        feats = torch.stack([self.b3(x), self.b5(x)], 1)
        z = self.fc(feats.sum(1).mean((2, 3)))
        att = torch.softmax(torch.stack([f(z) for f in self.fcs], 1), 1)[..., None, None]
        return (feats * att).sum(1)


class ChannelShuffle(nn.Module):
    """ShuffleNetV2's unit as users write it: chunk, a branch, concat, a 5-D view and transpose."""

    def __init__(self, c):
        super().__init__()
        h = c // 2
        self.branch = nn.Sequential(nn.Conv2d(h, h, 1), nn.BatchNorm2d(h), nn.ReLU(),
                                    nn.Conv2d(h, h, 3, padding=1, groups=h), nn.BatchNorm2d(h))

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        out = torch.cat([a, self.branch(b)], 1)
        n, c, h, w = out.size()
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class GeM(nn.Module):
    """Generalized-mean pooling with a learnable exponent, gating the map."""

    def __init__(self, c):
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * 3)

    def forward(self, x):
        pooled = F.avg_pool2d(x.clamp(min=1e-6).pow(self.p), (x.size(-2), x.size(-1))).pow(1.0 / self.p)
        return pooled.expand_as(x) * x


class ConvNeXtBlock(nn.Module):
    """ConvNeXt's block: depthwise 7x7, LayerNorm over channels by permute, GELU MLP, layer scale."""

    def __init__(self, c):
        super().__init__()
        self.dw, self.norm = nn.Conv2d(c, c, 7, padding=3, groups=c), nn.LayerNorm(c)
        self.pw1, self.pw2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.full((c,), 0.1))

    def forward(self, x):
        y = self.pw2(F.gelu(self.pw1(self.norm(self.dw(x).permute(0, 2, 3, 1))))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class LayerNorm2d(nn.Module):
    """ConvNeXt's channels-first LayerNorm written out: mean and variance over the channels."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.weight, self.bias = nn.Parameter(torch.rand(c) + 0.5), nn.Parameter(torch.randn(c) * 0.1)

    def forward(self, x):
        y = self.conv(x)
        u = y.mean(1, keepdim=True)
        y = (y - u) / torch.sqrt((y - u).pow(2).mean(1, keepdim=True) + 1e-6)
        return x + self.weight[:, None, None] * y + self.bias[:, None, None]


class GroupNormSiLU(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv, self.gn = nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(8, c)

    def forward(self, x):
        return x + F.silu(self.gn(self.conv(x)))


class InstanceNormMish(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(c, c, 3, padding=1), nn.InstanceNorm2d(c, affine=True)

    def forward(self, x):
        return x + F.mish(self.norm(self.conv(x)))


class ReflectionPad(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3)

    def forward(self, x):
        return x + self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))


class MixConv(nn.Module):
    """MixConv: channel groups with 3x3 and 5x5 depthwise kernels."""

    def __init__(self, c):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c // 2, c // 2, k, padding=k // 2, groups=c // 2) for k in (3, 5))

    def forward(self, x):
        return torch.cat([conv(t) for conv, t in zip(self.convs, torch.split(x, x.size(1) // 2, 1))], 1)


class PixelShuffleUp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv, self.shuffle, self.down = nn.Conv2d(c, c * 4, 1), nn.PixelShuffle(2), nn.Conv2d(c, c, 3, 2, 1)

    def forward(self, x):
        return x + self.down(self.shuffle(self.conv(x)))


class ResizeUpDown(nn.Module):
    """A transposed conv up, bilinear resizes to a size that is no integer factor (both corner modes), a
    dilated conv."""

    def __init__(self, c):
        super().__init__()
        self.up, self.dilated = nn.ConvTranspose2d(c, c, 2, 2), nn.Conv2d(c, c, 3, padding=2, dilation=2)

    def forward(self, x):
        y = F.interpolate(self.up(x), size=(12, 12), mode="bilinear", align_corners=False)
        return x + self.dilated(F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=True))


class Focus(nn.Module):
    """YOLOv5's Focus: space-to-depth by strided slicing, then nearest upsampling back."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(4 * c, c, 1)

    def forward(self, x):
        y = torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)
        return x + F.interpolate(self.conv(y), scale_factor=2, mode="nearest")


class Activations(nn.Module):
    """The activations users mix, one a hand-written leaky ReLU (``torch.where``)."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)

    def forward(self, x):
        y = self.conv(x)
        return (F.hardswish(y) + F.gelu(y, approximate="tanh") + F.relu6(y) + torch.where(y > 0, y, 0.1 * y)
                + F.elu(y) + F.softplus(y))


class Pools(nn.Module):
    """Ceil-mode max pooling, average pooling without the padding counted, adaptive pooling to 2x2."""

    def forward(self, x):
        a = F.max_pool2d(x, 3, 2, ceil_mode=True)
        b = F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=False)
        c = F.adaptive_avg_pool2d(x, (2, 2))
        return F.interpolate(a[..., :b.shape[-2], :b.shape[-1]] + b, size=x.shape[-2:]) + F.interpolate(c, size=x.shape[-2:])


class GatedStack(nn.Module):
    """A gated linear unit, an unequal split, and branches fused by ``torch.stack(..., 0).sum(0)``."""

    def __init__(self, c):
        super().__init__()
        self.conv, self.c = nn.Conv2d(c, 2 * c, 1), c

    def forward(self, x):
        a, g = self.conv(x).chunk(2, 1)
        y = a * torch.sigmoid(g)
        p, q = torch.split(y, [self.c // 4, 3 * self.c // 4], 1)
        return torch.stack([x, y, torch.cat([q, p], 1)], 0).sum(0)


class L2Head(nn.Module):
    """Features normalised to unit length over the channels (``F.normalize``), scaled."""

    def forward(self, x):
        return F.normalize(x, dim=1) * 10


class EinsumAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.qkv, self.proj, self.heads = nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1), 4

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        attn = torch.einsum("bhdn,bhdm->bhnm", q, k).mul(c ** -0.5).softmax(-1)
        return x + self.proj(torch.einsum("bhnm,bhdm->bhdn", attn, v).reshape(b, c, h, w))


class SDPAttention(nn.Module):
    """``F.scaled_dot_product_attention`` over the pixels."""

    def __init__(self, c):
        super().__init__()
        self.qkv, self.heads = nn.Conv2d(c, 3 * c, 1), 4

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = (self.qkv(x).flatten(2).transpose(1, 2).reshape(b, h * w, 3, self.heads, c // self.heads)
                   .permute(2, 0, 3, 1, 4))
        o = F.scaled_dot_product_attention(q, k, v)
        return x + o.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)


class MultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` (batch_first) on the flattened pixels."""

    def __init__(self, c):
        super().__init__()
        self.mha = nn.MultiheadAttention(c, 4, batch_first=True)

    def forward(self, x):
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        return x + self.mha(t, t, t, need_weights=False)[0].transpose(1, 2).reshape(b, c, h, w)


class SwinWindow(nn.Module):
    """Swin's shifted windows: ``torch.roll``, a 6-D window partition, attention inside each window, reversed."""

    def __init__(self, c):
        super().__init__()
        self.qkv, self.proj, self.window, self.heads = nn.Linear(c, 3 * c), nn.Linear(c, c), 4, 4

    def forward(self, x):
        b, c, h, w = x.shape
        ws, n = self.window, self.window * self.window
        t = torch.roll(x.permute(0, 2, 3, 1), shifts=(-2, -2), dims=(1, 2))
        win = t.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, n, c)
        q, k, v = self.qkv(win).reshape(win.shape[0], n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5).softmax(-1)
        o = self.proj((attn @ v).transpose(1, 2).reshape(-1, n, c)).view(b, h // ws, w // ws, ws, ws, c)
        o = o.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        return x + torch.roll(o, shifts=(2, 2), dims=(1, 2)).permute(0, 3, 1, 2)


class TokenMixing(nn.Module):
    """MLP-Mixer's token mixing: LayerNorm over channels, a Linear over the pixels."""

    def __init__(self, c):
        super().__init__()
        self.norm, self.mix = nn.LayerNorm(c), nn.Linear(64, 64)

    def forward(self, x):
        b, c, h, w = x.shape
        return x + self.mix(self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2)).reshape(b, c, h, w)


BLOCKS = {
    "se_expand_as": SEExpand, "global_context": GlobalContext, "cbam": CBAM, "coord_attention": CoordAttention,
    "non_local": NonLocal, "selective_kernel": SelectiveKernel, "channel_shuffle": ChannelShuffle, "gem": GeM,
    "convnext_block": ConvNeXtBlock, "layernorm2d": LayerNorm2d, "groupnorm_silu": GroupNormSiLU,
    "instancenorm_mish": InstanceNormMish, "reflection_pad": ReflectionPad, "mixconv": MixConv,
    "pixel_shuffle": PixelShuffleUp, "resize_up_down": ResizeUpDown, "focus": Focus, "activations": Activations,
    "pools": Pools, "gated_stack": GatedStack, "l2_head": L2Head, "einsum_attention": EinsumAttention,
    "sdp_attention": SDPAttention, "multihead_attention": MultiheadAttention, "swin_window": SwinWindow,
    "token_mixing": TokenMixing,
}


class Classifier(nn.Module):
    """A strided stem, the block, average pooling and a linear head: 32x32 inputs, 8x8 maps inside."""

    def __init__(self, block: type):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, WIDTH, 3, 4, 1), nn.BatchNorm2d(WIDTH), nn.ReLU())
        self.block = block(WIDTH) if block.__init__ is not nn.Module.__init__ else block()
        self.head = nn.Linear(WIDTH, 10)

    def forward(self, x):
        return self.head(torch.flatten(F.adaptive_avg_pool2d(self.block(self.stem(x)), 1), 1))


def classifier(name: str) -> nn.Module:
    """``name``'s block in the classifier, random weights (seed 0), BatchNorm statistics from random batches."""
    torch.manual_seed(0)
    model = Classifier(BLOCKS[name])
    with torch.no_grad():
        model.train()
        for _ in range(3):
            model(torch.randn(8, *SHAPE[1:]))
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", default=",".join(BLOCKS))
    parser.add_argument("--formats", default=",".join(f for f in FORMATS if not FORMATS[f].needs_cuda))
    parser.add_argument("--redo", action="store_true")
    args = parser.parse_args()
    formats = args.formats.split(",")
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"rows": []}
    done = {(r["model"], r["format"]) for r in data["rows"]}
    for name in args.blocks.split(","):
        todo = [f for f in formats if args.redo or (name, f) not in done]
        if not todo:
            continue
        new = cover(name, todo, model=classifier(name), shape=SHAPE)
        data["rows"] = [r for r in data["rows"] if not (r["model"] == name and r["format"] in todo)] + new
        data["rows"].sort(key=lambda r: (list(BLOCKS).index(r["model"]), formats.index(r["format"])
                                         if r["format"] in formats else len(formats)))
        data["versions"] = versions("openvino", "ai-edge-litert", "litert-torch", "ncnn", "pnnx", "executorch", "mnn")
        data["machine"] = cpu_facts()
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(data, indent=1) + "\n")
        print(name, " ".join(f"{r['format']}:{'ok' if r['verifies'] else 'FAIL'}" for r in new), flush=True)


if __name__ == "__main__":
    main()

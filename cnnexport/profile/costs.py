"""Cost model shared by the PyTorch and ONNX profilers, and ShuffleNetV2's formulas.

"FLOPs" in this project are multiply-accumulates (MACs), as in the ShuffleNet and MobileNet
papers, thop and torchvision. Memory access cost (MAC in the ShuffleNetV2 paper) is counted in
elements as the paper defines it: input feature maps + output feature maps + weights. No torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

FP32_BYTES, INT8_BYTES = 4, 1


@dataclass
class LayerCost:
    name: str
    type: str
    params: int = 0
    macs: int = 0
    memory_access: int = 0        # elements: inputs + outputs + weights
    elementwise_ops: int = 0      # non-MAC arithmetic (BN scale/shift, activations, additions, pooling)
    output_elements: int = 0
    output_shape: list[int] = field(default_factory=list)
    kind: str = ""                # finer than type where it matters: "Conv depthwise 3x3", "Conv 1x1"
    # a dense 3x3 stride-1 convolution: what Winograd F(6x6, 3x3) computes with fewer multiplications
    winograd: bool = False
    # the node a runtime fuses this element-wise op into (its group's anchor), and the elements the op then
    # adds to the group's traffic: its inputs other than the fused producer's output (a residual); "" alone
    fused_into: str = ""
    fused_access: int = 0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["memory_access_bytes"] = self.memory_access * FP32_BYTES
        return d


@dataclass
class Profile:
    source: str                   # "pytorch" or "onnx"
    input_shape: list[int]
    params: int
    layers: list[LayerCost]
    notes: list[str] = field(default_factory=list)
    unknown_shape_nodes: int = 0  # nodes whose output shape nobody could tell: their costs count as 0

    @property
    def complete(self) -> bool:
        """False when some costs are unknown: the totals are then lower bounds."""
        return self.unknown_shape_nodes == 0

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def memory_access(self) -> int:
        return sum(layer.memory_access for layer in self.layers)

    @property
    def activation_elements(self) -> int:
        return sum(layer.output_elements for layer in self.layers)

    def as_dict(self, per_layer: bool = True) -> dict:
        mem_bytes = self.memory_access * FP32_BYTES
        out = {
            "source": self.source,
            "input_shape": self.input_shape,
            "params": self.params,
            "macs": self.macs,
            "memory_access_elements": self.memory_access,
            "memory_access_bytes": mem_bytes,
            "memory_access_bytes_int8": self.memory_access * INT8_BYTES,
            "activation_bytes": self.activation_elements * FP32_BYTES,
            "arithmetic_intensity": self.macs / mem_bytes if mem_bytes else 0.0,
            "elementwise_ops": sum(layer.elementwise_ops for layer in self.layers),
            "unknown_shape_nodes": self.unknown_shape_nodes,
            "totals_are_lower_bounds": not self.complete,
            "notes": self.notes,
        }
        if per_layer:
            out["layers"] = [layer.as_dict() for layer in self.layers]
        return out


def clever_format(value: float, fmt: str = "%.3f") -> str:
    """thop-style readable units: 4.09G, 25.557M, 1.2K."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return (fmt % (value / scale)) + unit
    return str(int(value)) if float(value).is_integer() else fmt % value


# --- ShuffleNetV2, section 2 ------------------------------------------------------------------------

def conv1x1_flops(h: int, w: int, c1: int, c2: int, groups: int = 1) -> float:
    """B = h w c1 c2 / g: multiply-accumulates of a 1x1 (group) convolution."""
    return h * w * c1 * c2 / groups


def conv1x1_mac(h: int, w: int, c1: int, c2: int) -> float:
    """Eq. 1: MAC = hw(c1 + c2) + c1 c2 (input map, output map, weights)."""
    return h * w * (c1 + c2) + c1 * c2


def conv1x1_mac_lower_bound(h: int, w: int, flops: float) -> float:
    """MAC >= 2 sqrt(hw B) + B / (hw), reached when c1 = c2 (the paper's G1)."""
    return 2 * math.sqrt(h * w * flops) + flops / (h * w)


def group_conv1x1_mac(h: int, w: int, c1: int, c2: int, groups: int) -> float:
    """Eq. 2: MAC = hw(c1 + c2) + c1 c2 / g = hw c1 + B g / c1 + B / (hw); grows with g at fixed B (G2)."""
    return h * w * (c1 + c2) + c1 * c2 / groups

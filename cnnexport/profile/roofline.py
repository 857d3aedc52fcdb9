"""The roofline bound: a layer takes at least max(compute / compute ceiling, bytes / bandwidth), with
compute from the cost model's MACs (2 FLOPs each) and bytes from its memory access cost (inputs +
outputs + weights, ShuffleNetV2's MAC) at the artifact's precision; a model's bound is the sum over
its layers. Both limits are the machine's, measured in the same run (the best GEMM and a streaming
add; per cache level, copies).
No torch.

With memory roofs per cache level (the hierarchical roofline: Ilic et al., "Cache-aware Roofline
model", 2014), a layer's bytes are charged at the smallest level whose capacity holds its working
set (inputs + outputs + weights at the precision), DRAM past the last one; the DRAM-only bound is
kept beside it (``bound_dram_ms``). Charged at DRAM alone, a batch-1 feature map that lives in L2
made small networks beat their "bound" threefold.

A layer is a fused group, as runtimes run it: a convolution or matrix product with the element-wise ops
that follow it (activation, residual add) reads its inputs, weights and the residual, and writes one
output; the intermediate maps never reach memory. On a runtime that computes dense 3x3 stride-1
convolutions with Winograd (ncnn, as cnnexport runs it), those layers are charged F(6x6, 3x3)'s
multiplications, 5.06x fewer than the direct MACs (the transforms' cost is left out: a bound may only
err low).
"""

from __future__ import annotations

from dataclasses import dataclass

BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
#: Direct MACs per Winograd F(6x6, 3x3) multiplication: 6x6 outputs of a 3x3 kernel take 8x8 products, not 36x9.
WINOGRAD_F63_SAVING = (6 * 3) ** 2 / (6 + 3 - 1) ** 2


def bytes_per_element(precision: str) -> int:
    try:
        return BYTES_PER_ELEMENT[precision]
    except KeyError:
        raise ValueError(f"no element size for precision '{precision}'") from None


@dataclass(frozen=True)
class LayerCosts:
    """One layer's work: MACs and feature-map elements per image, weight elements once per batch."""

    name: str
    type: str
    macs: float
    activations: float
    weights: float
    winograd: bool = False          # a dense 3x3 stride-1 convolution
    fused: tuple[str, ...] = ()     # the element-wise ops fused into it, in order
    # ShuffleNetV2's memory access cost counts every op's own inputs and outputs, fused or not (None: as
    # ``activations``); the roofline charges the group's traffic
    mac_activations: float | None = None

    def at(self, batch: int, precision: str) -> tuple[float, float]:
        """(MACs, bytes moved) for ``batch`` images at ``precision``."""
        return self.macs * batch, (self.activations * batch + self.weights) * bytes_per_element(precision)


@dataclass(frozen=True)
class MemoryRoof:
    """A memory level: what it holds (``capacity_bytes``; None: DRAM, unbounded) and its bandwidth."""

    level: str
    capacity_bytes: float | None
    gbs: float

    def holds(self, nbytes: float) -> bool:
        return self.capacity_bytes is None or nbytes <= self.capacity_bytes


def memory_roofs_from(measured: list[dict]) -> tuple[MemoryRoof, ...]:
    """``bench.limits.memory_roofs`` output (smallest level first) as roofs."""
    return tuple(MemoryRoof(r["level"], r["capacity_bytes"], r["gbs"]) for r in measured if r.get("gbs"))


@dataclass(frozen=True)
class LayerBound:
    name: str
    type: str
    macs: float
    bytes: float
    compute_s: float
    memory_s: float
    level: str = "DRAM"
    memory_dram_s: float | None = None  # the same bytes at DRAM bandwidth (the single-roof bound)
    winograd: bool = False  # compute charged at Winograd's multiplications, not the direct MACs
    fused: tuple[str, ...] = ()

    @property
    def bound_dram_s(self) -> float:
        return max(self.compute_s, self.memory_s if self.memory_dram_s is None else self.memory_dram_s)

    @property
    def bound_s(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def limit(self) -> str:
        """Which roof holds the layer down: ``compute`` or ``memory``."""
        return "compute" if self.compute_s >= self.memory_s else "memory"

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved."""
        return 2 * self.macs / self.bytes if self.bytes else float("inf")


def layer_bound(name: str, type_: str, macs: float, nbytes: float, ceiling_gflops: float,
                bandwidth_gbs: float, roofs: tuple[MemoryRoof, ...] = (), *, winograd: bool = False,
                fused: tuple[str, ...] = ()) -> LayerBound:
    """The bound of one layer: MACs against the compute ceiling (GFLOP/s, 2 FLOPs per MAC; with
    ``winograd``, F(6x6, 3x3)'s multiplications) and bytes against the bandwidth (GB/s) of the smallest
    of ``roofs`` that holds them (``bandwidth_gbs``, DRAM's, when none does or none are given)."""
    if ceiling_gflops <= 0 or bandwidth_gbs <= 0:
        raise ValueError("the compute ceiling and the bandwidth must be positive")
    compute_s = 2 * macs / (WINOGRAD_F63_SAVING if winograd else 1) / (ceiling_gflops * 1e9)
    dram_s = nbytes / (bandwidth_gbs * 1e9)
    roof = next((r for r in roofs if r.capacity_bytes is not None and r.holds(nbytes)), None)
    if roof is None or roof.gbs <= bandwidth_gbs:
        return LayerBound(name, type_, macs, nbytes, compute_s, dram_s, "DRAM", dram_s, winograd, fused)
    return LayerBound(name, type_, macs, nbytes, compute_s, nbytes / (roof.gbs * 1e9), roof.level, dram_s,
                      winograd, fused)


@dataclass(frozen=True)
class Roofline:
    layers: tuple[LayerBound, ...]
    ceiling_gflops: float
    bandwidth_gbs: float
    batch: int
    precision: str
    roofs: tuple[MemoryRoof, ...] = ()

    @property
    def bound_ms(self) -> float:
        return sum(layer.bound_s for layer in self.layers) * 1e3

    @property
    def bound_dram_ms(self) -> float:
        """Every byte at DRAM bandwidth: the single-roof bound, for comparison."""
        return sum(layer.bound_dram_s for layer in self.layers) * 1e3

    def by_kind(self) -> dict[str, dict]:
        """Per layer type: bound (ms), layer count, how many are memory-bound, share of the total."""
        total = self.bound_ms or 1.0
        out: dict[str, dict] = {}
        for layer in self.layers:
            kind = out.setdefault(layer.type, {"layers": 0, "memory_bound": 0, "bound_ms": 0.0})
            kind["layers"] += 1
            kind["memory_bound"] += layer.limit == "memory"
            kind["bound_ms"] += layer.bound_s * 1e3
        for kind in out.values():
            kind["share"] = kind["bound_ms"] / total
        return dict(sorted(out.items(), key=lambda kv: -kv[1]["bound_ms"]))

    def as_dict(self, per_layer: bool = True) -> dict:
        total = self.bound_ms or 1.0
        out = {"bound_ms": self.bound_ms, "ceiling_gflops": self.ceiling_gflops, "bandwidth_gbs": self.bandwidth_gbs,
               "ridge_flops_per_byte": self.ceiling_gflops / self.bandwidth_gbs, "batch": self.batch,
               "precision": self.precision,
               "memory_bound_layers": sum(layer.limit == "memory" for layer in self.layers),
               "memory_bound_share": sum(layer.bound_s for layer in self.layers if layer.limit == "memory") * 1e3
               / total, "by_kind": self.by_kind(), "bound_dram_ms": self.bound_dram_ms,
               "roofs": [{"level": r.level, "capacity_bytes": r.capacity_bytes, "gbs": r.gbs} for r in self.roofs],
               "charged_at": {level: sum(1 for b in self.layers if b.level == level)
                              for level in dict.fromkeys(b.level for b in self.layers)}}
        if per_layer:
            out["layers"] = [{"name": b.name, "type": b.type, "macs": b.macs, "bytes": b.bytes,
                              "compute_ms": b.compute_s * 1e3, "memory_ms": b.memory_s * 1e3,
                              "bound_ms": b.bound_s * 1e3, "limit": b.limit, "flops_per_byte": b.intensity,
                              "level": b.level, "bound_dram_ms": b.bound_dram_s * 1e3,
                              "winograd": b.winograd, "fused": list(b.fused),
                              "share": b.bound_s * 1e3 / total} for b in self.layers]
        return out


@dataclass(frozen=True)
class ModelCosts:
    """A model's layers as the roofline needs them (from a complete cost profile)."""

    layers: tuple[LayerCosts, ...]

    @property
    def macs(self) -> float:
        """MACs per image."""
        return sum(layer.macs for layer in self.layers)

    def memory_bytes(self, batch: int, precision: str) -> float:
        """ShuffleNetV2's memory access cost in bytes: every op's inputs, outputs and weights, as if unfused."""
        return sum(((layer.activations if layer.mac_activations is None else layer.mac_activations) * batch
                    + layer.weights) * bytes_per_element(precision) for layer in self.layers)

    def roofline(self, *, batch: int, precision: str, ceiling_gflops: float, bandwidth_gbs: float,
                 roofs: tuple[MemoryRoof, ...] = (), winograd: bool = False) -> Roofline:
        """The bound at ``batch`` and ``precision``; with ``roofs`` (cache levels), each layer's bytes at the
        level that holds them, else every byte at ``bandwidth_gbs`` (DRAM); with ``winograd`` (the runtime
        computes dense 3x3 stride-1 convolutions that way) those layers at Winograd's multiplications."""
        bounds = []
        for layer in self.layers:
            macs, nbytes = layer.at(batch, precision)
            if macs or nbytes:
                bounds.append(layer_bound(layer.name, layer.type, macs, nbytes, ceiling_gflops, bandwidth_gbs, roofs,
                                          winograd=winograd and layer.winograd, fused=layer.fused))
        return Roofline(tuple(bounds), ceiling_gflops, bandwidth_gbs, batch, precision, tuple(roofs))

    @classmethod
    def from_profile(cls, profile) -> "ModelCosts | None":
        """From a ``costs.Profile`` (PyTorch or ONNX); None when its totals are only lower bounds. An
        element-wise op the profile marks as fused joins its anchor's layer with the feature maps it adds
        (a residual), not its own inputs and output."""
        if not profile.complete:
            return None
        n = profile.input_shape[0] or 1
        merged: dict[str, dict] = {}
        for layer in profile.layers:
            if layer.fused_into and layer.fused_into in merged:
                group = merged[layer.fused_into]
                group["macs"] += layer.macs / n
                group["activations"] += layer.fused_access / n
                group["mac_activations"] += max(0, layer.memory_access - layer.params) / n
                group["weights"] += layer.params
                group["fused"] += (layer.type,)
                continue
            merged[layer.name] = {"name": layer.name, "type": layer.kind or layer.type, "macs": layer.macs / n,
                                  "activations": max(0, layer.memory_access - layer.params) / n,
                                  "weights": layer.params, "winograd": layer.winograd, "fused": (),
                                  "mac_activations": max(0, layer.memory_access - layer.params) / n}
        return cls(tuple(LayerCosts(**group) for group in merged.values()))

"""``cnnexport profile --roofline``: each layer's roofline bound from the ONNX graph's costs, grouped as
runtimes fuse them (a convolution with the activation or addition that follows it), and, when a
runtime's profiler timed the file, each group's measured time against its bound. onnx and numpy
only (no torch)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InvalidModelFileError
from .roofline import ModelCosts
from .onnx_profile import profile_onnx

#: A layer group beats its bound when it ran more than this much faster (per-node profiler timings of one
#: run, unlike bench rows, carry no round spread of their own)
BEAT_MARGIN = 0.1


def _matcher(model):
    """A function from a runtime's node name to a graph node name (None when nothing matches): the
    node itself, the node producing a tensor of that name (ONNX Runtime names fused nodes after an
    output, with ``_nchwc`` for its blocked layout), or the longest graph name the runtime's name
    contains (OpenVINO's ``/WithoutBiases``, reorders named after the node they feed)."""
    names = {n.name or n.output[0] for n in model.graph.node}
    by_output = {o: n.name or n.output[0] for n in model.graph.node for o in n.output}
    ordered = sorted(names | set(by_output), key=len, reverse=True)

    def match(runtime_name: str) -> str | None:
        for candidate in (runtime_name, runtime_name.removesuffix("_nchwc")):
            if candidate in names:
                return candidate
            if candidate in by_output:
                return by_output[candidate]
        hit = next((n for n in ordered if len(n) > 3 and n in runtime_name), None)
        return by_output.get(hit, hit) if hit else None
    return match


def roofline_profile(path: str | os.PathLike, *, ceiling_gflops: float, bandwidth_gbs: float, precision: str = "fp32",
                     input_shape: tuple[int, ...] | None = None, times=None, costs_path: str | os.PathLike | None = None,
                     roofs: tuple = (), winograd: bool = False) -> dict:
    """The roofline of ``costs_path`` (default ``path``; an ONNX graph) at ``input_shape`` and
    ``precision``: per fused group and per layer kind, the bound, whether memory or compute sets it,
    the memory level its bytes are charged at (``roofs``: ``roofline.MemoryRoof`` per cache level; DRAM
    without), its share of the total, and with ``times`` (a ``runtimes.profiling.LayerTimes`` of
    ``path``) the measured time and measured / bound. ``winograd``: the runtime computes dense 3x3
    stride-1 convolutions with Winograd (``runtimes.WINOGRAD_RUNTIMES``)."""
    import onnx

    graph_path = Path(costs_path or path)
    profile = profile_onnx(graph_path, input_shape)
    costs = ModelCosts.from_profile(profile)
    if costs is None:
        raise InvalidModelFileError(f"'{graph_path.name}' has nodes of unknown shape: its roofline would be a "
                                    "lower bound; give --input-size or a file with static shapes")
    batch = profile.input_shape[0]
    roof = costs.roofline(batch=batch, precision=precision, ceiling_gflops=ceiling_gflops,
                          bandwidth_gbs=bandwidth_gbs, roofs=tuple(roofs), winograd=winograd)
    model = onnx.load(str(graph_path), load_external_data=False)
    group_of = {layer.name: layer.fused_into or layer.name for layer in profile.layers}
    groups = {layer.name: {"name": layer.name, "kind": layer.type, "fused": list(layer.fused),
                           "bound_ms": layer.bound_s * 1e3, "compute_ms": layer.compute_s * 1e3,
                           "memory_ms": layer.memory_s * 1e3, "macs": layer.macs, "bytes": layer.bytes,
                           "measured_ms": None, "level": layer.level, "bound_dram_ms": layer.bound_dram_s * 1e3,
                           "winograd": layer.winograd}
              for layer in roof.layers}
    unmatched_ms, matched_ms = 0.0, 0.0
    if times is not None:
        match = _matcher(model)
        for node in times.nodes:
            target = match(node.name)
            root = group_of.get(target, target) if target else None
            if root in groups:
                groups[root]["measured_ms"] = (groups[root]["measured_ms"] or 0.0) + node.ms
                matched_ms += node.ms
            else:
                unmatched_ms += node.ms
    total = roof.bound_ms or 1.0
    rows = []
    for g in groups.values():
        rows.append({**{k: g[k] for k in ("name", "kind", "macs", "bytes", "bound_ms", "compute_ms", "memory_ms",
                                          "measured_ms", "level", "bound_dram_ms", "fused", "winograd")},
                     "limit": "compute" if g["compute_ms"] >= g["memory_ms"] else "memory",
                     "share": g["bound_ms"] / total,
                     "of_bound": g["bound_ms"] / g["measured_ms"] if g["measured_ms"] else None})
    kinds: dict[str, dict] = {}
    for r in rows:
        k = kinds.setdefault(r["kind"], {"kind": r["kind"], "groups": 0, "memory_bound": 0, "bound_ms": 0.0,
                                         "bound_dram_ms": 0.0, "levels": {},
                                         "measured_ms": 0.0 if times is not None else None})
        k["groups"] += 1
        k["memory_bound"] += r["limit"] == "memory"
        k["bound_ms"] += r["bound_ms"]
        k["bound_dram_ms"] += r["bound_dram_ms"]
        k["levels"][r["level"]] = k["levels"].get(r["level"], 0) + 1
        if times is not None:
            k["measured_ms"] += r["measured_ms"] or 0.0
    for k in kinds.values():
        k["share"] = k["bound_ms"] / total
        k["of_bound"] = k["bound_ms"] / k["measured_ms"] if k["measured_ms"] else None
    by_kind = sorted(kinds.values(), key=lambda k: -(k["measured_ms"] or k["bound_ms"]))
    result = {"file": Path(path).name, "costs_from": graph_path.name, "input_shape": profile.input_shape,
              "precision": precision, "ceiling_gflops": ceiling_gflops, "bandwidth_gbs": bandwidth_gbs,
              "ridge_flops_per_byte": ceiling_gflops / bandwidth_gbs, "bound_ms": roof.bound_ms, "winograd": winograd,
              "bound_dram_ms": roof.bound_dram_ms,
              "roofs": [{"level": r.level, "capacity_bytes": r.capacity_bytes, "gbs": r.gbs} for r in roof.roofs],
              "memory_bound_share": sum(r["bound_ms"] for r in rows if r["limit"] == "memory") / total,
              "by_kind": by_kind, "layers": rows}
    if times is not None:
        measured = matched_ms + unmatched_ms
        far = [k for k in by_kind if k["of_bound"] is not None and (k["measured_ms"] or 0) >= 0.05 * measured]
        result.update({"runtime": times.runtime, "threads": times.threads, "runs": times.runs,
                       "measured_ms": measured, "unmatched_ms": unmatched_ms,
                       "of_roofline": roof.bound_ms / measured if measured else None,
                       "farthest_kind": min(far, key=lambda k: k["of_bound"])["kind"] if far else None,
                       "beating": beating_groups(rows)})
    return result


def beating_groups(rows: list[dict], margin: float = BEAT_MARGIN) -> list[dict]:
    """The layer groups the runtime ran faster than their bound (by more than ``margin``: one profiled
    run per node is noisy), fastest against its bound first, each with the assumption of the bound that
    broke: a memory-bound group's bytes charged at its level's bandwidth, a compute-bound group's MACs
    at the compute ceiling."""
    out = []
    for r in sorted((r for r in rows if r["of_bound"] and r["of_bound"] > 1 + margin), key=lambda r: -r["of_bound"]):
        if r["limit"] == "memory":
            broke = (f"its {r['bytes'] / 1e6:.2f} MB were charged at {r['level']} bandwidth; the runtime moved them "
                     "faster (a working set held in a closer level, or fewer bytes moved than counted: fused or "
                     "in-place)")
        else:
            broke = ("its MACs were charged at the compute ceiling" + (" (Winograd's multiplications)" if r.get("winograd")
                                                                        else "")
                     + "; the kernel ran faster (fewer multiplications than counted, e.g. Winograd, or a faster kernel "
                     "than the GEMMs that set the ceiling)")
        out.append({"name": r["name"], "kind": r["kind"], "level": r["level"], "limit": r["limit"],
                    "of_bound": r["of_bound"], "assumption": broke})
    return out

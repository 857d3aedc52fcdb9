"""Which parts of a network to leave in float so that int8 keeps a logits-cosine target.

Used by ``--keep-float auto``. The search works on *groups*: the nodes of one module (the ONNX node
name up to its second path component, ``/layer1/layer1.0/conv2/Conv`` -> ``/layer1/layer1.0``, a
residual block or an inverted-residual block), because quantization noise adds up across a block
and single layers rarely move the logits alone. It measures, never estimates: every candidate is
a real int8 model scored on real samples. No torch; the scorer is passed in.

Search (1 + G + k scorings for G groups, k kept): score the fully int8 model; if it misses the
target, score each group kept in float on its own, then keep groups in the order of their gain
(those that did not help alone last) until the target is met.
"""

from __future__ import annotations

import fnmatch
from typing import Callable, Sequence

from ....errors import UsageError

COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def module_of(node_name: str, depth: int = 2) -> str:
    """The module a node belongs to: its name's first ``depth`` path components (or the name)."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) <= 1:
        return node_name
    return "/" + "/".join(parts[:min(depth, len(parts) - 1)])


def module_groups(nodes: Sequence[tuple[str, str]], depth: int = 2) -> dict[str, list[str]]:
    """(name, op_type) nodes grouped by module, in graph order; groups without a compute op dropped."""
    groups: dict[str, list[str]] = {}
    for name, _ in nodes:
        groups.setdefault(module_of(name, depth), []).append(name)
    ops = dict(nodes)
    return {g: names for g, names in groups.items() if any(ops[n] in COMPUTE_OPS for n in names)}


def match_nodes(patterns: Sequence[str], names: Sequence[str]) -> list[str]:
    """Node names matching any glob in ``patterns`` (graph order); a pattern matching nothing is an error."""
    chosen = []
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            example = next((n for n in names if "/" in n), names[0] if names else "")
            raise UsageError(f"--keep-float pattern '{pattern}' matches no node in the model; node names look "
                             f"like '{example}' (use a glob such as '/layer1/*')")
        chosen += hits
    seen = set(chosen)
    return [n for n in names if n in seen]


def search_float_groups(groups: dict[str, list[str]], score: Callable[[list[str]], float], target: float) -> dict:
    """Groups to keep in float so that ``score(excluded node names) >= target``.

    Returns ``groups`` (kept in float, in the order chosen), ``nodes``, ``cosine`` (the score
    reached), ``reached``, ``baseline`` (fully int8), ``gains`` (each group alone) and ``steps``."""
    baseline = score([])
    result = {"target": target, "baseline": baseline, "gains": {}, "steps": [], "groups": [], "nodes": [],
              "cosine": baseline, "reached": baseline >= target}
    if result["reached"]:
        return result
    gains = {g: score(list(nodes)) - baseline for g, nodes in groups.items()}
    result["gains"] = gains
    # Helpful groups first; then the rest, since noise from several groups is not additive (a group that
    # does not help alone can once its neighbours are float).
    order = sorted(gains, key=lambda g: (gains[g] <= 0, -gains[g]))
    for g in order:
        result["groups"].append(g)
        result["nodes"] = [n for k in result["groups"] for n in groups[k]]
        reached = gains[g] + baseline if len(result["groups"]) == 1 else score(result["nodes"])
        result["steps"].append({"groups": len(result["groups"]), "added": g, "cosine": reached})
        result["cosine"] = reached
        if reached >= target:
            result["reached"] = True
            break
    return result

"""What every section of REPORT.md shares: the results folder, number and table formatting, the runtimes' order."""

from __future__ import annotations

import json
from pathlib import Path

from cnnexport.runtimes import MODULE_RUNTIMES, RUNTIME_TABLE


HERE = Path(__file__).parents[1]  # benchmarks/
RESULTS = HERE / "results"
TARGET_MODELS = ("resnet50", "mobilenet_v2", "shufflenet_v2_x1_0")
#: PyTorch's own rows first (eager, CUDA graphs, compiled), then the file runtimes in the runtimes table's order
RUNTIME_ORDER = ("torch", "torch-cudagraph", "torch-compile",
                 *(name for name in RUNTIME_TABLE if name not in MODULE_RUNTIMES))


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def fmt(v, spec: str = "{:.2f}", none: str = "-") -> str:
    return none if v is None else spec.format(v)


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def _order(runtime: str) -> int:
    return RUNTIME_ORDER.index(runtime) if runtime in RUNTIME_ORDER else 99


def _gpu(result: dict) -> str | None:
    return next((r.get("gpu") for r in result["rows"] if r.get("gpu")), None)


def fp32_roofline(row: dict) -> list[str]:
    """A row's roofline cells: fp32 rows only (rows measured before int8 rows were left empty carry a
    bound from the fp32 ceiling, which does not bound int8 or fp16 kernels)."""
    if row["precision"] != "fp32":
        return ["-", "-"]
    return [fmt(row.get("roofline_ms")), fmt(row.get("of_roofline"), "{:.0%}")]


def measured_on(result: dict) -> str:
    """', measured on <CPU> (<ISA>)' for a result that records its machine (results of earlier sessions
    may come from another CPU than the page's first section)."""
    m = result.get("machine") or next((r.get("machine") for r in all_rows(result) if r.get("machine")), None)
    return f", measured on {m['cpu']} ({isa_text(m)})" if m else ""


def recalled(*results: dict) -> str:
    """' The calls were re-judged ...' for results whose paired calls `benchmarks/recall.py` re-judged."""
    dates = sorted({r["calls_recomputed"]["date"] for r in results if r.get("calls_recomputed")})
    return (f" The calls were re-judged on {', '.join(dates)} by today's rule (`benchmarks/recall.py`); the rounds "
            "are as measured." if dates else "")


def isa_text(machine: dict) -> str:
    """The vector extensions a result's machine has, e.g. 'avx2, avx512f, avx512_vnni'."""
    return ", ".join(k for k in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile")
                     if machine["isa"].get(k)) or "no AVX2"


def beyond_spread(c: dict, rows: list[dict]) -> str:
    """'yes' when the fp16 row's median exceeds the fp32 one's by more than the larger of their spreads."""
    spreads = [r["spread"] for r in rows if r["model"] == c["model"] and r["runtime"] == c["runtime"]]
    return "yes" if c["fp16_ms"] / c["fp32_ms"] - 1 > max(spreads) else "no"


def all_rows(data) -> list[dict]:
    """Every benchmark row (a dict with round medians) in the loaded results, wherever a step keeps them."""
    if isinstance(data, dict):
        if "round_medians_ms" in data:
            return [data]
        return [r for v in data.values() for r in all_rows(v)]
    if isinstance(data, list):
        return [r for v in data for r in all_rows(v)]
    return []

"""REPORT.md: the three target models against their roofline (`roofline_layers.py`, the targets' bench rows)."""

from __future__ import annotations


from .common import TARGET_MODELS, fmt, table, isa_text


def roofline_section(layers: dict | None, zoo: dict | None, benches: dict[str, dict | None]) -> list[str]:
    """The three target models against their roofline: of_roofline per runtime (bench rows) and, from
    the runtimes' own profilers, each layer kind's bound against its measured time."""
    if not layers:
        return []
    m = layers["machine"]
    out = ["## The roofline of the three target models", "",
           f"`python benchmarks/roofline_layers.py` ({layers['threads']} threads, {m['cpu']}, {isa_text(m)}): "
           "`cnnexport profile FILE --roofline --per-layer` on each model's ONNX file (ONNX Runtime's profiler) and "
           "OpenVINO IR (its performance counters). A layer group is a convolution with what the runtime fuses "
           "into it, charged at the compute ceiling or at the bandwidth of the memory level that holds its working "
           "set, whichever is slower; `bound / measured` near 100% means the group runs at the machine's limit, "
           "far below it that something else (layout reorders, poor kernel choice, threading) costs the time, "
           "above it that an assumption of the bound broke for that group (named below the tables).", ""]
    body = []
    for model, per_rt in layers["models"].items():
        for rt, r in per_rt.items():
            roofs = r.get("roofs") or []
            limits = f"{r['ceiling_gflops']:.0f} / " + (", ".join(f"{x['level']} {x['gbs']:.0f}" for x in roofs)
                                                        if roofs else f"{r['bandwidth_gbs']:.1f}")
            body.append([model, rt, limits, fmt(r["bound_ms"]), fmt(r.get("bound_dram_ms")), fmt(r["measured_ms"]),
                         fmt(r["of_roofline"], "{:.0%}"), f"{r['memory_bound_share']:.0%}", r["farthest_kind"] or "-"])
    out += table(["model", "runtime", "GFLOP/s / GB/s", "bound ms", "DRAM-only bound ms", "profiled ms",
                  "bound / measured", "memory-bound share of the bound", "kind farthest from its bound"], body)
    out += ["", "Per layer kind (bound / measured; share of the measured time):", ""]
    body = []
    for model, per_rt in layers["models"].items():
        for rt, r in per_rt.items():
            kinds = [k for k in r["by_kind"] if k["measured_ms"]]
            body.append([model, rt, "; ".join(
                f"{k['kind']} {fmt(k['of_bound'], '{:.0%}')} ({k['measured_ms'] / r['measured_ms']:.0%}"
                + (f", {'/'.join(k['levels'])}" if k.get("levels") else "") + ")"
                for k in kinds[:6])])
    out += table(["model", "runtime", "kinds, most time first (bound / measured; share of the time, levels charged)"],
                 body)
    beaten = [(model, rt, b) for model, per_rt in layers["models"].items() for rt, r in per_rt.items()
              for b in r.get("beating") or []]
    if beaten:
        out += ["", f"Layer groups that ran faster than their bound ({len(beaten)}; one profiled run per node, so "
                "only beyond 10%): " + "; ".join(f"{model} on {rt}: {b['name']} ({b['kind']}, {b['of_bound']:.0%}, "
                                                 f"{b['limit']}-bound at {b['level']}): {b['assumption']}"
                                                 for model, rt, b in beaten[:8])
                + (f"; and {len(beaten) - 8} more" if len(beaten) > 8 else "") + "."]
    rows = [r for b in benches.values() if b for r in b["rows"] if r.get("of_roofline") and not r.get("plain")
            and r["precision"] in ("fp32", "int8")]
    if not rows and zoo:
        rows = [r for r in zoo["rows"] if r["model"] in TARGET_MODELS and r.get("of_roofline")]
    if rows:
        out += ["", "`of_roofline` of every bench row of the three models (bound / median latency; an int8 row "
                "against the int8 GEMM ceiling and its int8 bytes), beside the DRAM-only bound; `beats` marks a row "
                "faster than its bound by more than its round spread:", ""]
        out += table(["model", "runtime", "precision", "median ms", "roofline ms", "of roofline", "DRAM-only ms",
                      "of DRAM-only", "spread", "beats"],
                     [[r["model"], r["runtime"], r["precision"], fmt(r["median_ms"]), fmt(r["roofline_ms"]),
                       fmt(r["of_roofline"], "{:.0%}"), fmt(r.get("roofline_dram_ms")),
                       fmt(r["roofline_dram_ms"] / r["median_ms"] if r.get("roofline_dram_ms") else None, "{:.0%}"),
                       fmt(r.get("spread"), "{:.0%}"), {True: "yes", False: "no"}.get(r.get("beats_bound"), "-")]
                      for r in rows])
    picked = []
    for b in (b for b in benches.values() if b):
        for pk in b.get("pick") or []:
            row = next((r for r in b["rows"] if r.get("artifact") == pk["artifact"] and r["runtime"] == pk["runtime"]
                        and r["batch"] == pk["batch"] and r["threads"] == pk["threads"] and not r.get("plain")), None)
            if row:
                picked.append([pk["model"], pk["precision"], f"{pk['artifact']} on {pk['runtime']}",
                               fmt(row["median_ms"]), fmt(row.get("roofline_ms")), fmt(row.get("of_roofline"), "{:.0%}")])
    if picked:
        out += ["", "The artifact `bench --pick` chose for each target and precision, against its bound (the target: "
                "70% of it; where a pick falls short, the per-kind table above says which layers hold it back):", ""]
        out += table(["model", "precision", "picked", "median ms", "bound ms", "of bound"], picked)
    out += ["", "Across machines: `benchmarks/cross_machine/REPORT.md` (`cnnexport report` over every machine's rows "
            "in `benchmarks/results/`).", ""]
    return out

"""REPORT.md: the three target models' latency on every CPU runtime (`run_all.py --only targets`)."""

from __future__ import annotations


from cnnexport.bench.rows import CALL_RULE

from .common import TARGET_MODELS, RUNTIME_ORDER, fmt, table, _order, fp32_roofline, recalled


def targets_section(zoo: dict | None) -> list[str]:
    if not zoo:
        return []
    rows = [r for r in zoo["rows"] if r["batch"] == 1 and r["model"] in TARGET_MODELS]
    out = ["## Latency of the three target models (batch 1, "
           f"{zoo['threads']} threads, fp32; ceiling {fmt(zoo['ceiling_gflops'], '{:.0f}')} GFLOP/s)", ""]
    body = []
    for model in TARGET_MODELS:
        for rt in RUNTIME_ORDER:
            r = next((x for x in rows if x["model"] == model and x["runtime"] == rt), None)
            if r:
                body.append([model, rt, fmt(r["median_ms"]), fmt(r["spread"], "{:.0%}"), fmt(r["speedup"], "{:.2f}x"),
                             fmt(r["gmacs_per_s"], "{:.1f}"), fmt(r["ceiling_fraction"], "{:.0%}"),
                             fmt(r.get("roofline_ms")), fmt(r.get("of_roofline"), "{:.0%}")])
    out += table(["model", "runtime", "median ms", "spread", "x vs PyTorch eager", "GMAC/s", "of ceiling",
                  "roofline ms", "of roofline"], body)
    out.append("")
    for model, need in (("resnet50", 2.0), ("mobilenet_v2", 5.0), ("shufflenet_v2_x1_0", 5.0)):
        cands = [x for x in rows if x["model"] == model and x["runtime"] != "torch" and x["speedup"]]
        if cands:
            best = min(cands, key=lambda x: x["median_ms"])
            extra = (f", {best['ceiling_fraction']:.0%} of the ceiling (target >= 85%)"
                     if model == "resnet50" and best["ceiling_fraction"] else "")
            out.append(f"- {model}: fastest artifact {best['artifact']} on {best['runtime']}, "
                       f"{best['speedup']:.2f}x PyTorch eager (target >= {need:.0f}x){extra}.")
    out.append("")
    return out


def targets_bench_section(benches: dict[str, dict | None]) -> list[str]:
    """The three target models measured on every CPU runtime, ncnn included (`run_all.py --only targets`),
    with each runtime's plain export beside cnnexport's when the run had --plain."""
    benches = {m: b for m, b in benches.items() if b}
    if not benches:
        return []
    has_plain = any(b.get("plain") for b in benches.values())
    out = ["### The same three models on every CPU runtime, ncnn included", "",
           "`cnnexport bench <model> --runtime " + ",".join(sorted({r["runtime"] for b in benches.values()
                                                                      for r in b["rows"]}, key=_order)) + " --pick"
           + (" --precision fp32,int8 --plain" if has_plain else "") + "`, its own run per model, "
           "with its own PyTorch eager baseline, sgemm ceiling and memory bandwidth (eager latency moves between "
           "runs: compare with the table above)"
           + ("; `.plain.` files are each runtime's own converter on the module (no cnnexport)" if has_plain else "")
           + ".", ""]
    body = []
    for model, b in benches.items():
        for r in sorted(b["rows"], key=lambda r: (r.get("plain", False), r["precision"],
                                                  RUNTIME_ORDER.index(r["runtime"]) if r["runtime"] in RUNTIME_ORDER
                                                  else 99)):
            body.append([model, r["artifact"] or r["runtime"], r["runtime"], r["precision"], fmt(r["median_ms"]),
                         fmt(r["spread"], "{:.0%}"), fmt(r["speedup"], "{:.2f}x"), fmt(r["gmacs_per_s"], "{:.1f}"),
                         fmt(r["ceiling_fraction"], "{:.0%}"), *fp32_roofline(r)])
    out += table(["model", "file", "runtime", "precision", "median ms", "spread", "x vs PyTorch eager", "GMAC/s",
                  "of ceiling", "roofline ms", "of roofline"], body)
    out.append("")
    for model, b in benches.items():
        for p in b.get("pick") or []:
            out.append(f"- {model}, fastest {p['precision']}: {p['artifact']} on {p['runtime']}, {p['median_ms']:.2f} ms; "
                       f"runner-up {p['runner_up']} {p['runner_up_median_ms']:.2f} ms ({p['margin']:.2f}x, "
                       + ("faster by the paired test" if p["beyond_noise"] else "a tie by the paired test")
                       + f": faster in {p['paired']['faster_rounds']} of {p['paired']['rounds']} rounds, "
                       f"p {p['paired']['p_value']:.2g}).")
    if has_plain:
        out += ["", "cnnexport's file against the plain export of the same runtime, paired by round (ours / plain "
                "per round: median and range; a call needs " + CALL_RULE + ")." + recalled(*benches.values()), ""]
        out += table(["model", "runtime", "ours ms", "plain ms", "ours / plain", "range", "rounds faster / slower",
                      "verdict"],
                     [[c["model"], c["runtime"], fmt(c["median_ms"]), fmt(c["plain_median_ms"]),
                       fmt(c["paired"]["median_ratio"], "{:.3f}"),
                       f"{fmt(c['paired']['min_ratio'], '{:.3f}')}-{fmt(c['paired']['max_ratio'], '{:.3f}')}",
                       f"{c['paired']['faster_rounds']} / {c['paired']['slower_rounds']} of {c['paired']['rounds']}",
                       {"faster": "ours faster", "slower": "**ours slower**"}.get(c["verdict"], "tie")]
                      for b in benches.values() for c in b.get("plain") or []])
    out.append("")
    return out

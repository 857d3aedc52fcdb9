"""REPORT.md: FLOPs against latency across the zoo, the bound check, Table 8 and the plain exports (`cnnexport study zoo`, `plain_recheck.py`)."""

from __future__ import annotations

from cnnexport.bench.rows import CALL_RULE, chance_of_call, sign_test

from .common import HERE, RUNTIME_ORDER, load, fmt, table, _gpu, measured_on


def zoo_section(zoo: dict | None, plot: str = "latency_vs_macs.png") -> list[str]:
    if not zoo:
        return []
    where = f"on {_gpu(zoo)} (`--device cuda`)" if zoo["device"] == "cuda" else "on this machine's CPU"
    out = [f"## FLOPs against latency across the zoo, {where}", "",
           f"`cnnexport study zoo` ({len({r['model'] for r in zoo['rows']})} models, {zoo['threads']} threads, "
           f"{zoo['rounds']} rounds{measured_on(zoo)}).", ""]
    from cnnexport.study.analysis import zoo_summary

    # derived from the rows with today's analysis, whatever the study of the time saved
    summaries = {f"batch{b}": zoo_summary(zoo["rows"], b) for b in zoo.get("batches", [1])}
    for key, summary in summaries.items():
        if any(s["predictors"]["zoo"]["roofline"] is not None for s in summary.values()):
            out += ["Spearman rank correlation of latency with (a) MACs, (b) memory access cost (bytes) and (c) the "
                    "roofline bound, over the zoo and over its depthwise-heavy part (MobileNet, ShuffleNet); "
                    f"{key}.", ""]
            out += table(["runtime", "models", "MACs", "memory", "roofline", "DRAM-only bound", "dw models", "dw MACs",
                          "dw memory", "dw roofline", "dw DRAM-only"],
                         [[rt, str(p["zoo"]["models"]), fmt(p["zoo"]["macs"]), fmt(p["zoo"]["memory_access"]),
                           fmt(p["zoo"]["roofline"]), fmt(p["zoo"].get("roofline_dram")),
                           str(p["depthwise_heavy"]["models"]), fmt(p["depthwise_heavy"]["macs"]),
                           fmt(p["depthwise_heavy"]["memory_access"]), fmt(p["depthwise_heavy"]["roofline"]),
                           fmt(p["depthwise_heavy"].get("roofline_dram"))]
                          for rt, s in summary.items() for p in [s["predictors"]]])
            out += bound_check_lines(zoo, summary)
            out += ["", "At matched FLOPs: of the pairs of networks within 25% of each other's MACs, how often the "
                    "one with fewer MACs is the slower by the paired test, and of the pairs the test "
                    "calls, how many the roofline bound orders right. Inside each Table-8 budget: the Spearman of "
                    "latency with MACs / with the roofline bound (the fastest network in brackets).", ""]
            budgets = list(next(iter(summary.values()))["table8_budgets"])
            out += table(["runtime", "pairs", "fewer MACs, slower", "fewer MACs, faster", "ties", "roofline right",
                          *[f"~{b}M" for b in budgets]],
                         [[rt, str(s["matched_macs"]["pairs"]),
                           f"{s['matched_macs']['inverted']} ({fmt(s['matched_macs']['inversion_rate'], '{:.0%}')})"
                           if s["matched_macs"]["inverted"] is not None else "- (too few rounds to call)",
                           fmt(s["matched_macs"]["in_order"], "{}"), fmt(s["matched_macs"]["ties"], "{}"),
                           f"{s['matched_macs']['roofline_right']} of {s['matched_macs']['roofline_called']} "
                           f"({fmt(s['matched_macs']['roofline_rate'], '{:.0%}')})"
                           if s["matched_macs"]["roofline_called"] is not None else "-",
                           *[f"{fmt(s['table8_budgets'][b]['spearman_macs'])} / "
                             f"{fmt(s['table8_budgets'][b]['spearman_roofline'])} ({s['table8_budgets'][b]['fastest']})"
                             for b in budgets]] for rt, s in summary.items()])
        else:
            out += table(["runtime", "models", f"Spearman(MACs, latency), {key}"],
                         [[rt, str(s["models"]), fmt(s["spearman_macs_latency"])] for rt, s in summary.items()])
        out.append("")
    if (HERE / plot).is_file():
        out += [f"![latency against MACs, log-log, one panel per runtime]({plot})", ""]
    b1 = summaries.get("batch1", {})
    rt_best = {rt: max(s["gmacs_per_s"].items(), key=lambda kv: kv[1]) for rt, s in b1.items() if s["gmacs_per_s"]}
    rt_worst = {rt: min(s["gmacs_per_s"].items(), key=lambda kv: kv[1]) for rt, s in b1.items() if s["gmacs_per_s"]}
    out += table(["runtime", "highest GMAC/s", "lowest GMAC/s"],
                 [[rt, f"{rt_best[rt][0]} {rt_best[rt][1]:.1f}", f"{rt_worst[rt][0]} {rt_worst[rt][1]:.2f}"]
                  for rt in rt_best])
    out += ["", "### Table 8 at matched MACs", ""]
    runtimes = sorted({rt for r in zoo["table8"] for rt in r["latency_ms"]},
                      key=lambda r: RUNTIME_ORDER.index(r) if r in RUNTIME_ORDER else 99)
    out += table(["budget", "network", "paper MFLOPs", "paper top-1 err %", "MMACs here"] + [f"{rt} ms" for rt in runtimes],
                 [[f"~{r['budget_mflops']}M", r["paper_name"], str(r["paper_mflops"]), fmt(r["paper_top1_err"], "{:.1f}"),
                   fmt(r["macs"] / 1e6 if r["macs"] else None, "{:.0f}")]
                  + [fmt(r["latency_ms"].get(rt)) for rt in runtimes] for r in zoo["table8"]])
    plain = plain_pairs(zoo)
    if plain:
        slower = [p for p in plain if p["call"] == "slower"]
        faster = [p for p in plain if p["call"] == "faster"]
        ratios = sorted(p["median_ratio"] for p in plain)
        labels = sorted({p["plain_runtime"] for p in plain})
        out += ["", "### cnnexport's files against plain exports", "",
                f"Plain files: {', '.join(labels)}. {len(plain) - len(slower)} of {len(plain)} model/runtime pairs are "
                f"not slower by the paired test (a call needs {CALL_RULE}); {len(faster)} are "
                f"faster. Ours / plain, median per-round ratio from {ratios[0]:.2f} to {ratios[-1]:.2f} (median "
                f"{ratios[len(ratios) // 2]:.2f})."]
        if slower:
            out.append("Slower: " + ", ".join(f"{p['model']} on {p['runtime']} ({p['median_ratio']:.3f})"
                                              for p in slower) + ".")
        out += recheck_lines(load("plain_recheck"), zoo["rounds"])
    if zoo.get("failures"):
        out += ["", "Not measured: " + "; ".join(zoo["failures"]) + "."]
    out.append("")
    return out


def limits_line(result: dict) -> str:
    """The limits a study's bounds were drawn from: the compute ceiling at the study's precision (and what
    set it) and each memory level's roof, with the spread of their measurements."""
    threads = str(result["threads"])
    lim = (result.get("limits") or {}).get(threads) or (result.get("limits") or {}).get(result["threads"]) or {}
    precision = result.get("precision", "fp32")
    ceiling = lim.get(f"{precision} ceiling") or {}
    value = result.get("ceiling_gflops") if precision == "fp32" else max(ceiling.get("values") or [0]) or None
    unit = "GFLOP/s" if precision == "fp32" else "GOP/s"
    parts = [f"{precision} compute ceiling {fmt(value, '{:.0f}')} {unit}"
             + (f" (set by {ceiling['set_by']}, spread {ceiling['spread']:.0%})" if ceiling.get("set_by") else "")]
    roofs = result.get("memory_roofs") or []
    if roofs:
        parts.append("memory roofs " + ", ".join(f"{r['level']} {r['gbs']:.0f}" for r in roofs) + " GB/s"
                     + (f" (DRAM spread {lim['memory bandwidth']['spread']:.0%})" if lim.get("memory bandwidth") else ""))
    return "; ".join(parts)


def zoo_int8_section(zoo8: dict | None) -> list[str]:
    """The zoo's int8 files against the int8 roofline (`cnnexport study zoo --precision int8`)."""
    if not zoo8:
        return []
    from cnnexport.study.analysis import zoo_summary

    models = len({r["model"] for r in zoo8["rows"]})
    out = ["## The zoo's int8 files against the int8 roofline", "",
           f"`cnnexport study zoo --precision int8` ({models} models, {zoo8['threads']} threads, {zoo8['rounds']} "
           f"rounds{measured_on(zoo8)}): each runtime's int8 file, calibrated on the sample photographs (the zoo's "
           "weights are random: these files are measured for their speed, and their check against PyTorch is "
           "reported, not required), charged one byte per element and its MACs at the int8 compute ceiling "
           "(the best int8 GEMM measured).", ""]
    summary = zoo_summary(zoo8["rows"], 1, "int8")
    out += table(["runtime", "models", "Spearman: MACs", "memory", "roofline", "DRAM-only bound", "dw models",
                  "dw MACs", "dw memory", "dw roofline"],
                 [[rt, str(p["zoo"]["models"]), fmt(p["zoo"]["macs"]), fmt(p["zoo"]["memory_access"]),
                   fmt(p["zoo"]["roofline"]), fmt(p["zoo"].get("roofline_dram")), str(p["depthwise_heavy"]["models"]),
                   fmt(p["depthwise_heavy"]["macs"]), fmt(p["depthwise_heavy"]["memory_access"]),
                   fmt(p["depthwise_heavy"]["roofline"])]
                  for rt, s in summary.items() for p in [s["predictors"]]])
    out += bound_check_lines(zoo8, summary)
    failures = zoo8.get("failures") or []
    if failures:
        out += ["", f"Not measured ({len(failures)}): " + "; ".join(f.split(":")[0] for f in failures[:12])
                + (f", and {len(failures) - 12} more" if len(failures) > 12 else "") + "."]
    return out + [""]


def bound_check_lines(zoo: dict, summary: dict) -> list[str]:
    """Is the roofline a bound? Per runtime: rows faster than their bound beyond their own round spread,
    against the cache-aware bound and the DRAM-only one, and the highest bound / latency."""
    if not any(s.get("bound", {}).get("rows") for s in summary.values()):
        return []
    out = ["", "Is the roofline a bound? A layer group (a convolution or matrix product with the element-wise ops "
           "runtimes fuse into it) is charged its bytes (inputs, weights, residual and one output at the row's "
           "precision) at the bandwidth of the memory level that holds them, or its MACs at the compute ceiling, "
           f"whichever is slower ({limits_line(zoo)}); on ncnn a dense 3x3 stride-1 convolution is charged "
           "Winograd F(6x6,3x3)'s multiplications. A row beats its bound when bound / latency exceeds 1 "
           "by more than the row's own round spread; the DRAM-only column charges every byte at DRAM bandwidth, as "
           "the first bound did."]
    redone = zoo.get("bound_recomputed")
    if redone:
        out[-1] += (f" The bound columns were recomputed on {redone['date']} (`benchmarks/rebound.py`: the model's "
                    "layer costs from a fresh fp32 ONNX export, checked against the row's memory access cost, and "
                    "the limits measured in the row's own run) after the model gained "
                    f"{redone['change']}; latencies and limits are as measured.")
    out.append("")
    out += table(["runtime", "rows with a bound", "beat the bound", "beat the DRAM-only bound", "median bound / latency",
                  "highest (spread)", "limits noisy"],
                 [[rt, str(b["rows"]), str(b["beating"]), str(b["beating_dram"]), fmt(b["median_of_roofline"], "{:.0%}"),
                   (f"{b['max_of_roofline']['model']} {b['max_of_roofline']['of_roofline']:.0%} "
                    f"({fmt(b['max_of_roofline']['spread'], '{:.0%}')})") if b["max_of_roofline"] else "-",
                   str(b["limits_noisy"])]
                  for rt, s in summary.items() for b in [s["bound"]]])
    beaten = [f"{b['model']} on {rt} ({b['of_roofline']:.0%}, spread {fmt(b['spread'], '{:.0%}')})"
              for rt, s in summary.items() for b in s["bound"]["beaten"]]
    if beaten:
        out += ["", f"Rows that beat their bound ({len(beaten)}): " + ", ".join(beaten[:12])
                + (f", and {len(beaten) - 12} more" if len(beaten) > 12 else "") + "."]
    wino = load("ncnn_winograd")
    if wino:
        ratios = sorted(wino["ratio_direct_over_winograd"])
        out += ["", "Why Winograd: charged their direct MACs at the best GEMM's rate, every VGG on ncnn ran 22-31% "
                "faster than its bound. `python benchmarks/ncnn_winograd.py`: "
                f"{wino['model']} with ncnn's Winograd off runs {ratios[len(ratios) // 2]:.2f}x slower (rounds "
                f"{ratios[0]:.2f}-{ratios[-1]:.2f}x), so the bound of a Winograd runtime counts Winograd's "
                "multiplications for those layers (the transforms' cost left out: a bound may only err low)."]
    return out


def recheck_lines(recheck: dict | None, study_rounds: int) -> list[str]:
    """The study's slower calls measured again with more rounds (`benchmarks/plain_recheck.py`)."""
    if not recheck:
        return []
    pairs = recheck["pairs"]
    calls = {c: [p for p in pairs if p["call"] == c] for c in ("slower", "faster", None)}
    chance = chance_of_call(study_rounds)
    out = ["", f"With {study_rounds} rounds, two files of equal speed are called by chance"
           + f" in {chance:.1%} of pairs in each direction (about {chance * recheck['study_pairs']:.0f} of "
           f"{recheck['study_pairs']} pairs). `python benchmarks/plain_recheck.py` "
           f"measured the {recheck['study_slower']} pairs called slower again, {recheck['rounds']} interleaved "
           f"rounds each (`cnnexport bench MODEL --plain`){measured_on(recheck)}: {len(calls['slower'])} slower, "
           f"{len(calls['faster'])} faster, {len(calls[None])} tied. With {recheck['rounds']} rounds an equal pair "
           f"is still called slower by chance {chance_of_call(recheck['rounds']):.1%} of the time (about "
           f"{chance_of_call(recheck['rounds']) * len(pairs):.1f} of {len(pairs)} pairs); p is the two-sided sign test.",
           ""]
    out += table(["model", "runtime", "study ours/plain", f"{recheck['rounds']} rounds: ours/plain (range)",
                  "rounds slower / faster", "p", "call"],
                 [[p["model"], p["runtime"], f"{p['study_median_ratio']:.3f}",
                   f"{p['median_ratio']:.3f} ({p['min_ratio']:.3f}-{p['max_ratio']:.3f})",
                   f"{p['slower_rounds']} / {p['faster_rounds']}", f"{sign_test(p['slower_rounds'], p['faster_rounds']):.2g}",
                   p["call"] or "tie"] for p in pairs])
    if recheck.get("failures"):
        out += ["", "Not measured: " + "; ".join(recheck["failures"]) + "."]
    return out


def plain_pairs(zoo: dict) -> list[dict]:
    """The study's plain rows against cnnexport's, re-tested round by round (the paired test) whatever
    the study of the time computed; a plain row's runtime may carry its tool in brackets."""
    from cnnexport.bench.rows import paired

    out = []
    for p in zoo.get("plain_rows", []):
        runtime = p["runtime"].split(" ")[0]
        ours = next((r for r in zoo["rows"] if r["model"] == p["model"] and r["runtime"] == runtime
                     and r["batch"] == p["batch"] and r["precision"] == "fp32"), None)
        if ours:
            test = paired(ours["round_medians_ms"], p["round_medians_ms"])
            out.append({"model": p["model"], "runtime": runtime, "plain_runtime": p["runtime"]
                        if p["runtime"] != runtime else f"{runtime} ({p['artifact']})".replace(p["model"], "<model>"),
                        "median_ratio": test["median_ratio"], "call": test["call"]})
    return out

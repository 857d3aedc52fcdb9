"""Render benchmarks/REPORT.md from the saved results (benchmarks/results/*.json); measures nothing.

    python benchmarks/report.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
TARGET_MODELS = ("resnet50", "mobilenet_v2", "shufflenet_v2_x1_0")
RUNTIME_ORDER = ("torch", "torch-cudagraph", "torch-compile", "onnxruntime", "openvino", "tflite", "ncnn",
                 "executorch", "mnn", "aoti")


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def fmt(v, spec: str = "{:.2f}", none: str = "-") -> str:
    return none if v is None else spec.format(v)


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def machine_section(results: list[dict]) -> list[str]:
    m = next((r["machine"] for r in results if r and "machine" in r), None)
    if not m:
        return []
    isa = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m["isa"].items() if k in
                    ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile"))
    return ["## Machine", "", f"{m['cpu']}, {m['logical_cores']} logical cores, {m['machine']}; {isa}. "
            f"Python {m['python']}, {m['os']}. No GPU was lent to the session that measured these figures, so "
            "every row is CPU; `--device cuda` rows appear when the same commands run on a CUDA machine.", ""]


def _rows(data) -> list[dict]:
    """Every benchmark row (a dict with round medians) in the loaded results, wherever a step keeps them."""
    if isinstance(data, dict):
        if "round_medians_ms" in data:
            return [data]
        return [r for v in data.values() for r in _rows(v)]
    if isinstance(data, list):
        return [r for v in data for r in _rows(v)]
    return []


def protocol_section(results: list) -> list[str]:
    rows = [r for d in results for r in _rows(d)]
    old = [r for r in rows if r.get("statistics") != "pooled"]
    statistics = ("A row's median, p90, p99, min, mean and std are those of every round's timed runs pooled, "
                  "so they describe the same runs" if not old else
                  f"{len(old)} of the {len(rows)} rows committed here were measured before cnnexport pooled the "
                  "rounds: their median is the median of the round medians and their p90, p99, min, mean and std "
                  "those of one round, so this page quotes their medians, spreads and ratios only; rows measured "
                  "since (`statistics: pooled`) take every distribution figure from all rounds' timed runs pooled")
    return ["## Protocol", "",
            "Warm-up runs are not counted and the first run is reported on its own; then at least `--runs` timed "
            "runs and `--min-time` seconds (a slow configuration may stop at `--max-time` once it has 10 runs). "
            "Each runtime runs in a fresh process per round "
            "(ONNX Runtime's spinning is off as well), rounds are interleaved across runtimes and their order "
            f"rotates, so no runtime slows another or always runs first. {statistics}. A row's spread is "
            "(max - min) / median of its round medians, and two configurations are ranked "
            "only when their round medians do not overlap. Every JSON row records runtime versions, CPU model, "
            "ISA flags and the GPU name (none here). The ceiling is a 2048x2048 numpy sgemm measured in the same "
            "run with the same thread count; a row's fraction of it is 2 x MACs / latency / ceiling. The memory "
            "bandwidth is a streaming add (a = b + c, 3 arrays of at least 4x the last-level cache together) with "
            "the same threads, measured in the same run; a row's roofline bound is the sum over the fp32 ONNX "
            "graph's layers of max(2 x MACs / ceiling, bytes / bandwidth), bytes = the layer's memory access "
            "cost (inputs + outputs + weights) at the row's precision, and `of_roofline` = bound / median.", ""]


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


def _order(runtime: str) -> int:
    return RUNTIME_ORDER.index(runtime) if runtime in RUNTIME_ORDER else 99


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
                       + ("faster by the paired test" if p["beyond_noise"] else "a tie by the paired test") + ").")
    if has_plain:
        out += ["", "cnnexport's file against the plain export of the same runtime, paired by round (ours / plain "
                "per round: median and range; a call needs every round, or all but one of 5+):", ""]
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


def _gpu(result: dict) -> str | None:
    return next((r.get("gpu") for r in result["rows"] if r.get("gpu")), None)


def guidelines_section(g: dict | None) -> list[str]:
    if not g:
        return []
    where = f"on {_gpu(g)} (`--device cuda`)" if g["device"] == "cuda" else "on this machine's CPU"
    out = [f"## ShuffleNetV2's guidelines {where}", "",
           f"`cnnexport study guidelines` ({g['threads']} threads, batch {g.get('batch', 1)}, {g['rounds']} rounds, widths "
           f"{', '.join('x' + str(w) for w in g['widths'])}{measured_on(g)}). "
           "Ratios are speed relative to each table's first row "
           "(higher is faster), ours beside the paper's (x1 width: GPU = GTX 1080Ti, ARM = Snapdragon 810).", ""]
    runtimes = sorted({t["runtime"] for t in g["tables"]}, key=lambda r: RUNTIME_ORDER.index(r)
                      if r in RUNTIME_ORDER else 99)
    for guideline in dict.fromkeys(t["guideline"] for t in g["tables"]):
        tabs = [t for t in g["tables"] if t["guideline"] == guideline and t.get("align", 1) == 1]
        claim = next(t["verdict"]["claim"] for t in tabs)
        out += [f"### {guideline}: {claim}", ""]
        configs = [r["config"] for r in tabs[0]["rows"]]
        head = ["config", "paper GPU", "paper ARM"] + [f"{rt} x{w}" for w in g["widths"] for rt in runtimes]
        body = []
        for i, config in enumerate(configs):
            first = next(t for t in tabs if t["width"] == 1) if any(t["width"] == 1 for t in tabs) else tabs[0]
            line = [config, fmt(first["rows"][i]["paper_gpu_ratio"]), fmt(first["rows"][i]["paper_arm_ratio"])]
            for w in g["widths"]:
                for rt in runtimes:
                    t = next((t for t in tabs if t["width"] == w and t["runtime"] == rt), None)
                    line.append(fmt(t["rows"][i]["ratio"]) if t else "-")
            body.append(line)
        out += table(head, body)
        out.append("")
        verdict_rows = []
        for rt in runtimes:
            for w in g["widths"]:
                t = next((t for t in tabs if t["width"] == w and t["runtime"] == rt), None)
                if t:
                    v = t["verdict"]
                    verdict_rows.append([rt, f"x{w}", f"**{v['verdict']}**", v.get("detail", "")])
        out += table(["runtime", "width", "verdict", "evidence"], verdict_rows)
        out.append("")
    out += alignment_section(g, runtimes)
    return out


def alignment_section(g: dict, runtimes: list[str]) -> list[str]:
    """The G1/G2 settings with channels rounded to multiples of 8 and 16: verdicts, and how much of each
    guideline's slowdown (per MAC) remains once channels are aligned."""
    from cnnexport.study.analysis import alignment_effect

    effects = alignment_effect(g["tables"]) if any(t.get("align", 1) > 1 for t in g["tables"]) else []
    if not effects:
        return []
    out = ["### The alignment factor: G1 and G2 with channels rounded to multiples of "
           f"{' and '.join(map(str, g.get('aligns', [])))}", "",
           "The paper matches FLOPs with channel counts such as 90, 180, 52, 36 and 312 that are not multiples of 8. "
           "Here the same settings are rounded to the nearest multiple (e.g. G1 1:2 = 90:180 -> 88:184 at 8); "
           "`slowdown` is the expected-slowest configuration's time per MAC over the expected-fastest's, and "
           "`remaining` = (aligned - 1) / (unaligned - 1): 100% means alignment changes nothing, 0% that the "
           "whole effect was misalignment (empty where the unaligned effect is under 5%).", ""]
    body = [[e["guideline"], f"x{e['width']}", e["runtime"], str(e["align"]), fmt(e["slowdown_unaligned"], "{:.2f}x"),
             fmt(e["slowdown_aligned"], "{:.2f}x"), fmt(e["remaining"], "{:.0%}"), e["verdict_unaligned"],
             e["verdict_aligned"]]
            for e in sorted(effects, key=lambda e: (e["guideline"], e["width"], runtimes.index(e["runtime"])
                                                    if e["runtime"] in runtimes else 99, e["align"]))]
    return out + table(["guideline", "width", "runtime", "aligned to", "slowdown unaligned", "slowdown aligned",
                        "remaining", "verdict unaligned", "verdict aligned"], body) + [""]


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
                    "one with fewer MACs is the slower in every round (the paired test), and of the pairs the test "
                    "calls, how many the roofline bound orders right. Inside each Table-8 budget: the Spearman of "
                    "latency with MACs / with the roofline bound (the fastest network in brackets).", ""]
            budgets = list(next(iter(summary.values()))["table8_budgets"])
            out += table(["runtime", "pairs", "fewer MACs, slower", "fewer MACs, faster", "ties", "roofline right",
                          *[f"~{b}M" for b in budgets]],
                         [[rt, str(s["matched_macs"]["pairs"]),
                           f"{s['matched_macs']['inverted']} ({fmt(s['matched_macs']['inversion_rate'], '{:.0%}')})",
                           str(s["matched_macs"]["in_order"]), str(s["matched_macs"]["ties"]),
                           f"{s['matched_macs']['roofline_right']} of {s['matched_macs']['roofline_called']} "
                           f"({fmt(s['matched_macs']['roofline_rate'], '{:.0%}')})",
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
                f"not slower by the paired test (slower in every round, or all but one of 5+); {len(faster)} are "
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
    """The limits a study's bounds were drawn from: the compute ceiling (and what set it) and each memory
    level's roof, with the spread of their measurements."""
    threads = str(result["threads"])
    lim = (result.get("limits") or {}).get(threads) or (result.get("limits") or {}).get(result["threads"]) or {}
    ceiling = lim.get("fp32 ceiling") or {}
    parts = [f"fp32 compute ceiling {fmt(result.get('ceiling_gflops'), '{:.0f}')} GFLOP/s"
             + (f" (set by {ceiling['set_by']}, spread {ceiling['spread']:.0%})" if ceiling.get("set_by") else "")]
    roofs = result.get("memory_roofs") or []
    if roofs:
        parts.append("memory roofs " + ", ".join(f"{r['level']} {r['gbs']:.0f}" for r in roofs) + " GB/s"
                     + (f" (DRAM spread {lim['memory bandwidth']['spread']:.0%})" if lim.get("memory bandwidth") else ""))
    return "; ".join(parts)


def bound_check_lines(zoo: dict, summary: dict) -> list[str]:
    """Is the roofline a bound? Per runtime: rows faster than their bound beyond their own round spread,
    against the cache-aware bound and the DRAM-only one, and the highest bound / latency."""
    if not any(s.get("bound", {}).get("rows") for s in summary.values()):
        return []
    out = ["", "Is the roofline a bound? A layer is charged at the memory level that holds its working set (inputs, "
           "outputs and weights at the row's precision), at that level's measured bandwidth, or at the compute "
           f"ceiling, whichever is slower ({limits_line(zoo)}). A row beats its bound when bound / latency exceeds 1 "
           "by more than the row's own round spread; the DRAM-only column charges every byte at DRAM bandwidth, as "
           "the earlier bound did.", ""]
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
    return out


def chance_of_call(rounds: int) -> float:
    """How often the paired rule calls one direction for two configurations of equal speed."""
    from math import comb

    needed = rounds - 1 if rounds >= 5 else rounds
    return sum(comb(rounds, k) for k in range(needed, rounds + 1)) / 2 ** rounds


def recheck_lines(recheck: dict | None, study_rounds: int) -> list[str]:
    """The study's slower calls measured again with more rounds (`benchmarks/plain_recheck.py`)."""
    if not recheck:
        return []
    pairs = recheck["pairs"]
    calls = {c: [p for p in pairs if p["call"] == c] for c in ("slower", "faster", None)}
    from cnnexport.bench.rows import sign_test

    chance = chance_of_call(study_rounds)
    out = ["", f"With {study_rounds} rounds, two files of equal speed agree in every round by chance"
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
    out += ["", "Across machines: `benchmarks/cross_machine/REPORT.md` (`cnnexport report` over every machine's rows "
            "in `benchmarks/results/`).", ""]
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


def int8_section(speed: dict | None, acc: dict | None) -> list[str]:
    out = []
    if speed:
        out += ["## int8 against fp32", "",
                f"`benchmarks/int8_speed.py`, batch 1, {speed['threads']} threads{measured_on(speed)}.", ""]
        body = []
        for model, m in speed["models"].items():
            for rt, s in m["int8_speedup_per_runtime"].items():
                body.append([model, rt, f"{s:.2f}x"])
            body.append([model, "best int8 / best fp32", f"{m['best_int8_vs_best_fp32']:.2f}x"])
        out += table(["model", "runtime", "int8 speed-up"], body) + [""]
        body = []
        for model, m in speed["models"].items():
            for r in m["rows"]:
                body.append([model, r["artifact"], r["runtime"], r["precision"], f"{r['median_ms']:.2f}",
                             f"{r['cosine_vs_pytorch']:.4f}", f"{r['top1_agreement']:.0%}"])
        out += ["Every file, median of the rounds' medians, and its logits against PyTorch on the held-out crops "
                "(`.int8-auto.onnx`: `--keep-float auto` for a 0.99 target, searched on the calibration "
                "samples only):", ""]
        out += table(["model", "file", "runtime", "precision", "median ms", "cosine", "top-1 agreement"], body) + [""]
        for model, m in speed["models"].items():
            auto = next(q for q in m["quantization"] if q.get("keep_float_search"))
            search = auto["keep_float_search"]
            best = m.get("best_int8_with_cosine_0.99")
            reach = (f"the fastest int8 file with held-out cosine >= 0.99 is {best['artifact']}, {best['median_ms']:.2f} "
                     f"ms, {best['speedup_vs_best_fp32']:.2f}x the best fp32 file" if best
                     else "no int8 file reaches a held-out cosine of 0.99")
            out.append(f"- {model}: `--keep-float auto` kept {auto['float_compute_nodes']} of {auto['compute_nodes']} "
                       f"compute nodes in float ({', '.join(search['groups']) or 'none'}; calibration-sample cosine "
                       f"{search['baseline']:.4f} -> {search['cosine']:.4f}); {reach}.")
        out.append("")
    if acc:
        out += ["### Accuracy on data calibration never saw", ""]
        body = []
        for model, d in acc["digits"].items():
            for rt, f in d["per_runtime"].items():
                body.append([model, rt, f"{f['accuracy_fp32']:.2%}", f"{f['accuracy_int8']:.2%}",
                             f"{f['accuracy_drop_points']:+.2f}", f"{f['sqnr_db']:.1f}"])
        out += table(["digits model", "runtime", "fp32 acc", "int8 acc", "drop (points)", "logit SQNR dB"], body) + [""]
        for model, d in acc["digits"].items():
            kinds = ", ".join(f"{k} {v['mean_sqnr_db']:.1f} dB mean / {v['min_sqnr_db']:.1f} min ({v['layers']})"
                              for k, v in d["sqnr_by_op_kind"].items())
            out.append(f"- {model} per-layer SQNR by op kind (ONNX Runtime): {kinds}.")
        out.append("")
        body = []
        for model, z in acc["zoo"].items():
            e = z["evaluation"]
            worst = z["per_layer_sqnr_worst"][0]
            body.append([model, f"{e['top1_agreement']:.0%}", f"{e['cosine_mean']:.4f}", f"{e['sqnr_db']:.1f}",
                         f"{worst['op']} {worst['sqnr_db']:.1f} dB",
                         f"{z['ort_total_ms']['fp32']:.1f} / {z['ort_total_ms']['int8']:.1f}"])
        out += table(["zoo model (ONNX Runtime QDQ)", "top-1 agreement", "cosine", "SQNR dB", "worst layer",
                      "ORT kernel ms fp32 / int8"], body) + [""]
        for model, z in acc["zoo"].items():
            prof = z["ort_op_profile_ms"]["int8"]
            top = sorted(prof.items(), key=lambda kv: -kv[1]["ms_per_run"])[:5]
            out.append(f"- {model} int8 on ONNX Runtime, time per op type: "
                       + ", ".join(f"{op} {v['ms_per_run']:.2f} ms ({v['nodes']})" for op, v in top) + ".")
        out.append("")
    return out


def gpu_section(g: dict | None, zoo: dict | None) -> list[str]:
    """The same study on a CUDA machine (measured once, when a GPU was lent; see run_gpu.sh)."""
    if not g and not zoo:
        return []
    src = g or zoo
    out = ["# On a GPU", "", f"Measured once on a lent machine: {_gpu(src)}, host CPU {src['machine']['cpu']}; PyTorch "
           "eager and the same model replayed from a CUDA graph (`torch-cudagraph`). ONNX Runtime there had no CUDA "
           "execution provider (`onnxruntime`, not `onnxruntime-gpu`), so only PyTorch rows exist. cuDNN's default "
           "lets convolutions use TF32.", ""]
    return out + guidelines_section(g) + zoo_section(zoo, "latency_vs_macs_cuda.png")


def graph_changes_section(gc: dict | None) -> list[str]:
    if not gc:
        return []
    out = ["## Graph-level changes, each measured", "",
           f"`benchmarks/graph_changes.py`, batch 1, {gc['threads']} threads, {gc['rounds']} rounds{measured_on(gc)}.",
           ""]
    paired_test = all("paired" in c for c in gc["changes"])
    out += table(["change", "model", "runtime", "before ms", "after ms", "speed-up",
                  "called by the paired test" if paired_test else "beyond the spread of round medians"],
                 [[c["change"], c["model"], c["runtime"], fmt(c["before"]["median_ms"]), fmt(c["after"]["median_ms"]),
                   f"{c['speedup']:.2f}x", "yes" if c["beyond_spread"] else "no"] for c in gc["changes"]])
    return out + [""]


def headline_section(h: dict | None, cov: dict | None) -> list[str]:
    out = []
    if h:
        out += ["## Export time", "", f"`{h['command']}` as a cold process: {h['median_s']['cnnexport']:.2f} s; a plain "
                f"`torch.onnx.export` in a cold process: {h['median_s']['plain_torch_onnx_export']:.2f} s "
                f"({h['ratio_cnnexport_to_plain']:.2f}x; {h['note']}){measured_on(h)}.", ""]
        if h.get("phases_median_s"):
            phases = ", ".join(f"{k} {v:.2f} s" for k, v in h["phases_median_s"].items())
            out += [f"Inside the export (its report's `timings_s`, medians): {phases}; the rest is the interpreter, "
                    "imports (torch, onnx, onnxsim, ONNX Runtime), building the model and writing.", ""]
        if h.get("versions", {}).get("ml_dtypes"):
            out += [f"Both commands ran in one environment, ml_dtypes {h['versions']['ml_dtypes']} (constraints.txt keeps "
                    "it below 0.7: importing 0.7.0, which onnx and torch.onnx do, took 0.46 s here, 0.6.0 3 ms; the pin "
                    "took about 0.4 s off both commands, which raised the ratio: 1.77x before it). cnnexport's own work "
                    "(folding, onnxsim, the equivalence check) is most of the difference: a helper process that overlapped "
                    "onnxsim with PyTorch's reference outputs made the export slower on 2 cores (4.6-5.5 s) and was "
                    "dropped.", ""]
    if cov:
        out += ["Coverage: see the README's table (`benchmarks/results/coverage.json`).", ""]
    return out


def fp32_roofline(row: dict) -> list[str]:
    """A row's roofline cells: fp32 rows only (rows measured before int8 rows were left empty carry a
    bound from the fp32 ceiling, which does not bound int8 or fp16 kernels)."""
    if row["precision"] != "fp32":
        return ["-", "-"]
    return [fmt(row.get("roofline_ms")), fmt(row.get("of_roofline"), "{:.0%}")]


def measured_on(result: dict) -> str:
    """', measured on <CPU> (<ISA>)' for a result that records its machine (results of earlier sessions
    may come from another CPU than the page's first section)."""
    m = result.get("machine") or next((r.get("machine") for r in _rows(result) if r.get("machine")), None)
    return f", measured on {m['cpu']} ({isa_text(m)})" if m else ""


def isa_text(machine: dict) -> str:
    """The vector extensions a result's machine has, e.g. 'avx2, avx512f, avx512_vnni'."""
    return ", ".join(k for k in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile")
                     if machine["isa"].get(k)) or "no AVX2"


def executorch_section(e: dict | None) -> list[str]:
    """ExecuTorch beside LiteRT (both XNNPACK), ONNX Runtime, OpenVINO and eager PyTorch (`benchmarks/executorch_bench.py`)."""
    if not e:
        return []
    m = e["machine"]
    out = ["## ExecuTorch beside the other runtimes", "",
           f"`python benchmarks/executorch_bench.py`, measured on {m['cpu']} ({isa_text(m)}), {m['logical_cores']} "
           f"logical cores: its own run, so compare its ratios, not its milliseconds, with the sections above. "
           f"Batch 1, {e['threads']} threads, {e['rounds']} rounds interleaved, one process per configuration and "
           f"round. Versions: " + ", ".join(f"{k} {v}" for k, v in e["versions"].items() if v) + ".", "",
           "### Delegation", "",
           "Operators inside XNNPACK partitions and those left to ExecuTorch's portable kernels; a fallback between "
           "two partitions is a graph break.", ""]
    body = []
    for group in ("targets", "digits"):
        for model, t in e[group].items():
            for precision, d in t["delegation"].items():
                body.append([model, precision, f"{d['delegated_ops']}/{d['delegated_ops'] + d['portable_ops']}",
                             ", ".join(f"{k} x{v}" for k, v in d["portable_by_op"].items()) or "none",
                             str(d["delegated_partitions"]), str(d["graph_breaks"])])
    out += table(["model", "precision", "ops in XNNPACK", "portable ops", "partitions", "graph breaks"], body)
    out += ["", "### int8 accuracy", "",
            "Target models (random weights, BatchNorm statistics from photographs): held-out mean cosine of each int8 "
            "file with PyTorch; the target is ExecuTorch no more than 0.005 below the best of the others.", ""]
    body = []
    for model, t in e["targets"].items():
        f = t["int8"]
        others = {rt: v["cosine_mean"] for rt, v in f.items() if rt != "executorch"}
        best = max(others, key=others.get) if others else None
        et = f.get("executorch", {}).get("cosine_mean")
        body.append([model, *(fmt(f.get(rt, {}).get("cosine_mean"), "{:.4f}") for rt in
                              ("onnxruntime", "openvino", "tflite", "executorch")),
                     fmt(et - others[best] if et is not None and best else None, "{:+.4f}")])
    out += table(["model", "ONNX Runtime", "OpenVINO", "TFLite", "ExecuTorch", "ExecuTorch - best other"], body)
    out += ["", "Digits-trained networks: test accuracy (450 images calibration never saw), fp32 -> int8.", ""]
    body = [[model, rt, fmt(100 * f["accuracy_fp32"], "{:.2f}%"), fmt(100 * f["accuracy_int8"], "{:.2f}%"),
             fmt(f["accuracy_drop_points"], "{:+.2f}")]
            for model, t in e["digits"].items() for rt, f in t["int8"].items()]
    out += table(["model", "runtime", "fp32", "int8", "drop (points)"], body)
    rows = e["rows"]
    out += ["", f"### Latency (batch 1, {e['threads']} threads)", ""]
    body = []
    for model in e["targets"]:
        mine = [r for r in rows if r["model"] == model]
        by = {(r["runtime"], r["precision"]): r for r in mine}
        for r in sorted(mine, key=lambda r: (r["precision"], RUNTIME_ORDER.index(r["runtime"])
                                              if r["runtime"] in RUNTIME_ORDER else 99)):
            lite = by.get(("tflite", r["precision"]))
            body.append([model, r["runtime"], r["precision"], fmt(r["median_ms"]), fmt(r["spread"], "{:.0%}"),
                         fmt(r["median_ms"] / lite["median_ms"] if lite else None, "{:.2f}x"),
                         fmt(r["speedup"], "{:.2f}x"), fmt(r["int8_speedup"], "{:.2f}x")])
    out += table(["model", "runtime", "precision", "median ms", "spread", "ms / LiteRT's ms", "x vs PyTorch eager",
                  "int8 x own fp32"], body)
    out.append("")
    for model in e["targets"]:
        by = {(r["runtime"], r["precision"]): r for r in rows if r["model"] == model}
        et, lite, et8 = by.get(("executorch", "fp32")), by.get(("tflite", "fp32")), by.get(("executorch", "int8"))
        if et and lite:
            out.append(f"- {model}: ExecuTorch fp32 {et['median_ms']:.2f} ms = {et['median_ms'] / lite['median_ms']:.2f}x "
                       f"LiteRT's {lite['median_ms']:.2f} ms (target <= 1.2x)"
                       + (f"; ExecuTorch int8 {et8['median_ms']:.2f} ms, {et['median_ms'] / et8['median_ms']:.2f}x "
                          "faster than its fp32" if et8 else "") + ".")
    if e.get("failures"):
        out += ["", "Not measured: " + "; ".join(e["failures"])]
    out.append("")
    return out


def mnn_section(e: dict | None) -> list[str]:
    """MNN beside ONNX Runtime, OpenVINO, LiteRT and eager PyTorch (`benchmarks/mnn_bench.py`)."""
    if not e:
        return []
    m = e["machine"]
    out = ["## MNN beside the other CPU runtimes", "",
           f"`python benchmarks/mnn_bench.py`, measured on {m['cpu']} ({isa_text(m)}), {m['logical_cores']} logical "
           f"cores: its own run. Batch 1, {e['threads']} threads, {e['rounds']} rounds interleaved, one process per "
           "configuration and round. Versions: " + ", ".join(f"{k} {v}" for k, v in e["versions"].items() if v) + ".",
           "", "### int8 and fp16 accuracy", "",
           "Target models (random weights, BatchNorm statistics from photographs): held-out mean cosine of each int8 "
           "file with PyTorch, and MNN's fp16-weight file against PyTorch on the verification inputs.", ""]
    body = []
    for model, t in e["targets"].items():
        f = t["int8"]
        body.append([model, *(fmt(f.get(rt, {}).get("cosine_mean"), "{:.4f}") for rt in
                              ("onnxruntime", "openvino", "tflite", "mnn")),
                     fmt(t["fp16"]["max_rel"], "{:.1e}"), fmt(t["fp16"]["cosine"], "{:.6f}")])
    out += table(["model", "ONNX Runtime int8", "OpenVINO int8", "TFLite int8", "MNN int8", "MNN fp16 max rel",
                  "MNN fp16 cosine"], body)
    out += ["", "Digits-trained networks: test accuracy (450 images calibration never saw), fp32 -> int8.", ""]
    out += table(["model", "runtime", "fp32", "int8", "drop (points)"],
                 [[model, rt, fmt(100 * f["accuracy_fp32"], "{:.2f}%"), fmt(100 * f["accuracy_int8"], "{:.2f}%"),
                   fmt(f["accuracy_drop_points"], "{:+.2f}")]
                  for model, t in e["digits"].items() for rt, f in t["int8"].items()])
    out += ["", f"### Latency (batch 1, {e['threads']} threads)", ""]
    body = []
    for model in ["lenet5", *e["targets"]]:
        mine = [r for r in e["rows"] if r["model"] == model]
        by = {(r["runtime"], r["precision"]): r for r in mine}
        for r in sorted(mine, key=lambda r: (r["precision"], RUNTIME_ORDER.index(r["runtime"])
                                              if r["runtime"] in RUNTIME_ORDER else 99)):
            ort = by.get(("onnxruntime", r["precision"]))
            body.append([model, r["runtime"], r["precision"], fmt(r["median_ms"], "{:.3f}"), fmt(r["spread"], "{:.0%}"),
                         fmt(r["median_ms"] / ort["median_ms"] if ort else None, "{:.2f}x"),
                         fmt(r["int8_speedup"], "{:.2f}x")])
    out += table(["model", "runtime", "precision", "median ms", "spread", "ms / ONNX Runtime's ms", "int8 x own fp32"],
                 body)
    if e.get("failures"):
        out += ["", "Not measured: " + "; ".join(e["failures"])]
    out.append("")
    return out


def fp16_section(e: dict | None) -> list[str]:
    """fp16 files on the CPU: size and latency against fp32 (`benchmarks/fp16_cpu.py`)."""
    if not e:
        return []
    m = e["machine"]
    target = e["size_target"]
    out = ["## fp16 files on the CPU", "",
           f"`python benchmarks/fp16_cpu.py`, measured on {m['cpu']} ({isa_text(m)}), {m['logical_cores']} logical "
           f"cores. Batch 1, {e['threads']} threads, {e['rounds']} rounds interleaved, one process per configuration "
           "and round; fp16 against fp32 of the same runtime by the paired test (per-round ratio; a call needs every "
           "round, or all but one of at least 5). Versions: "
           + ", ".join(f"{k} {v}" for k, v in e["versions"].items() if v) + ".", "",
           f"Target: the OpenVINO and TFLite fp16 files at most {target:.0%} of the fp32 file's size (all files of "
           "the artifact: OpenVINO's .xml with its .bin) and not slower than fp32 beyond the spread (the difference "
           "of the medians against the larger of the two rows' spreads, the range of their round medians); the "
           "paired test, which sees smaller differences, is shown beside it. The fp16 ONNX file is "
           "made for GPUs: on a CPU, ONNX Runtime computes most of it in fp32 between Casts. Random weights, "
           "BatchNorm statistics from photographs; fp16's check (max abs <= 5e-2 x max |output|, cosine >= 0.9999 "
           "and top-1 100% on the photographs, ties within 1e-3 of the scale counted) is recorded here, not "
           "enforced: a random network's logits lie close together, so fp16 may change a photograph's top class "
           "where a trained network's margin is far wider.", ""]
    by = {(c["model"], c["runtime"]): c for c in e["comparisons"]}
    body = []
    for model, per_runtime in e["models"].items():
        for runtime, f in per_runtime.items():
            c = by.get((model, runtime))
            p = c["paired"] if c else None
            check = f["check"]["fp16_check"]
            size_ok = f["ratio"] <= target if runtime in ("openvino", "tflite") else None
            body.append([model, runtime, fmt(f["ratio"], "{:.1%}") + ("" if size_ok is None else
                                                                      " (met)" if size_ok else " (missed)"),
                         fmt(f["weights_ratio"], "{:.1%}"),
                         fmt(c["fp32_ms"] if c else None, "{:.2f}"), fmt(c["fp16_ms"] if c else None, "{:.2f}"),
                         fmt(p["median_ratio"] if p else None, "{:.3f}") + (
                             f" [{p['min_ratio']:.3f}-{p['max_ratio']:.3f}]" if p else ""),
                         (p["call"] or "tie") if p else "-", beyond_spread(c, e["rows"]) if c else "-",
                         f"{f['check']['max_rel']:.1e}, {check['cosine']:.6f}, {check['top1_agreement']:.0%}"
                         + (f" ({check['tie_flips']} tie)" if check.get("tie_flips") else "")])
    out += table(["model", "runtime", "fp16 size / fp32", "weights file / fp32", "fp32 ms", "fp16 ms",
                  "fp16 / fp32 per round (median [range])", "paired call", "slower beyond the spread",
                  "check: max rel, cosine, top-1"], body)
    if e.get("failures"):
        out += ["", "Not measured: " + "; ".join(e["failures"])]
    out.append("")
    return out


def beyond_spread(c: dict, rows: list[dict]) -> str:
    """'yes' when the fp16 row's median exceeds the fp32 one's by more than the larger of their spreads."""
    spreads = [r["spread"] for r in rows if r["model"] == c["model"] and r["runtime"] == c["runtime"]]
    return "yes" if c["fp16_ms"] / c["fp32_ms"] - 1 > max(spreads) else "no"


def eval_section(e: dict | None) -> list[str]:
    """`cnnexport eval` on the digits PNG folder, and its throughput against `cnnexport bench`
    (`benchmarks/eval_bench.py`)."""
    if not e:
        return []
    m = e["machine"]
    out = ["## Accuracy through `cnnexport eval`", "",
           f"`python benchmarks/eval_bench.py`, measured on {m['cpu']} ({isa_text(m)}). Versions: "
           + ", ".join(f"{k} {v}" for k, v in e["versions"].items() if v) + ".", "",
           "The 450 test digits written as a PNG image folder (class subfolders), every file of the digits-trained "
           "networks evaluated by `cnnexport eval ... --model NAME --weights digits` beside PyTorch. The last column "
           "checks each file's correct count against the digits benchmark's own path (`load_digits` arrays straight "
           "into the runtime).", ""]
    body = []
    for model, t in e["digits"].items():
        for r in t["rows"]:
            body.append([model, r["name"], r["runtime"], r["precision"], fmt(100 * r["top1"], "{:.2f}%"),
                         fmt(100 * r["top5"], "{:.2f}%"), fmt(r.get("drop_points"), "{:+.2f}"),
                         fmt(None if r.get("agreement") is None else 100 * r["agreement"], "{:.2f}%"),
                         "" if r["name"] == "pytorch" else ("equal" if r.get("equal") else "DIFFERS")])
    out += table(["model", "file", "runtime", "precision", "top-1", "top-5", "drop (points)", "agrees with PyTorch",
                  "digits path"], body)
    t = e["throughput"]
    out += ["", f"Throughput, ONNX Runtime fp32, batch {e['batch']}, {e['images']} images of a JPEG class folder "
            f"(500x375), {e['rounds']} rounds paired: `bench`, then `eval` on preprocessed arrays, on the JPEG folder, "
            "and on the folder's crops cached by an earlier `eval --cache`. Ratios are medians of the per-round "
            f"ratios. Decoding and preprocessing one image takes {t['decode_ms_per_image']:.2f} ms of one core "
            f"(a cached crop {t['cached_ms_per_image']:.2f} ms). With every core running the network, decoding "
            "shares them: `bound` is the folder's best possible rate, bench's core time plus the decoding's. "
            "A 50,000-image run is extrapolated from the folder's rate.", ""]
    body = []
    for r in t["rows"]:
        body.append([r["model"], f"{r['threads']} of {r['cores']}", str(r["workers"]),
                     fmt(sorted(r["bench_images_per_s"])[len(r["bench_images_per_s"]) // 2], "{:.1f}"),
                     fmt(r["eval_arrays_over_bench_median"], "{:.2f}x"),
                     fmt(r["eval_folder_over_bench_median"], "{:.2f}x"), fmt(r["folder_bound_over_bench"], "{:.2f}x"),
                     fmt(r["eval_cached_over_bench_median"], "{:.2f}x"),
                     fmt(r["imagenet_50k_minutes_folder"], "{:.0f} min"),
                     fmt(r["imagenet_50k_minutes_cached"], "{:.0f} min")])
    out += table(["model", "runtime threads", "decoding workers", "bench images/s", "eval on arrays / bench",
                  "eval on JPEG folder / bench", "bound", "eval on cached crops / bench", "50,000 images (folder)",
                  "(cached)"], body)
    out.append("")
    return out


def main() -> None:
    names = ("zoo", "guidelines", "guidelines_cuda", "zoo_cuda", "int8_speed", "int8_accuracy", "graph_changes",
             "headline_export", "coverage", "executorch", "mnn", "eval", "roofline_layers", "fp16_cpu")
    data = {n: load(n) for n in names}
    lines = ["# Benchmark report", "",
             "Generated by `python benchmarks/run_all.py` (all steps) or `python benchmarks/report.py` (this page "
             "only) from `benchmarks/results/*.json`. Figures are this machine's; ratios travel better than "
             "milliseconds.", ""]
    lines += machine_section(list(data.values()))
    lines += protocol_section([*data.values(), *(load(f"targets_{m}") for m in TARGET_MODELS)])
    lines += targets_section(data["zoo"])
    lines += targets_bench_section({m: load(f"targets_{m}") for m in TARGET_MODELS})
    lines += guidelines_section(data["guidelines"])
    lines += zoo_section(data["zoo"])
    lines += roofline_section(data["roofline_layers"], data["zoo"], {m: load(f"targets_{m}") for m in TARGET_MODELS})
    lines += gpu_section(data["guidelines_cuda"], data["zoo_cuda"])
    lines += graph_changes_section(data["graph_changes"])
    lines += int8_section(data["int8_speed"], data["int8_accuracy"])
    lines += executorch_section(data["executorch"])
    lines += mnn_section(data["mnn"])
    lines += fp16_section(data["fp16_cpu"])
    lines += eval_section(data["eval"])
    lines += headline_section(data["headline_export"], data["coverage"])
    (HERE / "REPORT.md").write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {HERE / 'REPORT.md'}")


if __name__ == "__main__":
    main()

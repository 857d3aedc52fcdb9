"""REPORT.md: ShuffleNetV2's guidelines G1-G4 and the alignment factor (`cnnexport study guidelines`)."""

from __future__ import annotations


from cnnexport.bench.rows import CALL_RULE

from .common import RUNTIME_ORDER, fmt, table, _gpu, measured_on, recalled


def guidelines_section(g: dict | None) -> list[str]:
    if not g:
        return []
    where = f"on {_gpu(g)} (`--device cuda`)" if g["device"] == "cuda" else "on this machine's CPU"
    out = [f"## ShuffleNetV2's guidelines {where}", "",
           f"`cnnexport study guidelines` ({g['threads']} threads, batch {g.get('batch', 1)}, {g['rounds']} rounds, widths "
           f"{', '.join('x' + str(w) for w in g['widths'])}{measured_on(g)}). "
           "Ratios are speed relative to each table's first row "
           "(higher is faster), ours beside the paper's (x1 width: GPU = GTX 1080Ti, ARM = Snapdragon 810). "
           "A verdict compares the paper's expected-fastest configuration with its expected-slowest round by round, "
           "by the paired test every comparison here uses (a call needs " + CALL_RULE + "); \"holds\" also needs "
           "the expected-fastest to be the fastest measured." + recalled(g), ""]
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

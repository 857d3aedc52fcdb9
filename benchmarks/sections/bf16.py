"""REPORT.md: OpenVINO's bf16 default on a bf16 CPU, the verified fp32 setting, and bf16 files on purpose
(`openvino_bf16.py`)."""

from __future__ import annotations

from .common import fmt, isa_text, table


def bf16_section(e: dict | None) -> list[str]:
    if not e:
        return []
    out = ["## OpenVINO on a bf16 CPU: the default, the verified setting, and bf16 files", "",
           f"`python benchmarks/openvino_bf16.py` ({e['threads']} threads, {e['rounds']} paired rounds, "
           f"{e['machine']['cpu']}, {isa_text(e['machine'])}; OpenVINO {e['versions'].get('openvino')}, whose CPU "
           f"default here is {e['openvino_cpu_default']}). Each IR is compiled three ways: with OpenVINO's defaults "
           "(`core.compile_model(path, \"CPU\")`), with the `<model>.config.json` written beside it (the precision "
           "the export verified), and checked by the file's own rule. Errors are against PyTorch on the export's "
           "inputs.", ""]
    body = []
    for model, files in e["models"].items():
        for name, f in files.items():
            d, c = f["errors"]["defaults"], f["errors"]["config"]
            body.append([name, {True: "yes", False: "no"}.get(f["check"]["passed"], "-"),
                         f"{d['precision']}: {fmt(d['max_rel'], '{:.1e}')}, cos {fmt(d['min_cosine'], '{:.4f}')}, "
                         f"top-1 {fmt(d['top1_agreement'], '{:.0%}')}",
                         f"{c['precision']}: {fmt(c['max_rel'], '{:.1e}')}, cos {fmt(c['min_cosine'], '{:.4f}')}, "
                         f"top-1 {fmt(c['top1_agreement'], '{:.0%}')}"])
    out += table(["file", "passes its rule", "OpenVINO defaults: max rel, min cosine, top-1",
                  "with its config.json"], body)
    if e.get("comparisons"):
        out += ["", "Latency against the fp32 IR at batch 1 (median per-round ratio; the paired call over the "
                "rounds):", ""]
        out += table(["model", "precision", "fp32 ms", "ms", "speed-up", "per-round ratio (range)", "call"],
                     [[c["model"], c["precision"], fmt(c["fp32_ms"]), fmt(c["ms"]), fmt(c["speedup"], "{:.2f}x"),
                       f"{c['paired']['median_ratio']:.3f} ({c['paired']['min_ratio']:.3f}-{c['paired']['max_ratio']:.3f})",
                       c["paired"]["call"] or "tie"] for c in e["comparisons"]])
    failed = [name for files in e["models"].values() for name, f in files.items() if f["check"]["passed"] is False]
    out += ["", "The models have random weights (no ImageNet weights can be downloaded here), so their logits are "
            "close together. A bf16 file is checked by bf16's rule (rtol 1e-1, cosine >= 0.99, top-1 agreement "
            "allowing near-ties), recorded here rather than enforced"
            + (f": {', '.join(failed)} miss it, and `export --bf16` refuses such a file" if failed else "") + ".", ""]
    if e.get("failures"):
        out += ["Not measured: " + "; ".join(e["failures"]) + ".", ""]
    return out

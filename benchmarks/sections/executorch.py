"""REPORT.md: ExecuTorch beside the other runtimes (`executorch_bench.py`)."""

from __future__ import annotations


from .common import RUNTIME_ORDER, fmt, table, isa_text


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

"""REPORT.md: MNN beside the other CPU runtimes (`mnn_bench.py`)."""

from __future__ import annotations


from .common import RUNTIME_ORDER, fmt, table, isa_text


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

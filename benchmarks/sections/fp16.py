"""REPORT.md: fp16 files on the CPU (`fp16_cpu.py`)."""

from __future__ import annotations


from cnnexport.bench.rows import CALL_RULE

from .common import fmt, table, isa_text, beyond_spread, recalled


def fp16_section(e: dict | None) -> list[str]:
    """fp16 files on the CPU: size and latency against fp32 (`benchmarks/fp16_cpu.py`)."""
    if not e:
        return []
    m = e["machine"]
    target = e["size_target"]
    out = ["## fp16 files on the CPU", "",
           f"`python benchmarks/fp16_cpu.py`, measured on {m['cpu']} ({isa_text(m)}), {m['logical_cores']} logical "
           f"cores. Batch 1, {e['threads']} threads, {e['rounds']} rounds interleaved, one process per configuration "
           "and round; fp16 against fp32 of the same runtime by the paired test (per-round ratio; a call needs "
           + CALL_RULE + "). Versions: "
           + ", ".join(f"{k} {v}" for k, v in e["versions"].items() if v) + "." + recalled(e), "",
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

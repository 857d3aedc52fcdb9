"""REPORT.md: int8 against fp32, speed and accuracy (`int8_speed.py`, `int8_accuracy.py`)."""

from __future__ import annotations


from .common import table, measured_on


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


def keep_float_section(kf: dict | None) -> list[str]:
    """Per-layer keep-float where int8 loses: the depthwise convolutions left in float (`keep_float_speed.py`)."""
    if not kf:
        return []
    out = ["### Keeping the depthwise convolutions in float", "",
           f"`benchmarks/keep_float_speed.py` ({kf['runtime']}, batch 1, {kf['threads']} threads, {kf['rounds']} "
           f"interleaved rounds{measured_on(kf)}): the int8 picks of the depthwise targets sit furthest from their "
           "bound in their depthwise layers, so the same calibration was quantized with `--keep-float depthwise` "
           "(those layers in float) and without. A change is kept only when the paired rounds call it faster.", ""]
    body = []
    for model, m in kf["models"].items():
        files, paired = m["files"], m["paired"]
        kept = files["int8, depthwise in float"]
        body.append([model, f"{files['fp32']['median_ms']:.2f}", f"{files['int8']['median_ms']:.2f}",
                     f"{kept['median_ms']:.2f} ({kept['float_compute_nodes']} of {kept['compute_nodes']} in float)",
                     f"{m['speedup']:.2f}x, {paired['call'] or 'a tie'} ({paired['faster_rounds']} of "
                     f"{paired['rounds']} rounds faster)",
                     f"{files['int8']['cosine_mean']:.4f} -> {kept['cosine_mean']:.4f}",
                     "kept" if m["kept"] else "not kept"])
    out += table(["model", "fp32 ms", "int8 ms", "depthwise in float ms", "against all-int8", "cosine with fp32",
                  "verdict"], body)
    return out + [""]

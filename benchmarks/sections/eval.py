"""REPORT.md: accuracy through `cnnexport eval` (`eval_bench.py`)."""

from __future__ import annotations


from .common import fmt, table, isa_text


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

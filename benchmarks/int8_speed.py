"""fp32 vs int8 latency per runtime, batch 1, measured in one run with interleaved rounds.

    python benchmarks/int8_speed.py [--models resnet50,mobilenet_v2,shufflenet_v2_x1_0] [--rounds 3]

Exports each model to ONNX, OpenVINO IR and TFLite (fp32) plus their int8 versions (calibrated on
the bundled photographs, checked on held-out crops), then times every artifact with the latency
protocol of `cnnexport bench`: each runtime in a fresh process per round, rounds interleaved and
rotated. Writes benchmarks/results/int8_speed.json.

Beside the fully int8 files, each model gets an accuracy-controlled ONNX Runtime int8 file
(``<model>.int8-auto.onnx``: ``--keep-float auto`` with a 0.99 cosine target, searched on the
calibration samples) with its cosine on the held-out crops, so that the speed a 0.99 cosine costs
is measured in the same rounds.

No trained ImageNet weights can be downloaded here, and a randomly initialised network with
default BatchNorm statistics gives vanishing logits (mobilenet_v2's are ~1e-8) that no int8 scale
can represent. So the BatchNorm statistics are first re-estimated on the photographs (forward
passes in train mode, no gradient), which gives activations of realistic magnitude.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

import cnnexport
from cnnexport.bench.jobs import artifact_job
from cnnexport.bench.schedule import raise_if_all_failed, run_jobs
from cnnexport.machine import cpu_facts
from cnnexport.calib import Preprocess, load_samples, sample_photos, split
from cnnexport.exporter.formats.onnx.quantize_ort import quantize_onnx
from cnnexport.exporter.verify import int8_figures
from cnnexport.exporter.report_fields import versions
from cnnexport.models import create_model
from cnnexport.runtimes import load, run_nchw

from _common import reestimate_bn

RESULTS = Path(__file__).parent / "results" / "int8_speed.json"
TARGET_COSINE = 0.99


def accuracy_controlled(model, folder: Path, name: str) -> tuple[str, dict, dict]:
    """``<name>.int8-auto.onnx`` from the exported fp32 ONNX, calibrated on the samples the export used,
    and its figures against PyTorch on the held-out samples the export checked."""
    calibration, evaluation = split(load_samples("samples", Preprocess(), 200))  # as cnnexport.export splits
    artifact = f"{name}.int8-auto.onnx"
    info = quantize_onnx(folder / f"{name}.onnx", folder / artifact, calibration, keep_float=("auto",),
                         min_cosine=TARGET_COSINE)
    with torch.no_grad():
        reference = model(torch.from_numpy(evaluation)).numpy()
    return artifact, info, int8_figures(reference, run_nchw(load(folder / artifact), evaluation))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="resnet50,mobilenet_v2,shufflenet_v2_x1_0")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    out = {"benchmark": "int8_speed", "machine": cpu_facts(), "threads": args.threads, "rounds": args.rounds,
           "versions": versions("openvino", "nncf", "ai-edge-litert", "ai-edge-quantizer", "litert-torch"),
           "models": {}}
    for name in args.models.split(","):
        model = create_model(name)
        reestimate_bn(model, sample_photos(Preprocess(), 64, seed=1))
        with tempfile.TemporaryDirectory() as tmp:
            report = cnnexport.export(model, (1, 3, 224, 224), tmp, name=name,
                                      formats=("onnx", "openvino", "tflite"), int8=True, calib="samples",
                                      calib_count=200, int8_min_cosine=0.0)  # measured and reported, not gated
            eq = {e["artifact"]: e for e in report["equivalence"]}
            arts = [(Path(a["path"]).name, a["runtime"], a["precision"]) for a in report["artifacts"]]
            auto_file, auto_info, auto_fig = accuracy_controlled(model, Path(tmp), name)
            eq[auto_file] = {k: auto_fig[k] for k in ("cosine_mean", "top1_agreement", "sqnr_db")}
            arts.append((auto_file, "onnxruntime", "int8"))
            # One fresh process per runtime and round, rounds interleaved (the latency protocol of `cnnexport bench`).
            jobs = [artifact_job(Path(tmp) / f, rt, 1, args.threads, model=name) for f, rt, _ in arts]
            run_jobs(jobs, rounds=args.rounds, timing={"warmup": 10, "min_runs": 50, "min_time_s": 2.0})
            raise_if_all_failed(jobs)
            medians = {Path(j.worker_job["path"]).name: j.medians for j in jobs}
            rows = []
            for f, rt, precision in arts:
                if not medians[f]:
                    continue
                rows.append({"artifact": f, "runtime": rt, "precision": precision,
                             "median_ms": statistics.median(medians[f]), "round_medians_ms": medians[f],
                             # int8 checks report a mean cosine, fp32 checks the minimum
                             "cosine_vs_pytorch": eq[f]["cosine_mean"] if "cosine_mean" in eq[f] else eq[f]["cosine"],
                             "top1_agreement": eq[f]["top1_agreement"], "sqnr_db": eq[f].get("sqnr_db")})
            by = {(r["runtime"], r["precision"]): r["median_ms"] for r in rows if r["artifact"] != auto_file}
            speedups = {rt: by[(rt, "fp32")] / by[(rt, "int8")] for rt in ("onnxruntime", "openvino", "tflite")
                        if (rt, "int8") in by}
            best_fp32 = min(r["median_ms"] for r in rows if r["precision"] == "fp32")
            best_int8 = min(r["median_ms"] for r in rows if r["precision"] == "int8")
            meeting = [r for r in rows if r["precision"] == "int8" and r["cosine_vs_pytorch"] >= TARGET_COSINE]
            best_meeting = min(meeting, key=lambda r: r["median_ms"]) if meeting else None
            out["models"][name] = {
                "rows": rows, "int8_speedup_per_runtime": speedups, "best_int8_vs_best_fp32": best_fp32 / best_int8,
                "quantization": report["quantization"] + [auto_info],
                f"best_int8_with_cosine_{TARGET_COSINE}": best_meeting and {
                    "artifact": best_meeting["artifact"], "median_ms": best_meeting["median_ms"],
                    "cosine_vs_pytorch": best_meeting["cosine_vs_pytorch"],
                    "speedup_vs_best_fp32": best_fp32 / best_meeting["median_ms"]}}
            print(name, {k: round(v, 2) for k, v in speedups.items()}, "best", round(best_fp32 / best_int8, 2),
                  "auto", auto_info["keep_float_search"]["groups"], round(auto_fig["cosine_mean"], 4),
                  "best>=0.99", best_meeting and (best_meeting["artifact"],
                                                  round(best_fp32 / best_meeting["median_ms"], 2)), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

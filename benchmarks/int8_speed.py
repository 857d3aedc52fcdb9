"""fp32 vs int8 latency per runtime, batch 1, measured in one run with interleaved rounds.

    python benchmarks/int8_speed.py [--models resnet50,mobilenet_v2,shufflenet_v2_x1_0] [--rounds 3]

Exports each model to ONNX, OpenVINO IR and TFLite (fp32) plus their int8 versions (calibrated on
the bundled photographs, checked on held-out crops), then times every artifact with the latency
protocol, rounds interleaved across artifacts. Writes benchmarks/results/int8_speed.json.

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

import numpy as np

import cnnexport
from cnnexport.bench.latency import measure
from cnnexport.bench.machine import cpu_facts
from cnnexport.calib import Preprocess, sample_photos
from cnnexport.exporter.report import versions
from cnnexport.models import create_model
from cnnexport.runtimes import load, run_nchw

from _common import reestimate_bn

RESULTS = Path(__file__).parent / "results" / "int8_speed.json"


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
            models = {f: load(Path(tmp) / f, rt, threads=args.threads) for f, rt, _ in arts}
            x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
            medians: dict[str, list[float]] = {f: [] for f, _, _ in arts}
            for _ in range(args.rounds):
                for f in medians:
                    medians[f].append(measure(lambda m=models[f]: run_nchw(m, x), warmup=10, min_runs=50,
                                              min_time_s=2.0).median_ms)
            rows = []
            for f, rt, precision in arts:
                rows.append({"artifact": f, "runtime": rt, "precision": precision,
                             "median_ms": statistics.median(medians[f]), "round_medians_ms": medians[f],
                             "cosine_vs_pytorch": eq[f].get("cosine_mean", eq[f]["cosine"]),
                             "top1_agreement": eq[f]["top1_agreement"], "sqnr_db": eq[f].get("sqnr_db")})
            by = {(r["runtime"], r["precision"]): r["median_ms"] for r in rows}
            speedups = {rt: by[(rt, "fp32")] / by[(rt, "int8")] for rt in ("onnxruntime", "openvino", "tflite")
                        if (rt, "int8") in by}
            best_fp32 = min(r["median_ms"] for r in rows if r["precision"] == "fp32")
            best_int8 = min(r["median_ms"] for r in rows if r["precision"] == "int8")
            out["models"][name] = {"rows": rows, "int8_speedup_per_runtime": speedups,
                                   "best_int8_vs_best_fp32": best_fp32 / best_int8,
                                   "quantization": report["quantization"]}
            print(name, {k: round(v, 2) for k, v in speedups.items()}, "best", round(best_fp32 / best_int8, 2),
                  flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

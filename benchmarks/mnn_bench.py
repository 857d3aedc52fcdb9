"""MNN beside the other CPU runtimes: int8 accuracy and latency.

    python benchmarks/mnn_bench.py [--threads 2] [--rounds 3] [--models resnet50,mobilenet_v2,...]

1. The digits-trained networks (LeNet-5, shufflenet_v2_x0_5) exported to ONNX, OpenVINO, TFLite and MNN
   with --int8 calibrated on 300 digits training images: test accuracy of each fp32 and int8 file on
   the 450 test images calibration never saw; LeNet-5's files are also timed (the small-model
   overhead of each adapter).
2. The three target models (random weights, BatchNorm statistics re-estimated on the bundled
   photographs): the same export, int8 calibrated on half of 200 photograph crops and checked on the
   other half (held-out cosine with PyTorch), and MNN's fp16-weight file.
3. Latency of every file and of PyTorch eager, batch 1, ``--threads`` threads, each configuration in its
   own process per round, rounds interleaved (the `cnnexport bench` protocol).

Writes benchmarks/results/mnn.json (REPORT.md's MNN section is made from it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from cnnexport.bench.jobs import artifact_job, torch_jobs
from cnnexport.bench.schedule import measure
from cnnexport.exporter.profile_torch import profile_module
from cnnexport.exporter.report_fields import versions
from cnnexport.models import create_model

import executorch_bench
from executorch_bench import TARGET_MODELS, digits_model

RESULTS = Path(__file__).parent / "results" / "mnn.json"
FORMATS = ("onnx", "openvino", "tflite", "mnn")


def target_model(name: str, folder: Path) -> tuple[dict, dict]:
    """The ExecuTorch benchmark's target export with MNN in place of ExecuTorch, plus MNN's fp16 file."""
    figures, report = executorch_bench.target_model(name, folder, FORMATS, fp16=True)
    fp16 = next(e for e in report["equivalence"] if e.get("precision") == "fp16")
    return {"int8": figures["int8"], "fp16": {k: fp16[k] for k in ("max_rel", "cosine", "top1_agreement")},
            "sizes_bytes": {Path(a["path"]).name: a["size_bytes"] for a in report["artifacts"]
                            if a["runtime"] == "mnn"}}, report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default=",".join(TARGET_MODELS))
    args = parser.parse_args()
    out = {"benchmark": "mnn", "threads": args.threads, "rounds": args.rounds,
           "versions": versions("openvino", "nncf", "ai-edge-litert", "ai-edge-quantizer", "litert-torch", "mnn"),
           "digits": {}, "targets": {}}
    jobs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("lenet5", "shufflenet_v2_x0_5"):
            folder = Path(tmp) / name
            out["digits"][name] = digits_model(name, folder, FORMATS)
            out["digits"][name].pop("delegation")
            print(name, {rt: (round(f["accuracy_fp32"], 4), round(f["accuracy_int8"], 4))
                         for rt, f in out["digits"][name]["int8"].items()}, flush=True)
            if name == "lenet5":  # the adapters' own overhead shows on a network this small
                report = json.loads((folder / "report.json").read_text())
                macs = profile_module(create_model(name), tuple(report["input_shape"])).macs
                jobs += [artifact_job(folder / Path(a["path"]).name, a["runtime"], 1, args.threads, model=name,
                                      macs=macs) for a in report["artifacts"]]
        for name in args.models.split(","):
            folder = Path(tmp) / name
            out["targets"][name], report = target_model(name, folder)
            print(name, {rt: round(f["cosine_mean"], 4) for rt, f in out["targets"][name]["int8"].items()},
                  flush=True)
            shape = tuple(report["input_shape"])
            macs = profile_module(create_model(name), shape).macs
            jobs += [artifact_job(folder / Path(a["path"]).name, a["runtime"], 1, args.threads, model=name, macs=macs)
                     for a in report["artifacts"]]
            jobs += torch_jobs(name, shape, [1], [args.threads], macs=macs)
        timing = {"warmup": 10, "min_runs": 50, "min_time_s": 1.0, "max_time_s": 8.0}
        measured = measure(jobs, rounds=args.rounds, timing=timing, threads=[args.threads], device="cpu",
                           baseline="torch")
    out.update(rows=measured["rows"], ceilings_gflops=measured["ceilings_gflops"], machine=measured["machine"],
               failures=measured["failures"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1, default=float) + "\n")
    for r in measured["rows"]:
        print(r["model"], r["runtime"], r["precision"], round(r["median_ms"], 3), flush=True)


if __name__ == "__main__":
    main()

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

import json
import tempfile
from pathlib import Path

from cnnexport.exporter.report_fields import versions

import executorch_bench
from executorch_bench import digits_model, file_jobs, measure_and_save, parse_args

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
    args = parse_args()
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
                jobs += file_jobs(name, folder, json.loads((folder / "report.json").read_text()), args.threads,
                                  torch=False)
        for name in args.models.split(","):
            folder = Path(tmp) / name
            out["targets"][name], report = target_model(name, folder)
            print(name, {rt: round(f["cosine_mean"], 4) for rt, f in out["targets"][name]["int8"].items()},
                  flush=True)
            jobs += file_jobs(name, folder, report, args.threads)
        measure_and_save(out, jobs, args.rounds, args.threads, RESULTS)


if __name__ == "__main__":
    main()

"""ExecuTorch beside the other runtimes: int8 accuracy, delegation and latency.

    python benchmarks/executorch_bench.py [--threads 2] [--rounds 3] [--models resnet50,mobilenet_v2,...]

1. The digits-trained networks shipped with cnnexport (LeNet-5, shufflenet_v2_x0_5): exported to
   ONNX, OpenVINO, TFLite and ExecuTorch with --int8 calibrated on 300 digits training images; test
   accuracy of each fp32 and int8 file on the 450 test images calibration never saw.
2. The three target models (random weights, BatchNorm statistics re-estimated on the bundled
   photographs, as in int8_speed.py): the same export, int8 calibrated on half of 200 photograph
   crops and checked on the other half: each int8 file's held-out cosine with PyTorch, and the
   ExecuTorch programs' delegation (operators inside XNNPACK, graph breaks).
3. Latency of every file of (2) and of PyTorch eager, batch 1, ``--threads`` threads, each
   configuration in its own process per round, rounds interleaved (the `cnnexport bench` protocol).

Writes benchmarks/results/executorch.json (REPORT.md's ExecuTorch section is made from it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cnnexport
from cnnexport.bench.jobs import artifact_job, torch_jobs
from cnnexport.bench.schedule import measure
from cnnexport.calib import Preprocess, sample_photos
from cnnexport.profile.torch_profile import profile_module
from cnnexport.exporter.report_fields import versions
from cnnexport.models import BUNDLED_WEIGHTS, create_model, model_info

from _common import reestimate_bn

RESULTS = Path(__file__).parent / "results" / "executorch.json"
FORMATS = ("onnx", "openvino", "tflite", "executorch")
TARGET_MODELS = ("resnet50", "mobilenet_v2", "shufflenet_v2_x1_0")


def _int8_figures(report: dict) -> dict:
    """Per runtime, the int8 file's held-out figures from the export's own check."""
    out = {}
    for e in report["equivalence"]:
        if e.get("precision") == "int8":
            art = next(a for a in report["artifacts"] if Path(a["path"]).name == e["artifact"])
            out[art["runtime"]] = {k: e[k] for k in ("cosine_mean", "cosine_min", "sqnr_db", "top1_agreement",
                                                     "accuracy_fp32", "accuracy_int8", "accuracy_drop_points")
                                   if k in e}
    return out


def _delegation(report: dict) -> dict:
    return {a["precision"]: a["delegation"] for a in report["artifacts"] if "delegation" in a}


def digits_model(name: str, tmp: Path, formats: tuple[str, ...] = FORMATS) -> dict:
    entry = BUNDLED_WEIGHTS[(name, "digits")]
    shape = (1, *entry.input_size)
    report = cnnexport.export(create_model(name, weights="digits"), shape, tmp, name=name, formats=formats,
                              int8=True, calib="digits", calib_count=300, int8_min_cosine=0.0)
    return {"input": list(shape), "int8": _int8_figures(report), "delegation": _delegation(report)}


def target_model(name: str, folder: Path, formats: tuple[str, ...] = FORMATS, **export) -> tuple[dict, dict]:
    """Random weights, BatchNorm statistics from photographs; every format of ``formats`` fp32 and int8
    (``export``: more of the export's options)."""
    model = create_model(name)
    pre = Preprocess()
    reestimate_bn(model, sample_photos(pre, 64, seed=1))
    shape = (1, *model_info(name).input_size)
    report = cnnexport.export(model, shape, folder, name=name, formats=formats, int8=True,
                              calib=sample_photos(pre, 200), int8_min_cosine=0.0, photos=True, **export)
    return ({"int8": _int8_figures(report), "delegation": _delegation(report),
             "graph_changes": {Path(a["path"]).name: a["graph_changes"] for a in report["artifacts"]
                               if a["graph_changes"]}},
            report)


def parse_args() -> argparse.Namespace:
    """--threads, --rounds, --models: the options of the runtime-beside-runtime benchmarks."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default=",".join(TARGET_MODELS))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    out = {"benchmark": "executorch", "threads": args.threads, "rounds": args.rounds,
           "versions": versions("openvino", "nncf", "ai-edge-litert", "ai-edge-quantizer", "litert-torch",
                                 "executorch", "torchao"),
           "digits": {}, "targets": {}}
    for name in ("lenet5", "shufflenet_v2_x0_5"):
        with tempfile.TemporaryDirectory() as tmp:
            out["digits"][name] = digits_model(name, Path(tmp))
        print(name, {rt: (round(f["accuracy_fp32"], 4), round(f["accuracy_int8"], 4))
                     for rt, f in out["digits"][name]["int8"].items()}, flush=True)
    jobs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            folder = Path(tmp) / name
            out["targets"][name], report = target_model(name, folder)
            print(name, {rt: round(f["cosine_mean"], 4) for rt, f in out["targets"][name]["int8"].items()},
                  out["targets"][name]["delegation"], flush=True)
            jobs += file_jobs(name, folder, report, args.threads)
        measure_and_save(out, jobs, args.rounds, args.threads, RESULTS)


def file_jobs(name: str, folder: Path, report: dict, threads: int, torch: bool = True) -> list:
    """Batch-1 jobs for every file of an export's report (and PyTorch eager)."""
    shape = tuple(report["input_shape"])
    macs = profile_module(create_model(name), shape).macs
    jobs = [artifact_job(folder / Path(a["path"]).name, a["runtime"], 1, threads, model=name, macs=macs)
            for a in report["artifacts"]]
    return jobs + (torch_jobs(name, shape, [1], [threads], macs=macs) if torch else [])


def measure_and_save(out: dict, jobs: list, rounds: int, threads: int, path: Path) -> None:
    """The `cnnexport bench` protocol over ``jobs``; the rows join ``out``, written to ``path``."""
    timing = {"warmup": 10, "min_runs": 50, "min_time_s": 1.0, "max_time_s": 8.0}
    measured = measure(jobs, rounds=rounds, timing=timing, threads=[threads], device="cpu", baseline="torch")
    out.update(rows=measured["rows"], ceilings_gflops=measured["ceilings_gflops"], machine=measured["machine"],
               failures=measured["failures"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=float) + "\n")
    for r in measured["rows"]:
        print(r["model"], r["runtime"], r["precision"], round(r["median_ms"], 3), flush=True)


if __name__ == "__main__":
    main()

"""fp16 files on the CPU: size and latency against the fp32 file of the same runtime.

    python benchmarks/fp16_cpu.py [--threads 2] [--rounds 5] [--models resnet50,mobilenet_v2,...]

The three target models (random weights, BatchNorm statistics re-estimated on the bundled photographs)
exported to ONNX, OpenVINO and TFLite, and each file's fp16 twin (what --fp16 writes): its check against
PyTorch by fp16's rule (recorded, see ``export_model``), its size over the fp32 file's, and its latency
over the fp32 file's, paired round by round (batch 1, ``--threads`` threads, the `cnnexport bench` protocol). The
target: OpenVINO and TFLite fp16 files at most 52% of the fp32 size and not slower by the paired test.
ONNX Runtime's fp16 file is measured too, for what a CPU user would see: it is made for GPUs (few CPU
kernels take fp16; ONNX Runtime computes the rest in fp32 between Casts).

Writes benchmarks/results/fp16_cpu.json (REPORT.md's fp16 section is made from it).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import cnnexport
from cnnexport.bench.jobs import artifact_job
from cnnexport.bench.rows import paired
from cnnexport.bench.schedule import measure
from cnnexport.calib import Preprocess, sample_photos
from cnnexport.exporter.formats import FORMATS as FORMATS_TABLE, Artifact, ConvertSource
from cnnexport.exporter.pipeline import Reference, convert_and_verify
from cnnexport.exporter.prepare import prepare
from cnnexport.profile.torch_profile import profile_module
from cnnexport.exporter.verify import load_reference
from cnnexport.exporter.report_fields import versions
from cnnexport.models import create_model, model_info

from _common import reestimate_bn
from executorch_bench import parse_args

RESULTS = Path(__file__).parent / "results" / "fp16_cpu.json"
FORMATS = ("onnx", "openvino", "tflite")
SIZE_TARGET = 0.52


def size(art: Artifact) -> int:
    return sum(f.stat().st_size for f in art.files)


def export_model(name: str, folder: Path) -> tuple[dict, list[tuple[Path, str]]]:
    """The fp32 export (checked as usual), then each format's fp16 file made and checked by fp16's rule
    with the same functions the export uses, recorded rather than enforced: with random weights the
    logits of different classes lie close together and fp16 may change the top class of a photograph
    (a trained network's margins are far larger). Returns the figures and the (file, runtime) pairs."""
    model = create_model(name)
    reestimate_bn(model, sample_photos(Preprocess(), 64, seed=1))
    shape = (1, *model_info(name).input_size)
    report = cnnexport.export(model, shape, folder, name=name, formats=FORMATS, photos=True)
    source = ConvertSource(prepare(model), folder / FORMATS_TABLE["onnx"].file_name(name), shape)
    inputs, refs, _ = load_reference(folder / "reference.npz")
    files, figures = [], {}
    made = {c.fp32.format: c for c in convert_and_verify(source, Reference(inputs, refs), folder, name,
                                                         [a["format"] for a in report["artifacts"]], precision="fp16")}
    for a in report["artifacts"]:
        fp32, half, check = made[a["format"]].fp32, made[a["format"]].artifact, made[a["format"]].entry
        figures[a["runtime"]] = {
            "fp32_bytes": size(fp32), "fp16_bytes": size(half), "ratio": size(half) / size(fp32),
            "weights_ratio": half.files[-1].stat().st_size / fp32.files[-1].stat().st_size,  # an IR's .bin
            "check": {k: check[k] for k in ("passed", "max_rel", "fp16_check")}}
        files += [(fp32.files[0], a["runtime"]), (half.files[0], a["runtime"])]
    return figures, files


def comparisons(rows: list[dict]) -> list[dict]:
    """fp16 against fp32 per model and runtime, round by round."""
    out = []
    for r in rows:
        if r["precision"] != "fp16":
            continue
        base = next(b for b in rows if b["precision"] == "fp32" and b["model"] == r["model"]
                    and b["runtime"] == r["runtime"])
        test = paired(r["round_medians_ms"], base["round_medians_ms"])
        out.append({"model": r["model"], "runtime": r["runtime"], "fp32_ms": base["median_ms"],
                    "fp16_ms": r["median_ms"], "paired": test, "slower": test["call"] == "slower"})
    return out


def main() -> None:
    args = parse_args()
    out = {"benchmark": "fp16_cpu", "threads": args.threads, "rounds": args.rounds, "size_target": SIZE_TARGET,
           "versions": versions("onnxruntime", "onnxconverter-common", "openvino", "ai-edge-litert",
                                "ai-edge-quantizer", "litert-torch"),
           "models": {}}
    jobs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            folder = Path(tmp) / name
            out["models"][name], files = export_model(name, folder)
            print(name, {rt: (round(f["ratio"], 3), f["check"]["passed"]) for rt, f in out["models"][name].items()},
                  flush=True)
            macs = profile_module(create_model(name), (1, *model_info(name).input_size)).macs
            jobs += [artifact_job(path, runtime, 1, args.threads, model=name, macs=macs) for path, runtime in files]
        timing = {"warmup": 10, "min_runs": 50, "min_time_s": 1.0, "max_time_s": 8.0}
        measured = measure(jobs, rounds=args.rounds, timing=timing, threads=[args.threads], device="cpu")
    out.update(rows=measured["rows"], machine=measured["machine"], failures=measured["failures"],
               comparisons=comparisons(measured["rows"]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1, default=float) + "\n")
    for c in out["comparisons"]:
        print(c["model"], c["runtime"], round(c["paired"]["median_ratio"], 3), c["paired"]["call"], flush=True)


if __name__ == "__main__":
    main()

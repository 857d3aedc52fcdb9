"""Which zoo model converts and verifies on which runtime: one ONNX export per model, then each
converter and each runtime's equivalence check on its own, failures recorded with the error.

    python benchmarks/coverage.py [--models 'resnet*'] [--formats onnx,openvino,...]   (default: every format;
                                                                   TensorRT only on a machine with a CUDA GPU)
    python benchmarks/coverage.py --precision fp16      (each format's fp16 file: results/coverage_fp16.json)

Appends to benchmarks/results/coverage.json (resumable: models already there are skipped unless
--redo); scripts/coverage_table.py turns it into the README's table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import traceback
from pathlib import Path

import torch

from cnnexport.exporter.formats import ALWAYS, FORMATS, ConvertSource
from cnnexport.exporter.onnx_export import to_onnx
from cnnexport.exporter.pipeline import first_tensor, verify_artifact
from cnnexport.exporter.prepare import prepare
from cnnexport.exporter.simplify import simplify
from cnnexport.exporter.verify import FP16_RTOL, fp16_verdict, make_inputs, reference_outputs
from cnnexport.exporter.report_fields import versions
from cnnexport.models import create_model, list_models, model_info

RESULTS = Path(__file__).parent / "results" / "coverage.json"


def _error(exc: BaseException) -> str:
    return next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)[:300]


def cover(name: str, formats: list[str], precision: str = "fp32") -> list[dict]:
    """Each format's file of ``name`` (random weights, seed 0) converted and checked against PyTorch:
    fp32 at 1e-4 x max |output|, or with ``precision="fp16"`` the fp16 file (made from the fp32 one, as
    --fp16 does) by fp16's own rule."""
    info = model_info(name)
    shape = (1, *info.input_size)
    torch.manual_seed(0)
    model = create_model(name)
    prepared = prepare(model)
    inputs = make_inputs(shape, dynamic_batch=True)
    with torch.no_grad():
        refs = reference_outputs(lambda b: first_tensor(model(torch.from_numpy(b))).numpy(), inputs)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        onnx_path = d / FORMATS[ALWAYS].file_name(name)
        t0 = time.perf_counter()
        to_onnx(prepared, onnx_path, shape)
        simplify(onnx_path, onnx_path)
        onnx_s = time.perf_counter() - t0
        source = ConvertSource(prepared, onnx_path, shape, tflite_layout="nhwc")
        for fmt in formats:
            row = {"model": name, "format": fmt, "converts": False, "verifies": False}
            t0 = time.perf_counter()
            try:
                module = FORMATS[fmt].module()
                artifact = module.convert(source, d / FORMATS[fmt].file_name(name))
                if precision == "fp16":
                    fp32_bytes = sum(f.stat().st_size for f in artifact.files)
                    artifact = module.half(source, artifact, d / FORMATS[fmt].file_name(name, "fp16"))
                    row["size_ratio"] = sum(f.stat().st_size for f in artifact.files) / fp32_bytes
                row["converts"] = True
                row["convert_s"] = round(onnx_s + time.perf_counter() - t0 if fmt == ALWAYS  # ONNX: the export itself
                                         else time.perf_counter() - t0, 2)
                checked = verify_artifact(artifact, refs, inputs, None, FP16_RTOL if precision == "fp16" else 1e-4)
                eq = fp16_verdict(checked) if precision == "fp16" else checked.as_dict()
                row.update(verifies=eq["passed"], max_rel=eq["max_rel"], cosine=eq["cosine"],
                           top1_agreement=eq["top1_agreement"])
                if precision == "fp16":
                    row["fp16_check"] = eq["fp16_check"]
                if not eq["passed"]:
                    row["error"] = eq.get("failure") or f"max rel error {eq['max_rel']:.2e} over tolerance"
            except Exception as exc:  # recorded, not raised: the table lists failures with the error
                row["error"] = _error(exc)
                row["trace_tail"] = traceback.format_exc().splitlines()[-1][:300]
            rows.append(row)
    return rows


def _gpu_here(fmt: str) -> bool:
    """Whether this machine can write ``fmt`` (a format that needs a CUDA GPU is left out otherwise)."""
    try:
        FORMATS[fmt].module().preflight()
    except Exception:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="*")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--redo", action="store_true")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                        help="fp16: each fp16 file, into results/coverage_fp16.json")
    args = parser.parse_args()
    results = RESULTS if args.precision == "fp32" else RESULTS.with_name("coverage_fp16.json")
    formats = [f for f in args.formats.split(",") if not FORMATS[f].needs_cuda or _gpu_here(f)]
    if args.precision == "fp16":
        formats = [f for f in formats if FORMATS[f].fp16]
    data = json.loads(results.read_text()) if results.is_file() else {"rows": []}
    done = {(r["model"], r["format"]) for r in data["rows"]}
    for name in list_models(args.models):
        todo = [f for f in formats if args.redo or (name, f) not in done]
        if not todo:
            continue
        new = cover(name, todo, args.precision)
        data["rows"] = [r for r in data["rows"] if not (r["model"] == name and r["format"] in todo)] + new
        data["versions"] = versions("openvino", "ai-edge-litert", "litert-torch", "ncnn", "pnnx", "executorch", "mnn",
                                    *(("onnxconverter-common", "ai-edge-quantizer") if args.precision == "fp16" else ()))
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(data, indent=1) + "\n")
        print(name, " ".join(f"{r['format']}:{'ok' if r['verifies'] else 'FAIL'}" for r in new), flush=True)


if __name__ == "__main__":
    main()

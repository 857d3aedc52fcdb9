"""What int8 costs in accuracy, and where the loss comes from; why ONNX Runtime int8 is not always faster.

    python benchmarks/int8_accuracy.py [--threads 2]

1. The two networks trained on scikit-learn's digits and shipped with cnnexport (LeNet-5, and the
   depthwise shufflenet_v2_x0_5 at 3x64x64): calibrated on 300 training images, evaluated on the
   450 test images calibration never saw; real test accuracy fp32 vs int8 per runtime (ONNX
   Runtime, OpenVINO, TFLite), and ONNX Runtime's per-layer SQNR, worst layers first.
2. resnet50, mobilenet_v2, shufflenet_v2_x1_0 (BatchNorm statistics re-estimated on the bundled
   photographs, see int8_speed.py): per-layer SQNR, worst layers first, and mean SQNR per op kind.
3. ONNX Runtime's own per-node profile of fp32 vs int8 (summed per op type), which shows where
   int8 time goes: QuantizeLinear/DequantizeLinear around ops that have no int8 kernel.

Writes benchmarks/results/int8_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

import cnnexport
from cnnexport.machine import cpu_facts
from cnnexport.calib import Preprocess, sample_photos, split
from cnnexport.calib.digits import load_digits
from cnnexport.exporter.formats.onnx.quantize_ort import per_layer_sqnr, quantize_onnx
from cnnexport.exporter.verify import int8_figures
from cnnexport.exporter.report_fields import versions
from cnnexport.models import BUNDLED_WEIGHTS, create_model
from cnnexport.runtimes import load, run_nchw

from _common import reestimate_bn

RESULTS = Path(__file__).parent / "results" / "int8_accuracy.json"


def by_op_kind(rows: list[dict]) -> dict:
    kinds: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if np.isfinite(r["sqnr_db"]):
            kinds[r["op"]].append(r["sqnr_db"])
    return {k: {"layers": len(v), "mean_sqnr_db": float(np.mean(v)), "min_sqnr_db": float(np.min(v))}
            for k, v in sorted(kinds.items(), key=lambda kv: np.mean(kv[1]))}


def digits_model(name: str, tmp: Path) -> dict:
    entry = BUNDLED_WEIGHTS[(name, "digits")]
    shape = (1, *entry.input_size)
    report = cnnexport.export(create_model(name, weights="digits"), shape, tmp, name=name,
                              formats=("onnx", "openvino", "tflite"), int8=True, calib="digits", calib_count=300)
    test = load_digits(size=shape[2], channels=shape[1])
    arts = {(a["runtime"], a["precision"]): tmp / Path(a["path"]).name for a in report["artifacts"]}
    per_runtime = {}
    for runtime in ("onnxruntime", "openvino", "tflite"):
        fp32 = run_nchw(load(arts[(runtime, "fp32")], runtime), test.x_test)
        int8 = run_nchw(load(arts[(runtime, "int8")], runtime), test.x_test)
        per_runtime[runtime] = int8_figures(fp32, int8, test.y_test)
    layers = per_layer_sqnr(arts[("onnxruntime", "fp32")], arts[("onnxruntime", "int8")], test.x_test[:64])
    return {"input": list(shape), "calibration_samples": 300, "test_images": len(test.y_test),
            "per_runtime": per_runtime, "per_layer_sqnr_worst": layers[:10], "sqnr_by_op_kind": by_op_kind(layers)}


def ort_op_profile(path: Path, x: np.ndarray, threads: int, runs: int = 30) -> dict:
    """Milliseconds per run spent in each op type, from ONNX Runtime's profiler."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        opts.profile_file_prefix = str(Path(tmp) / "prof")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        for _ in range(5 + runs):
            sess.run(None, {name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]].append(e["dur"] / 1e3)
    total_runs = 5 + runs
    return {op: {"ms_per_run": sum(d) / total_runs, "nodes": len(d) // total_runs}
            for op, d in sorted(per_op.items(), key=lambda kv: -sum(kv[1]))}


def zoo_model(name: str, tmp: Path, threads: int) -> dict:
    model = create_model(name)
    pre = Preprocess()
    reestimate_bn(model, sample_photos(pre, 64, seed=1))
    cnnexport.export(model, (1, 3, 224, 224), tmp, name=name)
    calibration, evaluation = split(sample_photos(pre, 200))
    fp32_path, int8_path = tmp / f"{name}.onnx", tmp / f"{name}.int8.onnx"
    info = quantize_onnx(fp32_path, int8_path, calibration)
    figures = int8_figures(run_nchw(load(fp32_path), evaluation), run_nchw(load(int8_path), evaluation))
    layers = per_layer_sqnr(fp32_path, int8_path, evaluation[:16])
    x = evaluation[:1]
    profiles = {p: ort_op_profile(path, x, threads) for p, path in (("fp32", fp32_path), ("int8", int8_path))}
    return {"quantization": info, "evaluation": figures, "per_layer_sqnr_worst": layers[:10],
            "sqnr_by_op_kind": by_op_kind(layers), "ort_op_profile_ms": profiles,
            "ort_total_ms": {p: sum(v["ms_per_run"] for v in prof.values()) for p, prof in profiles.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    out = {"benchmark": "int8_accuracy", "machine": cpu_facts(), "threads": args.threads,
           "versions": versions("openvino", "nncf", "ai-edge-litert", "ai-edge-quantizer", "litert-torch"),
           "digits": {}, "zoo": {}}
    for name in ("lenet5", "shufflenet_v2_x0_5"):
        with tempfile.TemporaryDirectory() as tmp:
            out["digits"][name] = digits_model(name, Path(tmp))
        print(name, {rt: (round(f["accuracy_fp32"], 4), round(f["accuracy_int8"], 4))
                     for rt, f in out["digits"][name]["per_runtime"].items()}, flush=True)
    for name in ("resnet50", "mobilenet_v2", "shufflenet_v2_x1_0"):
        with tempfile.TemporaryDirectory() as tmp:
            out["zoo"][name] = zoo_model(name, Path(tmp), args.threads)
        print(name, out["zoo"][name]["evaluation"], out["zoo"][name]["ort_total_ms"], flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()

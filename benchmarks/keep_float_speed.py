"""Per-layer keep-float where int8 loses (#32, point 6): the depthwise convolutions left in float in the
ONNX Runtime int8 file, against the fully int8 file and the fp32 one, in interleaved rounds.

    python benchmarks/keep_float_speed.py [--rounds 7] [--threads 2]

The int8 picks of the two depthwise targets sit at 5-9% of their int8 bound, and the per-layer profile
(roofline_layers) puts the depthwise convolutions furthest from theirs. Both int8 files are quantized
here from the same fp32 ONNX file with the same calibration photographs (``--keep-float depthwise``
against nothing kept); BatchNorm statistics come from photographs, as in int8_speed.py. The change is
kept (the export would apply it) only if the paired rounds call it faster. The mean logits cosine of
each int8 file with fp32 on held-out photographs is recorded beside its speed.

Writes benchmarks/results/keep_float_speed.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import cnnexport
from _common import reestimate_bn
from cnnexport.bench.jobs import artifact_job
from cnnexport.bench.rows import paired, rows_from
from cnnexport.bench.schedule import run_jobs
from cnnexport.calib import Preprocess, sample_photos
from cnnexport.exporter.formats.onnx.quantize_ort import quantize_onnx
from cnnexport.exporter.report_fields import versions
from cnnexport.exporter.verify import cosines
from cnnexport.machine import cpu_facts
from cnnexport.models import create_model
from cnnexport.runtimes import load

RESULTS = Path(__file__).parent / "results" / "keep_float_speed.json"
MODELS = ("mobilenet_v2", "shufflenet_v2_x1_0")
SHAPE = (1, 3, 224, 224)
FIGURES = ("median_ms", "round_medians_ms", "spread")


def files_for(model: str, folder: Path, calibration: np.ndarray, heldout: np.ndarray) -> dict:
    """fp32, int8 and int8 with the depthwise convolutions in float; each int8 file's cosine on ``heldout``."""
    net = create_model(model)
    reestimate_bn(net, sample_photos(Preprocess(), 64, seed=1))
    cnnexport.export(net, SHAPE, folder, name=model, formats=("onnx",))
    fp32 = folder / f"{model}.onnx"
    out = {"fp32": {"path": fp32}}
    reference = load(fp32).run(heldout)[0]
    for variant, keep in (("int8", ()), ("int8, depthwise in float", ("depthwise",))):
        path = folder / f"{model}.{'int8' if not keep else 'int8-dwfloat'}.onnx"
        info = quantize_onnx(fp32, path, calibration, keep_float=keep)
        out[variant] = {"path": path, "float_compute_nodes": info["float_compute_nodes"],
                        "compute_nodes": info["compute_nodes"],
                        "cosine_mean": float(cosines(reference, load(path).run(heldout)[0]).mean())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    photos = sample_photos(Preprocess(), 96, seed=2)
    calibration, heldout = photos[:64], photos[64:]
    with tempfile.TemporaryDirectory() as tmp:
        made = {m: files_for(m, Path(tmp) / m, calibration, heldout) for m in MODELS}
        jobs = {(m, v): artifact_job(f["path"], "onnxruntime", 1, args.threads)
                for m, variants in made.items() for v, f in variants.items()}
        run_jobs(list(jobs.values()), rounds=args.rounds, timing={"warmup": 10, "min_runs": 50, "min_time_s": 1.0})
    rows = rows_from(list(jobs.values()), machine=cpu_facts())
    by_artifact = {r["artifact"]: r for r in rows}
    models = {}
    for m, variants in made.items():
        figures = {v: {k: by_artifact[Path(f["path"]).name][k] for k in FIGURES}
                   | {k: f[k] for k in ("float_compute_nodes", "compute_nodes", "cosine_mean") if k in f}
                   for v, f in variants.items()}
        before, after = figures["int8"], figures["int8, depthwise in float"]
        call = paired(after["round_medians_ms"], before["round_medians_ms"])  # after / before, round by round
        models[m] = {"files": figures, "speedup": before["median_ms"] / after["median_ms"], "paired": call,
                     "kept": call["call"] == "faster",
                     "int8_over_fp32": figures["fp32"]["median_ms"] / before["median_ms"]}
        print(f"{m}: depthwise in float {models[m]['speedup']:.2f}x the fully int8 file "
              f"({call['call'] or 'a tie'} by the paired test); int8 {models[m]['int8_over_fp32']:.2f}x fp32; "
              f"cosine {before['cosine_mean']:.4f} -> {after['cosine_mean']:.4f}", flush=True)
    out = {"benchmark": "keep_float_speed", "machine": cpu_facts(), "threads": args.threads, "rounds": args.rounds,
           "runtime": "onnxruntime", "versions": versions("onnxruntime"), "models": models}
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

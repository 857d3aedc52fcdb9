"""Wall time of the headline command as a cold process, next to a plain torch.onnx.export of the
same model in a cold process, measured in the same run (interleaved rounds, medians, ratio).

    python benchmarks/headline_export.py [--rounds 3] [--model resnet50]

Writes benchmarks/results/headline_export.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnexport.machine import cpu_facts
from cnnexport.exporter.report_fields import versions

RESULTS = Path(__file__).parent / "results"

PLAIN = """
import torch
from cnnexport.models import create_model
model = create_model({model!r})
torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), "plain.onnx", dynamo=False, opset_version=18,
                  input_names=["input"], output_names=["output"],
                  dynamic_axes={{"input": {{0: "batch"}}, "output": {{0: "batch"}}}})
"""


def timed(cmd: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def phases(export_dir: Path) -> dict[str, float]:
    """The export's own phase timings (report.json ``timings_s``); the rest of the wall time is the
    interpreter, imports, loading the model and writing."""
    report = next(export_dir.rglob("report.json"), None)
    return json.loads(report.read_text())["timings_s"] if report else {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="resnet50")
    args = parser.parse_args()
    exe = shutil.which("cnnexport", path=str(Path(sys.executable).parent)) or "cnnexport"
    runs: dict[str, list[float]] = {"cnnexport": [], "plain_torch_onnx_export": []}
    phase_runs: list[dict[str, float]] = []
    for _ in range(args.rounds):  # interleaved, so drift hits both alike
        with tempfile.TemporaryDirectory() as tmp:
            runs["cnnexport"].append(timed([exe, args.model, "--fold-bn", "--onnx"], tmp))
            phase_runs.append(phases(Path(tmp)))
            runs["plain_torch_onnx_export"].append(
                timed([sys.executable, "-c", PLAIN.format(model=args.model)], tmp))
    med = {k: statistics.median(v) for k, v in runs.items()}
    phase_median = {k: statistics.median(p[k] for p in phase_runs if k in p) for k in phase_runs[0]}
    result = {
        "benchmark": "headline_export",
        "model": args.model,
        "command": f"cnnexport {args.model} --fold-bn --onnx",
        "rounds": args.rounds,
        "wall_s": runs,
        "median_s": med,
        "ratio_cnnexport_to_plain": med["cnnexport"] / med["plain_torch_onnx_export"],
        "phases_median_s": phase_median,
        "note": "cnnexport also folds BN, checks, simplifies (onnxsim) and verifies on 11 inputs with ONNX Runtime",
        "machine": cpu_facts(),
        "versions": versions("ml_dtypes"),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "headline_export.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("median_s", "ratio_cnnexport_to_plain")}))


if __name__ == "__main__":
    main()

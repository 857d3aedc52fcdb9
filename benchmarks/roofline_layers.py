"""Per-layer roofline of the three target models: each fused layer group's bound (from the fp32 ONNX
graph's MACs and memory access cost, this machine's compute ceiling (the best of several GEMMs) and
the bandwidth of the memory level that holds the group's working set, at ``--threads``) beside its
time in ONNX Runtime's profiler and OpenVINO's performance counters.

    python benchmarks/roofline_layers.py [--threads 2] [--models resnet50,mobilenet_v2,shufflenet_v2_x1_0]

Runs the product's own commands (`cnnexport export`, `cnnexport profile --roofline --per-layer`) and
writes benchmarks/results/roofline_layers.json (REPORT.md's roofline section is made from it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "roofline_layers.json"
CLI = [sys.executable, "-m", "cnnexport"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="resnet50,mobilenet_v2,shufflenet_v2_x1_0")
    args = parser.parse_args()
    out = {"benchmark": "roofline_layers", "threads": args.threads, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            folder = Path(tmp) / model
            subprocess.run([*CLI, "export", model, "--openvino", "-o", str(folder), "--json"], check=True,
                           capture_output=True)
            out["models"][model] = {}
            for runtime, file in (("onnxruntime", f"{model}.onnx"), ("openvino", f"{model}.xml")):
                proc = subprocess.run([*CLI, "profile", str(folder / file), "--roofline", "--per-layer", "--runtime",
                                       runtime, "--threads", str(args.threads), "--json"], check=True,
                                      capture_output=True, text=True)
                result = json.loads(proc.stdout)
                out["models"][model][runtime] = result
                out["machine"] = result["machine"]
                print(model, runtime, f"bound {result['bound_ms']:.2f} ms, measured {result['measured_ms']:.2f} ms, "
                      f"of roofline {result['of_roofline']:.0%}, farthest {result['farthest_kind']}", flush=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

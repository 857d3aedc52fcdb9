"""The deploy side on 64-bit ARM kernels, emulated: mobilenet_v2 and shufflenet_v2_x1_0 exported here (x86) in
fp32, fp16 and int8 for every runtime whose aarch64 wheel loads under qemu-user (ONNX Runtime, OpenVINO, LiteRT,
ncnn, MNN), then each file checked with `cnnexport verify` against the export's reference.npz on this machine
and on emulated cores, side by side: a current phone core (`cortex-a710`, ARMv9.0: fp16 arithmetic, int8 dot
product, i8mm, bf16, SVE2) and an ARMv8.0 core (`cortex-a53`, NEON only); `--cpus` adds `max` (everything qemu
emulates, SME and SME2 too: the runtimes ran 3-17x slower there under qemu, an hour more here).

    sudo python benchmarks/arm_emulated.py [--models mobilenet_v2,shufflenet_v2_x1_0] [--cpus cortex-a710,cortex-a53]
                                           [--timeout 1200]

Needs root (scripts/arm_env.sh builds and enters the arm64 root). No timing: an emulator's times are not
the CPU's. Writes benchmarks/results/arm_emulated.json (REPORT.md's ARM section is made from it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "arm_emulated.json"
CLI = [sys.executable, "-m", "cnnexport"]
CPUS = ("cortex-a710", "cortex-a53")
#: the formats checked under emulation (ONNX is always written)
FORMATS = ("onnx", "openvino", "tflite", "ncnn", "mnn")
FIGURES = ("passed", "max_abs", "max_rel", "cosine", "top1_agreement", "tolerance")


def verify(command: list[str], cwd: Path, timeout: int) -> dict:
    """One `cnnexport verify --json` run: its figures, or why it failed."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"passed": False, "error": f"did not finish in {timeout} s", "seconds": timeout}
    out = {"seconds": round(time.perf_counter() - t0, 1), "exit_code": proc.returncode}
    try:  # a runtime may print around the JSON (MNN names the CPU's features on stdout as it loads)
        figures, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
        out.update({k: figures.get(k) for k in FIGURES}, precision_rule=figures.get("fp16_check") or
                   figures.get("int8_check"), machine=figures.get("machine"))
        if figures.get("runtime_default"):  # what the runtime's own defaults compute on this core
            out["runtime_default"] = figures["runtime_default"]
    except ValueError:
        out["passed"] = False
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    if errors or proc.returncode:
        out["error"] = (errors or proc.stderr.strip().splitlines()[-1:] or ["(no message)"])[-1][:400]
    return out


def export(name: str, folder: Path) -> list[str]:
    """fp32, fp16 and int8 files of ``name`` with BatchNorm statistics from photographs (random weights with
    default statistics give logits near 1e-9, which fp16 cannot even represent); the files' names. The fp32
    and int8 files come from the export (int8 gated at a mean cosine of 0.9: random weights); the fp16 files
    from its own step, ``convert_and_verify``, which records fp16's verdict rather than enforcing it (random
    weights leave the classes' logits close, so fp16 may miss its photo cosine here and on ARM alike): the
    question is whether ARM's kernels give x86's figures."""
    import cnnexport
    from cnnexport.calib import Preprocess, sample_photos
    from cnnexport.exporter.formats import FORMATS as TABLE
    from cnnexport.exporter.options import ExportOptions
    from cnnexport.exporter.pipeline import Reference, convert_and_verify
    from cnnexport.exporter.prepare import prepare
    from cnnexport.exporter.verify import load_reference
    from cnnexport.models import create_model, model_info

    sys.path.insert(0, str(HERE))
    from _common import reestimate_bn

    model = create_model(name)
    reestimate_bn(model, sample_photos(Preprocess(), 64, seed=1))
    shape = (1, *model_info(name).input_size)
    report = cnnexport.export(model, shape, folder, name=name, formats=FORMATS, int8=True, calib="samples",
                              int8_min_cosine=0.9)
    inputs, refs, _ = load_reference(folder / "reference.npz")
    source = ExportOptions().convert_source(prepare(model), folder / TABLE["onnx"].file_name(name), shape)
    halves = convert_and_verify(source, Reference(inputs, refs), folder, name, [f for f in FORMATS if TABLE[f].fp16],
                                precision="fp16")
    files = [Path(a["path"]).name for a in report["artifacts"]]
    return files + [c.artifact.files[0].name for c in halves]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mobilenet_v2,shufflenet_v2_x1_0")
    parser.add_argument("--cpus", default=",".join(CPUS), help="qemu CPU models, e.g. cortex-a710,max,cortex-a53")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per emulated verify")
    args = parser.parse_args()
    cpus = tuple(args.cpus.split(","))
    subprocess.run(["bash", str(ROOT / "scripts" / "arm_env.sh"), "build"], check=True)
    emulator = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    from cnnexport.exporter.formats import precision_of
    from cnnexport.exporter.report_fields import versions
    from cnnexport.machine import cpu_facts
    from cnnexport.runtimes import runtime_for

    rows = []
    # under the checkout, where the arm64 root sees it
    with tempfile.TemporaryDirectory(prefix="arm-", dir=ROOT, ignore_cleanup_errors=True) as tmp:
        for model in args.models.split(","):
            folder = Path(tmp) / model
            for name in export(model, folder):
                row = {"model": model, "file": name, "runtime": runtime_for(name), "precision": precision_of(name)}
                command = ["cnnexport", "verify", name, "--reference", "reference.npz", "--json"]
                row["x86"] = verify([*CLI, *command[1:]], folder, args.timeout)
                with ThreadPoolExecutor(len(cpus)) as pool:  # each emulated run in its own mount namespace
                    arm = pool.map(lambda cpu: verify(["bash", str(ROOT / "scripts" / "arm_env.sh"), "run", "--cpu", cpu,
                                                       "--", *command], folder, args.timeout), cpus)
                    row.update({f"arm_{cpu}": r for cpu, r in zip(cpus, arm)})
                rows.append(row)
                print(f"{model} {name}: x86 {row['x86'].get('passed')}, "
                      + ", ".join(f"{cpu} {row[f'arm_{cpu}'].get('passed')} ({row[f'arm_{cpu}'].get('max_rel')})"
                                  for cpu in cpus), flush=True)
        RESULTS.write_text(json.dumps({
            "benchmark": "arm_emulated", "machine": cpu_facts(), "cpus": list(cpus),
            "emulator": f"{emulator}, scripts/arm_env.sh",
            "versions": versions("onnxruntime", "openvino", "ai-edge-litert", "ncnn", "mnn"), "rows": rows},
            indent=1) + "\n")


if __name__ == "__main__":
    main()

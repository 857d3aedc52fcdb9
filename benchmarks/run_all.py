"""Regenerate every committed benchmark result and benchmarks/REPORT.md, in one command.

    python benchmarks/run_all.py                 # everything (about two hours on 2 cores)
    python benchmarks/run_all.py --only report   # re-render REPORT.md from the saved results
    python benchmarks/run_all.py --only guidelines,zoo --runtime ort,openvino,tflite,ncnn,mnn,torch

Each step runs as its own process and saves its JSON under benchmarks/results/ before the next
starts, so an interrupted run keeps what it finished. Steps: headline, int8_speed, int8_accuracy,
graph_changes, targets (the three target models on every CPU runtime, ncnn included, against PyTorch
eager), executorch (ExecuTorch beside LiteRT and the others: delegation, int8 accuracy, latency), mnn (MNN
beside the other CPU runtimes), fp16 (fp16 files against fp32 on the CPU: size and latency), bf16 (OpenVINO's
defaults, config file and bf16 files on a bf16 CPU), eval (`cnnexport eval` on the digits PNG folder and its throughput against bench),
guidelines (with the G1/G2 alignment factor), zoo, zoo_int8 (the zoo's int8 files on every CPU runtime
that has them, against the int8 roofline), plain_recheck (the zoo's pairs called slower than plain, re-measured
with more rounds), roofline_layers (the three target models' layers
against their roofline bounds, timed by ONNX Runtime's and OpenVINO's profilers), keep_float (the depthwise convolutions
left in float in the int8 file, against all-int8, paired), ncnn_winograd (why ncnn's
VGG rows beat the bound: Winograd on and off), arm_emulated (the two mobile targets' files verified on emulated
ARM kernels; needs root for scripts/arm_env.sh), coverage (slow:
converts every model to every format), user_blocks (slow: the blocks users write through every format),
cross_machine (`cnnexport report` over every machine's rows in
results/ and results/machines/, into benchmarks/cross_machine/), report.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
STEPS = ("headline", "int8_speed", "int8_accuracy", "graph_changes", "targets", "executorch", "mnn", "fp16", "bf16",
         "eval",
         "guidelines", "zoo", "zoo_int8", "plain_recheck", "roofline_layers", "keep_float", "ncnn_winograd", "arm_emulated", "coverage", "user_blocks", "cross_machine", "report")
TARGET_MODELS = ("resnet50", "mobilenet_v2", "shufflenet_v2_x1_0")
INT8_RUNTIMES = "ort,openvino,tflite,mnn"  # the zoo study's CPU runtimes with int8 files (ncnn and PyTorch have none)


def commands(runtime: str, threads: int, rounds: int) -> dict[str, list[list[str]]]:
    py, cli = sys.executable, [sys.executable, "-m", "cnnexport"]
    common = ["--runtime", runtime, "--threads", str(threads), "--rounds", str(rounds)]
    targets = [[*cli, "bench", m, "--runtime", "ort,openvino,tflite,ncnn,aoti,torch,torch-compile", "--precision", "fp32,int8",
                "--plain", "--threads", str(threads), "--rounds", str(max(rounds, 5)), "--pick",
                "--save", str(RESULTS / f"targets_{m}.json")] for m in TARGET_MODELS]
    single = {
        "headline": [py, str(HERE / "headline_export.py")],
        "int8_speed": [py, str(HERE / "int8_speed.py"), "--threads", str(threads)],
        "int8_accuracy": [py, str(HERE / "int8_accuracy.py"), "--threads", str(threads)],
        "graph_changes": [py, str(HERE / "graph_changes.py"), "--threads", str(threads)],
        "executorch": [py, str(HERE / "executorch_bench.py"), "--threads", str(threads), "--rounds", str(rounds)],
        "mnn": [py, str(HERE / "mnn_bench.py"), "--threads", str(threads), "--rounds", str(rounds)],
        "fp16": [py, str(HERE / "fp16_cpu.py"), "--threads", str(threads), "--rounds", str(max(rounds, 5))],
        "bf16": [py, str(HERE / "openvino_bf16.py"), "--threads", str(threads), "--rounds", str(max(rounds, 5))],
        "eval": [py, str(HERE / "eval_bench.py"), "--threads", str(threads), "--rounds", str(rounds)],
        "guidelines": [*cli, "study", "guidelines", *common, "--save", str(RESULTS / "guidelines.json")],
        "zoo": [*cli, "study", "zoo", *common, "--plot", str(HERE / "latency_vs_macs.png"),
                "--save", str(RESULTS / "zoo.json")],
        "zoo_int8": [*cli, "study", "zoo", "--precision", "int8", "--runtime", INT8_RUNTIMES, "--threads", str(threads),
                     "--rounds", str(rounds), "--plot", str(HERE / "latency_vs_macs_int8.png"),
                     "--save", str(RESULTS / "zoo_int8.json")],
        "plain_recheck": [py, str(HERE / "plain_recheck.py"), "--threads", str(threads), "--rounds", str(max(rounds, 7))],
        "roofline_layers": [py, str(HERE / "roofline_layers.py"), "--threads", str(threads)],
        "keep_float": [py, str(HERE / "keep_float_speed.py"), "--threads", str(threads)],
        "ncnn_winograd": [py, str(HERE / "ncnn_winograd.py")],
        "arm_emulated": [py, str(HERE / "arm_emulated.py")],
        "coverage": [py, str(HERE / "coverage.py")],
        "user_blocks": [py, str(HERE / "user_blocks.py"), "--redo"],
        "cross_machine": [*cli, "report", *sorted(map(str, RESULTS.glob("*.json"))),
                          *sorted(map(str, RESULTS.glob("machines/*/*.json"))), "-o", str(HERE / "cross_machine")],
        "report": [py, str(HERE / "report.py")],
    }
    return {"targets": targets, **{name: [cmd] for name, cmd in single.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(s for s in STEPS if s not in ("coverage", "user_blocks")),
                        help=f"comma-separated steps from {', '.join(STEPS)} (coverage and user_blocks only when named)")
    parser.add_argument("--runtime", default="ort,openvino,tflite,ncnn,mnn,torch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}")
    cmds = commands(args.runtime, args.threads, args.rounds)
    for step in STEPS:
        if step in steps:
            for cmd in cmds[step]:
                print(f"== {step}: {' '.join(cmd[1:])}", flush=True)
                subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()

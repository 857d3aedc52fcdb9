"""REPORT.md: the deploy side on emulated ARM kernels (`arm_emulated.py`)."""

from __future__ import annotations

from .common import fmt, table, measured_on


#: Why a runtime and precision's ARM figures differ from x86's (read from benchmarks/results/arm_emulated.json)
EXPLAINED = {
    "fp32": "every fp32 file passes on both ARM cores, ONNX Runtime, OpenVINO, LiteRT, ncnn and MNN, within 1e-5 of "
            "the output scale as on x86: the same arithmetic summed in another order by NEON/SVE kernels. ncnn, MNN and "
            "OpenVINO keep fp32 on the fp16-capable `cortex-a710`, where each would compute in fp16 by default: the "
            "adapters turn ncnn's fp16 storage and arithmetic off, run MNN at its normal precision and compile OpenVINO "
            "with `INFERENCE_PRECISION_HINT=f32` (the IR's config.json says so). OpenVINO's own default on that core is "
            "f16, and `verify` reports it beside the verdict (the digits LeNet-5: max rel 1.8e-3, which would not pass "
            "fp32's check).",
    "int8": "ONNX Runtime's, LiteRT's and MNN's int8 files pass their cosine gate on both ARM cores; ONNX Runtime and "
            "LiteRT give x86's figures exactly, MNN's ARM kernels requantize with other rounding (shufflenet_v2_x1_0: "
            "max rel 0.22 on x86, 0.19 on ARM).",
    "int8 openvino": "**OpenVINO 2026.4's ARM plugin has no int8 convolutions:** its execution graph (printed on "
            "`cortex-a53` for the digits LeNet-5) runs each convolution in fp32 (Arm Compute Library's `gemm_acl_f32`) "
            "with the quantization as fp32 element-wise ops, so its figures are not x86's int8 kernels' "
            "(mobilenet_v2 on `cortex-a710`: max rel 0.38 against 0.27, lowest cosine 0.943 against 0.952; the digits "
            "LeNet-5: 97.6% top-1 against 99.1%). Twice it fails outright, on cores where its own default is the f32 "
            "cnnexport asks for, so the runtime, not our settings: mobilenet_v2.int8.xml compiles on `cortex-a53` and "
            "then refuses to run (\"[CPU] Convolution node ... object is not initialized\"; recorded above as an "
            "internal error, which `verify` now reports as the runtime's failure, exit 8); shufflenet_v2_x1_0.int8.xml "
            "does not compile on either core (\"Check 'any_of(scale.size(), OC, 1U)' failed at "
            "dnnl_postops_composer.cpp:526\"). For ARM, ship another runtime's int8 file or OpenVINO's fp32 IR.",
    "fp16 onnxruntime": "**the one file that passes here and fails on a phone core:** on `cortex-a710` ONNX Runtime "
            "computes an fp16 graph in fp16 arithmetic (ARMv8.2's FP16 kernels), with 3.5x (mobilenet_v2) and 8.6x "
            "(shufflenet_v2_x1_0) the error of x86 and of ARMv8.0, which widen fp16 to fp32: "
            "shufflenet_v2_x1_0.fp16.onnx passes on x86 and `cortex-a53` and fails fp16's photo cosine on the phone "
            "core (0.9989 against 0.9999).",
    "fp16": "OpenVINO's, LiteRT's and MNN's fp16 files give x86's figures on both cores: they hold fp16 weights that "
            "OpenVINO (f32 hint), LiteRT (XNNPACK, fp16 inference not enabled) and MNN (normal precision) widen to "
            "fp32. The mobilenet_v2 fp16 files and MNN's shufflenet_v2_x1_0 one miss fp16's photo cosine on every "
            "CPU, x86 included: random weights leave the logits close (the export gates fp16 on trained models; here "
            "the verdict is recorded, not enforced).",
    "emulator": "these rows come from qemu 10.0.2. Under bookworm's qemu 7.2, OpenVINO's int8 LeNet-5 scored 52% "
            "top-1 on `-cpu max` and 97.6% on every other core and under qemu 10 with the same `-cpu max`: an "
            "emulator bug in an SVE instruction, so `scripts/arm_env.sh` installs qemu 10 from Debian's backports.",
}


#: what each emulated core stands for
CPU_WORDS = {
    "cortex-a710": "a current phone core, ARMv9.0: fp16 arithmetic, int8 dot product, i8mm, bf16, SVE2",
    "max": "everything qemu emulates: SME and SME2 too, what the newest cores add",
    "cortex-a53": "ARMv8.0, NEON only",
}


def _cell(r: dict) -> str:
    if r.get("max_rel") is None:
        return "fails: " + (r.get("error") or "no figures").replace("|", "/")[:120]
    verdict = "pass" if r.get("passed") else "FAIL"
    return f"{verdict}, {r['max_rel']:.1e}, {fmt(r.get('cosine'), '{:.6f}')}"


def arm_section(arm: dict | None, notes: dict[str, str] = EXPLAINED) -> list[str]:
    """Which runtime and precision pass on ARM kernels, their max error and cosine beside x86's; ``notes``
    (a precision, or a precision and runtime: why) explains the differences."""
    if not arm:
        return []
    cpus = arm["cpus"]
    rows = arm["rows"]
    passed = {cpu: sum(bool(r[f"arm_{cpu}"].get("passed")) for r in rows) for cpu in cpus}
    out = ["## The deploy side on ARM kernels (emulated)", "",
           f"`sudo python benchmarks/arm_emulated.py`{measured_on(arm)}: each file exported here, then `cnnexport "
           "verify` against the export's reference.npz on this machine and, through `scripts/arm_env.sh` "
           f"({arm.get('emulator', 'qemu-user').split(',')[0]}), on emulated ARM cores: "
           + ", ".join(f"`{cpu}` ({CPU_WORDS.get(cpu, cpu)})" for cpu in cpus)
           + ", where the runtimes' aarch64 wheels pick their ARM kernels. No timings: an emulator's are not the "
           "CPU's. Each cell: verdict by the file's own rule (fp32: the export's tolerance; fp16: fp16's; int8: the "
           "cosine gate), max relative error, lowest cosine.", "",
           "Passed: " + ", ".join(f"`{cpu}` {passed[cpu]} of {len(rows)}" for cpu in cpus)
           + f"; x86 {sum(bool(r['x86'].get('passed')) for r in rows)} of {len(rows)}.", ""]
    out += table(["model", "file", "runtime", "precision", "x86", *(f"ARM `{cpu}`" for cpu in cpus)],
                 [[r["model"], r["file"], r["runtime"], r["precision"], _cell(r["x86"]),
                   *(_cell(r[f"arm_{cpu}"]) for cpu in cpus)] for r in rows])
    if notes:
        out += ["", "What differs from x86, and why:", ""]
        out += [f"- {key}: {why}" for key, why in notes.items()]
    return out + [""]

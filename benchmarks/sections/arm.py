"""REPORT.md: the deploy side on emulated ARM kernels (`arm_emulated.py`)."""

from __future__ import annotations

from .common import fmt, table, measured_on


#: Why a runtime and precision's ARM figures differ from x86's (read from benchmarks/results/arm_emulated.json)
EXPLAINED = {
    "fp32": "every fp32 file passes on both ARM cores with their figures equal to each other: the same NEON fp32 "
            "kernels, summing in another order than x86's AVX-512 ones (a difference near 1e-6 of the output scale). "
            "ncnn's and MNN's figures on the fp16-capable phone core equal the ARMv8.0 core's: the adapters' fp32 "
            "settings hold where those runtimes would otherwise compute in fp16 (ncnn's fp16 storage and "
            "arithmetic off; MNN at its normal precision).",
    "int8": "every int8 file passes its cosine gate on both ARM cores. x86 runs u8 x s8 VNNI kernels, ARM the "
            "dot-product (phone core) or NEON (ARMv8.0) ones: the same integers, requantized with other rounding, so "
            "a few outputs move (MNN on shufflenet_v2_x1_0: max rel 0.22 on x86, 0.16 on ARM; XNNPACK on "
            "mobilenet_v2: lowest cosine 0.958 against 0.947); ONNX Runtime's shufflenet file gives the same "
            "figures on all three.",
    "fp16 onnxruntime": "**the one file that passes here and fails on a phone core:** on `-cpu max` ONNX Runtime "
            "computes an fp16 graph in fp16 arithmetic (ARMv8.2's FP16 kernels), with 5-6x the error of x86 and of "
            "ARMv8.0, which widen fp16 to fp32: shufflenet_v2_x1_0.fp16.onnx passes on x86 and ARMv8.0 and fails on "
            "the phone core (lowest photo cosine 0.9988 against fp16's 0.9999).",
    "fp16": "the LiteRT and MNN fp16 files give the same figures everywhere: they hold fp16 weights that LiteRT "
            "(XNNPACK, fp16 inference not enabled) and MNN (normal precision, as the adapter runs it) widen to fp32. "
            "The mobilenet_v2 fp16 files and MNN's shufflenet_v2_x1_0 one miss fp16's photo cosine on every CPU, x86 "
            "included: random weights leave the logits close (the export gates fp16 on trained models; here the verdict is recorded, not enforced).",
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
           "(qemu-user), on an emulated phone core (`-cpu max`: fp16 arithmetic, int8 dot product, i8mm) "
           "and an ARMv8.0 core (`cortex-a53`: NEON only), where the runtimes' aarch64 wheels pick their ARM "
           "kernels. No timings: an emulator's are not the CPU's. OpenVINO is left out: its CPU plugin does not "
           "finish loading an IR under qemu-user. Each cell: verdict by the file's own rule (fp32: the export's "
           "tolerance; fp16: fp16's; int8: the cosine gate), max relative error, lowest cosine.", "",
           "Passed: " + ", ".join(f"`{cpu}` {passed[cpu]} of {len(rows)}" for cpu in cpus)
           + f"; x86 {sum(bool(r['x86'].get('passed')) for r in rows)} of {len(rows)}.", ""]
    out += table(["model", "file", "runtime", "precision", "x86", *(f"ARM `{cpu}`" for cpu in cpus)],
                 [[r["model"], r["file"], r["runtime"], r["precision"], _cell(r["x86"]),
                   *(_cell(r[f"arm_{cpu}"]) for cpu in cpus)] for r in rows])
    if notes:
        out += ["", "What differs from x86, and why:", ""]
        out += [f"- {key}: {why}" for key, why in notes.items()]
    return out + [""]

"""REPORT.md: the deploy side on emulated ARM kernels (`arm_emulated.py`)."""

from __future__ import annotations

from .common import fmt, table, measured_on


def _cell(r: dict) -> str:
    if r.get("max_rel") is None:
        return "fails: " + (r.get("error") or "no figures").replace("|", "/")[:120]
    verdict = "pass" if r.get("passed") else "FAIL"
    return f"{verdict}, {r['max_rel']:.1e}, {fmt(r.get('cosine'), '{:.6f}')}"


def arm_section(arm: dict | None, notes: dict[str, str] | None = None) -> list[str]:
    """Which runtime and precision pass on ARM kernels, their max error and cosine beside x86's; ``notes``
    (file -> why) explains each difference."""
    if not arm:
        return []
    cpus = arm["cpus"]
    rows = arm["rows"]
    passed = {cpu: sum(bool(r[f"arm_{cpu}"].get("passed")) for r in rows) for cpu in cpus}
    out = ["## The deploy side on ARM kernels (emulated)", "",
           f"`sudo python benchmarks/arm_emulated.py`{measured_on(arm)}: each file exported here, then `cnnexport "
           "verify` against the export's reference.npz on this machine and, through `scripts/arm_env.sh` "
           f"({arm['emulator']}), on an emulated phone core (`-cpu max`: fp16 arithmetic, int8 dot product, i8mm) "
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
        out += ["", "Differences from x86, explained:", ""]
        out += [f"- `{file}`: {why}" for file, why in notes.items()]
    return out + [""]

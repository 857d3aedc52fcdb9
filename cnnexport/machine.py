"""Facts about the machine: recorded in every benchmark row, and read by the int8 flow (VNNI decides
reduce_range). Below both the exporter and bench, so neither imports the other for it. No torch."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# avx512_bf16 / amx_bf16: where OpenVINO's CPU plugin computes in bf16 by default (verify's runtime_default note)
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "avx512_bf16", "amx_bf16", "neon",
             "asimd", "fphp", "asimddp", "i8mm", "bf16")
# 64-bit ARM features as the kernel hands them to the process (getauxval): (AT_HWCAP or AT_HWCAP2, bit).
# fphp: fp16 arithmetic (ARMv8.2), asimddp: int8 dot product, i8mm: int8 matrix multiply, bf16.
ARM_HWCAPS = {"asimd": (16, 1), "fphp": (16, 9), "asimddp": (16, 20), "i8mm": (26, 13), "bf16": (26, 14)}
#: set by scripts/arm_env.sh for the processes it runs under qemu: what is emulated, and how
EMULATED_ENV = "CNNEXPORT_EMULATED"


def _arm_hwcaps() -> set[str]:
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.getauxval.restype = ctypes.c_ulong
        libc.getauxval.argtypes = [ctypes.c_ulong]
        return {name for name, (at, bit) in ARM_HWCAPS.items() if libc.getauxval(at) >> bit & 1}
    except (OSError, AttributeError):
        return set()


def cpu_facts() -> dict:
    """CPU model, logical cores and the ISA flags that decide int8/fp32 kernel choice; ``emulated`` names
    the emulator where this process runs under one (then its timings are not the CPU's)."""
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Hardware") and value.strip():
                model = value.strip()
            elif key in ("flags", "Features"):
                flags.update(value.split())
    emulated = os.environ.get(EMULATED_ENV) or None
    if platform.machine() in ("aarch64", "arm64") and platform.system() == "Linux":
        # the process's own features (under qemu-user /proc/cpuinfo is the host's)
        flags = _arm_hwcaps()
        flags |= {"neon"} if "asimd" in flags else set()
        if emulated:
            model = f"{emulated} (emulated on {model})"
    return {
        "cpu": model,
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "isa": {f: f in flags for f in ISA_FLAGS},
        "python": platform.python_version(),
        "os": platform.platform(),
        "emulated": emulated,
    }

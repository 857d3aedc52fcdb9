"""Facts about the machine: recorded in every benchmark row, and read by the int8 flow (VNNI decides
reduce_range). Below both the exporter and bench, so neither imports the other for it. No torch."""

from __future__ import annotations

import os
import platform
from pathlib import Path

ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "neon", "asimd")


def cpu_facts() -> dict:
    """CPU model, logical cores and the ISA flags that decide int8/fp32 kernel choice."""
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
    return {
        "cpu": model,
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "isa": {f: f in flags for f in ISA_FLAGS},
        "python": platform.python_version(),
        "os": platform.platform(),
    }

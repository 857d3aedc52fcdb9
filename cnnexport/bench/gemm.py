"""Compute ceilings that are ceilings: the best of several measured GEMMs per precision (numpy's BLAS,
ONNX Runtime's MLAS, OpenVINO's oneDNN; int8: ONNX Runtime's u8 x s8 ``MatMulInteger``, the kernel its
QDQ convolutions run, and OpenVINO's int8 convolutions in a chain, as its int8 models run them), over a
square shape and layer-shaped ones, on the worker's threads, and the peak the ISA allows at the clock the
OS reports as a cross-check. No torch; the runtimes are imported lazily and a missing one is skipped, not
fatal.

The runtimes' own GEMMs beat numpy's by 15-30% here (ONNX Runtime 193 GFLOP/s against numpy's 150
on one AVX-512 core), so a ceiling from numpy alone was beaten by the models it bounded."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

#: fp32 lanes of the widest vector unit, by ISA flag (machine.cpu_facts' names)
_FP32_LANES = (("avx512f", 16), ("avx2", 8), ("fma", 8), ("asimd", 4), ("neon", 4))
#: assumed per core: 2 FMA units (2 FLOPs each per lane per cycle); AMX: 1024 int8 MACs per cycle
FMA_UNITS, AMX_INT8_MACS_PER_CYCLE = 2, 1024


def _best_seconds(fn: Callable[[], object], min_time_s: float, timer: Callable[[], float]) -> float:
    fn()
    fn()  # warm: packing, thread pool start
    best, spent, runs = float("inf"), 0.0, 0
    while runs < 3 or spent < min_time_s:
        t0 = timer()
        fn()
        dt = timer() - t0
        best, spent, runs = min(best, dt), spent + dt, runs + 1
    return best


def _numpy_fp32(a, b, threads):
    out = np.empty((a.shape[0], b.shape[1]), a.dtype)
    return lambda: np.matmul(a, b, out=out)


def _runtime_gemm(adapter_module: str, precision: str):
    """The timed-call builder of a runtime's own GEMM (its adapter module's ``gemm_call``)."""
    def build(a, b, threads):
        from importlib import import_module

        return import_module(f"cnnexport.runtimes.{adapter_module}").gemm_call(precision, a, b, threads)
    return build


def engines() -> dict[tuple[str, str], Callable]:
    """(engine, precision) -> builder of the timed call from (a, b, threads): numpy's, and every runtime's
    that declares ``gemm_precisions`` in RUNTIME_TABLE."""
    from ..runtimes import RUNTIME_TABLE

    out: dict[tuple[str, str], Callable] = {("numpy", "fp32"): _numpy_fp32}
    for runtime in RUNTIME_TABLE.values():
        for precision in runtime.gemm_precisions:
            out[(runtime.name, precision)] = _runtime_gemm(runtime.adapter.split(":")[0], precision)
    return out


#: (M, K, N) of the GEMMs the ceiling is the best of: a square one, the 1x1 convolutions of resnet50's
#: layer2 (28x28 pixels, 128 -> 512 channels) and layer1 (56x56, 64 -> 256), and a 3x3 convolution of VGG's
#: third stage (56x56, 256 -> 256: K = 9 x 256), the shapes runtimes run fastest. OpenVINO's int8 kernels ran
#: the 3x3 one at 5.7 TOPS here against ONNX Runtime's 4.5 at 1024^3, and its int8 VGGs beat a ceiling without it.
GEMM_SHAPES = ((1024, 1024, 1024), (784, 128, 512), (3136, 64, 256), (3136, 2304, 256))


def _operands(precision: str, m: int, k: int, n: int):
    rng = np.random.default_rng(0)
    if precision == "int8":
        return (rng.integers(0, 256, (m, k), dtype=np.uint8), rng.integers(-127, 128, (k, n), dtype=np.int8))
    return rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)


def measure_gemms(precision: str, threads: int, n: int | None = None, min_time_s: float = 0.3,
                  timer: Callable[[], float] = time.perf_counter,
                  shapes: tuple[tuple[int, int, int], ...] = GEMM_SHAPES) -> list[dict]:
    """Every engine's GEMM at ``precision`` over ``shapes`` (M, K, N; ``n``: one n x n x n instead):
    ``{"engine", "precision", "shape", "gflops"}`` (2 M K N operations per GEMM, and a call computes its
    ``gemms``, 1 unless it says more; for int8, integer operations), or ``{"engine", ..., "skipped": why}``
    where the runtime is not installed or fails."""
    out = []
    for m, k, cols in ((n, n, n),) if n else shapes:
        a, b = _operands(precision, m, k, cols)
        label = f"{m}x{k}x{cols}"
        for (engine, prec), build in engines().items():
            if prec != precision:
                continue
            try:
                call = build(a, b, threads)
                seconds = _best_seconds(call, min_time_s, timer)
            except Exception as exc:  # a missing or failing runtime leaves the others
                out.append({"engine": engine, "precision": precision, "shape": label,
                            "skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"})
                continue
            out.append({"engine": engine, "precision": precision, "shape": label,
                        "gflops": 2 * m * k * cols * getattr(call, "gemms", 1) / seconds / 1e9})
    return out


def pick_ceiling(measurements: list[dict], isa_peak: dict | None = None) -> dict:
    """The ceiling: the best measured GEMM (``set_by`` names it), every measurement kept; and, beside it,
    the ISA peak and what the comparison says (a GEMM above the peak means the core runs faster than
    the clock the OS reports)."""
    measured = [m for m in measurements if m.get("gflops")]
    if not measured:
        raise ValueError("no GEMM could be measured: " + "; ".join(f"{m['engine']}: {m.get('skipped')}"
                                                                  for m in measurements))
    best = max(measured, key=lambda m: m["gflops"])
    out = {"gflops": best["gflops"], "set_by": f"{best['engine']} {best['precision']} GEMM "
                                                + (best["shape"] if "shape" in best else f"n={best['n']}"),
           "measurements": measurements, "isa_peak": isa_peak}
    if isa_peak and isa_peak.get("gflops"):
        share = best["gflops"] / isa_peak["gflops"]
        out["of_isa_peak"] = share
        if share > 1:
            out["isa_note"] = (f"the best GEMM runs at {share:.0%} of the ISA peak at {isa_peak['mhz']:.0f} MHz: the "
                               "cores run above the clock the OS reports (turbo); the measured ceiling is kept")
    return out


def reported_mhz() -> float | None:
    """The clock /proc/cpuinfo reports (a VM's is often the nominal one), None where it does not."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return None
    for line in cpuinfo.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "cpu MHz":
            try:
                return float(value)
            except ValueError:
                return None
    return None


def isa_peak(isa: dict[str, bool], threads: int, precision: str, mhz: float | None) -> dict | None:
    """The peak the ISA allows on ``threads`` cores at ``mhz``, with what it assumes; None when the
    clock or the vector width is unknown. fp32: lanes x FMA_UNITS x 2 FLOPs per cycle; int8: AMX's
    1024 MACs per cycle where ``amx_tile`` is set, else VNNI's 4 MACs per fp32 lane x FMA_UNITS."""
    lanes = next((n for flag, n in _FP32_LANES if isa.get(flag)), None)
    if not mhz or not lanes:
        return None
    if precision == "fp32":
        per_cycle, how = lanes * FMA_UNITS * 2, f"{lanes} fp32 lanes x {FMA_UNITS} FMA units x 2 FLOPs"
    elif precision == "int8" and isa.get("amx_tile"):
        per_cycle, how = AMX_INT8_MACS_PER_CYCLE * 2, f"AMX: {AMX_INT8_MACS_PER_CYCLE} int8 MACs x 2 ops"
    elif precision == "int8" and (isa.get("avx512_vnni") or isa.get("avx_vnni")):
        per_cycle, how = lanes * 4 * FMA_UNITS * 2, f"VNNI: {lanes} lanes x 4 int8 MACs x {FMA_UNITS} units x 2 ops"
    else:
        return None
    return {"gflops": per_cycle * threads * mhz / 1e3, "mhz": mhz, "threads": threads,
            "assumes": f"{how} per cycle per core, at the clock /proc/cpuinfo reports"}

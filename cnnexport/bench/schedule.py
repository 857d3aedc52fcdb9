"""Running jobs: each measurement in its own worker process, rounds interleaved across runtimes;
the machine's compute ceilings (``bench.gemm``) and bandwidth; and ``measure``, which the bench
command and the study share (jobs -> rows with the ceilings and the machine facts). No torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from ..errors import CnnexportError, MissingDependencyError, UsageError
from ..machine import cpu_facts
from .jobs import Job
from .limits_file import cached_limit
from .limits import no_roof_below_the_next
from .rows import bound_warnings, rows_from
from .worker import worker_env


def call_worker(spec: dict, timeout_s: float = 900) -> dict:
    """Run one worker job in a fresh process; its JSON answer (``{"error": ...}`` on failure)."""
    threads = spec.get("threads", 1)
    try:
        proc = subprocess.run([sys.executable, "-m", "cnnexport.bench.worker", json.dumps(spec)],
                              capture_output=True, text=True, env=worker_env(threads), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        return {"error": f"worker exited with {proc.returncode}: {tail[-1][:200] if tail else 'no output'}"}
    return json.loads(lines[-1])


def check_device(device: str) -> None:
    """``--device``: cpu, or cuda where a worker's PyTorch sees a CUDA device."""
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device '{device}'; choose cpu or cuda")
    if device == "cuda":
        result = call_worker({"kind": "cuda_probe", "threads": 1})
        if result.get("error") or not result.get("cuda"):
            raise MissingDependencyError("--device cuda: no CUDA device is visible to PyTorch here (nvidia-smi, "
                                         "and a CUDA build of torch, are needed)")


def _limit(spec: dict, what: str) -> dict:
    result = call_worker(spec)
    if "error" in result:
        raise CnnexportError(f"{what} could not be measured: {result['error']}")
    return result


#: A limit is measured (each time in a fresh worker) until its best LIMIT_AGREE measurements agree within
#: LIMIT_STABLE of the best, at most LIMIT_MAX_REPEATS times. Load only ever lowers a limit, so the best
#: measurement is the limit; the spread of all of them says how busy the machine was.
LIMIT_AGREE, LIMIT_MAX_REPEATS, LIMIT_STABLE = 3, 6, 0.10
#: Past this spread (max - min) / max, a limit is noise: a warning, and rows that depend on it are marked.
LIMIT_NOISY = 0.25


def stable_limit(measure_once: Callable[[], dict], key: str, *, agree: int = LIMIT_AGREE,
                 max_repeats: int = LIMIT_MAX_REPEATS, stable: float = LIMIT_STABLE) -> dict:
    """Repeat ``measure_once`` until its best ``agree`` values of ``key`` agree within ``stable`` (or
    ``max_repeats`` ran): the best result, with ``values``, ``spread`` ((max - min) / max over every
    repeat), ``stable`` (whether the best ones agreed) and ``noisy`` (spread over LIMIT_NOISY)."""
    results = []
    while len(results) < max_repeats:
        results.append(measure_once())
        top = sorted(r[key] for r in results)[-agree:]
        if len(top) == agree and top[-1] - top[0] <= stable * top[-1]:
            break
    values = [r[key] for r in results]
    best = max(results, key=lambda r: r[key])
    spread = (max(values) - min(values)) / max(values) if max(values) > 0 else 0.0
    top = sorted(values)[-agree:]
    return {**best, key: max(values), "values": values, "spread": spread,
            "stable": len(top) == agree and top[-1] - top[0] <= stable * top[-1], "noisy": spread > LIMIT_NOISY}


def compute_ceiling(threads: int, precision: str = "fp32", n: int | None = None) -> dict:
    """The machine's compute ceiling at ``precision`` (fp32, int8) with ``threads`` threads: the best
    GEMM of numpy and each installed runtime over ``bench.gemm.GEMM_SHAPES`` (``n``: one square shape;
    ``set_by`` names the best, ``measurements`` holds them all, ``isa_peak`` the cross-check), measured
    until stable (``stable_limit``)."""
    def measure_it() -> dict:
        return stable_limit(lambda: _limit({"kind": "gemm", "threads": threads, "precision": precision, "n": n},
                                           f"the {precision} compute ceiling"), "gflops")

    return measure_it() if n else cached_limit(threads, f"{precision} ceiling", measure_it)


#: Cache-level copies are measured this many times (each in a fresh worker); each level keeps its best.
ROOF_REPEATS = 3


def memory_roofs(threads: int, dram_gbs: float) -> list[dict]:
    """The memory roofs at ``threads`` threads: each cache level's copy bandwidth, the best of
    ROOF_REPEATS workers (``values``: every reading), then DRAM at ``dram_gbs``; a level never below
    the one behind it (``bench.limits.memory_roofs``)."""
    def measure_it() -> list[dict]:
        readings = [_limit({"kind": "memory_roofs", "threads": threads}, "the cache bandwidths")["roofs"]
                    for _ in range(ROOF_REPEATS)]
        return [{"level": first["level"], "capacity_bytes": first["capacity_bytes"],
                 "measured_gbs": max(r[i]["measured_gbs"] for r in readings),
                 "values": [r[i]["measured_gbs"] for r in readings]} for i, first in enumerate(readings[0])]

    roofs = [dict(level) for level in cached_limit(threads, "cache roofs", measure_it)]
    roofs.append({"level": "DRAM", "capacity_bytes": None, "measured_gbs": dram_gbs, "values": [dram_gbs]})
    return no_roof_below_the_next(roofs)


def ceilings_by_precision(limits: dict[str, dict]) -> dict[str, float]:
    """Each precision's ceiling from one thread count's limits: fp32 and int8 as measured; fp16 at the
    fp32 ceiling (no x86 runtime here computes fp16 files in fp16 arithmetic: they widen to fp32)."""
    out = {}
    if "fp32 ceiling" in limits:
        out["fp32"] = out["fp16"] = limits["fp32 ceiling"]["gflops"]
    if "int8 ceiling" in limits:
        out["int8"] = limits["int8 ceiling"]["gflops"]
    return out


#: A file of the GPU's limits (``stable_limit(cuda_limits, "gflops")`` as JSON) that --device cuda runs use instead
#: of measuring them again: benchmarks/run_gpu.sh measures them once for its many commands on one dedicated GPU.
GPU_LIMITS_ENV = "CNNEXPORT_GPU_LIMITS"


def saved_gpu_limits() -> dict | None:
    """The GPU's limits from the file ``CNNEXPORT_GPU_LIMITS`` names (None where unset); a file that cannot be
    read as such is an error, not a silent re-measurement."""
    path = os.environ.get(GPU_LIMITS_ENV)
    if not path:
        return None
    try:
        gpu = json.loads(Path(path).read_text())
        float(gpu["gflops"]), float(gpu["gbs"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{GPU_LIMITS_ENV}={path} is not a file of the GPU's limits ({type(exc).__name__}): unset it "
                         "to measure them") from None
    return {**gpu, "from_file": path}


def gpu_ceilings_by_precision(gpu: dict) -> dict[str, float]:
    """Each precision's ceiling on a CUDA device (``cuda_limits``): fp32 at the TF32 tensor cores' matmul rate where
    it was measured (PyTorch's default convolutions compute fp32 in TF32, so a bound at plain fp32's rate would not
    hold for them), fp16 and bf16 at their own; int8 has no GPU row."""
    out = {"fp32": max(gpu["gflops"], gpu.get("gflops_tf32") or 0.0)}
    for precision in ("fp16", "bf16"):
        if gpu.get(f"gflops_{precision}"):
            out[precision] = gpu[f"gflops_{precision}"]
    return out


def bandwidth(threads: int) -> dict:
    """The machine's memory bandwidth (GB/s of a streaming add) with ``threads`` threads, measured
    until stable (``stable_limit``)."""
    return cached_limit(threads, "memory bandwidth", lambda: stable_limit(
        lambda: _limit({"kind": "bandwidth", "threads": threads}, "the memory bandwidth"), "gbs"))


#: What a result keeps of each limit: its readings and, for a compute ceiling, which GEMM set it and every one;
#: for a GPU's, every precision's matmul rate, the bandwidth and the device
LIMIT_FIELDS = ("values", "spread", "stable", "noisy", "set_by", "measurements", "isa_peak", "of_isa_peak",
                "isa_note", "gflops", "gflops_tf32", "gflops_fp16", "gflops_bf16", "gbs", "gpu", "compute_capability",
                "torch", "cuda_runtime", "from_file")


def limits_warnings(limits: dict[int, dict]) -> list[str]:
    """One line per noisy limit: what it read, and what depends on it."""
    out = []
    for threads, by_kind in sorted(limits.items()):
        for what, lim in by_kind.items():
            if lim.get("noisy"):
                unit = ("GOP/s" if what.startswith("int8") else "GFLOP/s") if "gflops" in lim else "GB/s"
                out.append(f"the {what} at {threads} thread(s) read {min(lim['values']):.3g}-{max(lim['values']):.3g} "
                           f"{unit} over {len(lim['values'])} measurements (spread {lim['spread']:.0%}): the machine "
                           "is busy; the rows' fractions of it and roofline figures are marked (limits_noisy)")
    return out


def cuda_limits() -> dict:
    """The CUDA device's matmul GFLOP/s (fp32, TF32, fp16, bf16) and memory bandwidth (GB/s)."""
    return _limit({"kind": "cuda_limits", "threads": 1}, "the GPU's limits")


def _record(job: Job, result: dict) -> None:
    if "error" in result:
        job.error, job.error_type = result["error"], result.get("error_type")
    elif "skipped" in result:
        job.error = f"skipped: {result['skipped']}"
    else:
        job.medians.append(result["median_ms"])
        job.samples_ms.extend(result.get("samples_ms") or [result["median_ms"]])
        if "first_ms" in result:
            job.first_ms.append(result["first_ms"])
        job.result = {k: v for k, v in result.items() if k != "samples_ms"}


def run_jobs(jobs: list[Job], *, rounds: int = 3, timing: dict | None = None,
             on_progress: Callable[[int, int, str], None] | None = None,
             worker: Callable[[dict], dict] = call_worker) -> None:
    """Measure every job ``rounds`` times. Jobs of one runtime (and thread count) share one fresh
    process per round; rounds are interleaved across runtimes, their order rotated each round so no
    runtime always runs first. Fills ``job.medians`` and ``job.result``."""
    if rounds < 1:
        raise UsageError("--rounds must be at least 1")
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.runtime, job.threads, job.device), []).append(job)
    order = list(groups.values())
    total, done = rounds * len(jobs), 0
    for r in range(rounds):
        shift = r % len(order) if order else 0
        for group in order[shift:] + order[:shift]:
            inner = r % len(group)  # the first job in a fresh process runs colder: rotate that too
            live = [job for job in group[inner:] + group[:inner] if job.error is None]
            if live:
                answer = worker({"kind": "many", "threads": live[0].threads,
                                 "jobs": [{**job.worker_job, **(timing or {})} for job in live]})
                results = answer.get("results") or [answer] * len(live)  # a crashed worker fails them all
                for job, result in zip(live, results):
                    _record(job, result)
            done += len(group)
            measured = [job for job in live if job.error is None]
            if on_progress and measured:  # a failed job is reported once, at the end, not as progress
                on_progress(done, total, measured[-1].label + (f" (+{len(measured) - 1} more)"
                                                               if len(measured) > 1 else ""))


def failures(jobs: list[Job]) -> list[str]:
    return [f"{job.label}: {job.error}" for job in jobs if job.error]


def _error_class(job: Job) -> type[CnnexportError]:
    from .. import errors

    cls = getattr(errors, job.error_type or "", None)
    return cls if isinstance(cls, type) and issubclass(cls, CnnexportError) else CnnexportError


def raise_if_all_failed(jobs: list[Job]) -> None:
    """When nothing could be measured, raise the first job's error as its own error class."""
    if jobs and all(job.result is None for job in jobs):
        raise _error_class(jobs[0])(f"nothing could be measured: {jobs[0].error}")


def raise_if_any_failed(jobs: list[Job]) -> None:
    """After the rows are shown: a configuration that failed (not one skipped by design, nor a file ``--runtime
    all`` could not export: ``Job.optional``) makes the run fail, as its own error class, so a script sees it."""
    failed = [job for job in jobs if job.result is None and job.error and not job.error.startswith("skipped")
              and not job.optional]
    if failed:
        raise _error_class(failed[0])(f"{len(failed)} of {len(jobs)} configuration(s) could not be measured (the "
                                      f"others are above), first {failed[0].label}: {failed[0].error}")


def refuse_emulation() -> None:
    """Raise where this process runs under an emulator (scripts/arm_env.sh says so in the environment)."""
    from ..machine import EMULATED_ENV

    if os.environ.get(EMULATED_ENV):
        raise UsageError(f"this process runs under {os.environ[EMULATED_ENV]}: its timings would be the emulator's, "
                         "not the CPU's, so bench and the studies do not run here; verify and eval do (run bench on "
                         "the device itself)")


def measure(jobs: list[Job], *, rounds: int, timing: dict | None, threads: list[int], device: str,
            ceiling: bool = True, baseline: str | None = None,
            on_progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Run ``jobs`` and make their rows: ``{"rows", "ceilings_gflops", "bandwidths_gbs", "machine",
    "failures"}``. The machine's limits (compute ceilings, memory bandwidth and cache roofs; on cuda the device's)
    are measured after the jobs, per thread count, unless ``ceiling`` is False. Refused under an emulator:
    its timings are the emulator's, never a latency of the CPU it emulates."""
    refuse_emulation()
    run_jobs(jobs, rounds=rounds, timing=timing, on_progress=on_progress)
    measured = any(job.result is not None for job in jobs)
    limits: dict[int, dict] = {}
    ceilings: dict[int, float] = {}
    bandwidths: dict[int, float] = {}
    by_precision: dict[int, dict[str, float]] = {}
    roofs: dict[int, list[dict]] = {}
    if ceiling and measured and device == "cpu":
        int8 = any(job.precision == "int8" for job in jobs if job.result is not None)
        limits = {t: {"fp32 ceiling": compute_ceiling(t, "fp32"),
                      **({"int8 ceiling": compute_ceiling(t, "int8")} if int8 else {}),
                      "memory bandwidth": bandwidth(t)} for t in threads}
        by_precision = {t: ceilings_by_precision(lim) for t, lim in limits.items()}
        ceilings = {t: lim["fp32 ceiling"]["gflops"] for t, lim in limits.items()}
        bandwidths = {t: lim["memory bandwidth"]["gbs"] for t, lim in limits.items()}
        roofs = {t: memory_roofs(t, bandwidths[t]) for t in threads}
    elif ceiling and measured and device == "cuda":
        gpu = saved_gpu_limits() or stable_limit(cuda_limits, "gflops")  # the device's, whatever the host threads
        limits = {t: {"GPU's matmul ceiling": gpu} for t in threads}
        by_precision = {t: gpu_ceilings_by_precision(gpu) for t in threads}
        ceilings, bandwidths = {t: by_precision[t]["fp32"] for t in threads}, {t: gpu["gbs"] for t in threads}
    noisy = {t for t, lim in limits.items() if any(v["noisy"] for v in lim.values())}
    machine = cpu_facts()
    rows = rows_from(jobs, machine=machine, ceilings=ceilings, bandwidths=bandwidths, baseline=baseline,
                     noisy_limits=noisy, ceilings_by_precision=by_precision, memory_roofs=roofs)
    return {"rows": rows,
            "ceilings_gflops": ceilings, "ceilings_by_precision": by_precision, "bandwidths_gbs": bandwidths,
            "memory_roofs": roofs,
            "limits": {t: {k: {f: v[f] for f in LIMIT_FIELDS if f in v} for k, v in lim.items()}
                       for t, lim in limits.items()},
            "limits_warnings": limits_warnings(limits) + bound_warnings(rows), "machine": machine,
            "failures": failures(jobs)}

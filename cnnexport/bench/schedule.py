"""Running jobs: each measurement in its own worker process, rounds interleaved across runtimes;
the machine's sgemm ceiling; and ``measure``, which the bench command and the study share (jobs
-> rows with the ceiling and the machine facts). No torch."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Callable

from ..errors import CnnexportError, UsageError
from ..machine import cpu_facts
from .jobs import Job
from .rows import rows_from
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


def _limit(spec: dict, what: str) -> dict:
    result = call_worker(spec)
    if "error" in result:
        raise CnnexportError(f"{what} could not be measured: {result['error']}")
    return result


def sgemm_ceiling(threads: int, n: int = 2048) -> dict:
    """The machine's float32 ceiling (GFLOP/s of a large numpy sgemm) with ``threads`` threads."""
    return _limit({"kind": "sgemm", "threads": threads, "n": n}, "the sgemm ceiling")


def bandwidth(threads: int) -> dict:
    """The machine's memory bandwidth (GB/s of a streaming add) with ``threads`` threads."""
    return _limit({"kind": "bandwidth", "threads": threads}, "the memory bandwidth")


def cuda_limits() -> dict:
    """The CUDA device's float32 matmul GFLOP/s and memory bandwidth (GB/s)."""
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
            if on_progress:
                on_progress(done, total, group[-1].label)


def failures(jobs: list[Job]) -> list[str]:
    return [f"{job.label}: {job.error}" for job in jobs if job.error]


def raise_if_all_failed(jobs: list[Job]) -> None:
    """When nothing could be measured, raise the first job's error as its own error class."""
    if jobs and all(job.result is None for job in jobs):
        from .. import errors

        first = jobs[0]
        cls = getattr(errors, first.error_type or "", None)
        if not (isinstance(cls, type) and issubclass(cls, CnnexportError)):
            cls = CnnexportError
        raise cls(f"nothing could be measured: {first.error}")


def measure(jobs: list[Job], *, rounds: int, timing: dict | None, threads: list[int], device: str,
            ceiling: bool = True, baseline: str | None = None,
            on_progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Run ``jobs`` and make their rows: ``{"rows", "ceilings_gflops", "bandwidths_gbs", "machine",
    "failures"}``. The machine's limits (sgemm ceiling and memory bandwidth; on cuda the device's)
    are measured after the jobs, per thread count, unless ``ceiling`` is False."""
    run_jobs(jobs, rounds=rounds, timing=timing, on_progress=on_progress)
    measured = any(job.result is not None for job in jobs)
    ceilings: dict[int, float] = {}
    bandwidths: dict[int, float] = {}
    if ceiling and measured and device == "cpu":
        ceilings = {t: sgemm_ceiling(t)["gflops"] for t in threads}
        bandwidths = {t: bandwidth(t)["gbs"] for t in threads}
    elif ceiling and measured and device == "cuda":
        limits = cuda_limits()  # the device's, whatever the host threads
        ceilings = {t: limits["gflops"] for t in threads}
        bandwidths = {t: limits["gbs"] for t in threads}
    machine = cpu_facts()
    return {"rows": rows_from(jobs, machine=machine, ceilings=ceilings, bandwidths=bandwidths, baseline=baseline),
            "ceilings_gflops": ceilings, "bandwidths_gbs": bandwidths, "machine": machine, "failures": failures(jobs)}

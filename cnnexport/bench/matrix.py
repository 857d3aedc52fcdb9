"""The benchmark matrix: jobs (artifact or PyTorch model x batch x threads) measured in rounds,
interleaved, each measurement in its own process; rows with the protocol's statistics, the
spread across rounds, achieved GMAC/s, the fraction of the machine's sgemm ceiling and the
speed-up over a baseline. No torch (the PyTorch baseline runs in a worker that imports it).
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import CnnexportError, MissingDependencyError, UsageError
from .latency import summarize
from .worker import worker_env

PRECISIONS = ("fp32", "int8")
#: Fields every JSON row carries (machine facts included), in table order.
ROW_FIELDS = ("model", "artifact", "runtime", "version", "precision", "device", "batch", "threads", "first_ms",
              "runs", "median_ms", "p90_ms", "p99_ms", "min_ms", "mean_ms", "std_ms", "images_per_s", "macs",
              "gmacs_per_s", "ceiling_gflops", "ceiling_fraction", "baseline", "speedup", "int8_speedup", "rounds",
              "round_medians_ms", "statistics", "spread", "machine", "gpu")


def precision_of(path: str | Path) -> str:
    """fp32 or int8, from a cnnexport file name (``<model>.int8.onnx``, ``<model>.int8-auto.onnx``)."""
    return "int8" if re.search(r"\.int8[.-]", Path(path).name) else "fp32"


@dataclass
class Job:
    """One configuration to measure; ``spec`` is the worker's job without the timing options."""

    model: str
    runtime: str
    precision: str
    batch: int
    threads: int
    spec: dict
    device: str = "cpu"
    macs: float | None = None  # per image
    medians: list[float] = field(default_factory=list)  # one per round: the spread between rounds
    samples_ms: list[float] = field(default_factory=list)  # every round's timed runs, pooled
    first_ms: list[float] = field(default_factory=list)  # each round's first (cold) run
    result: dict | None = None  # the latest round's answer (runtime, version, device facts)
    error: str | None = None
    error_type: str | None = None

    @property
    def label(self) -> str:
        name = Path(self.spec["path"]).name if "path" in self.spec else self.model
        return f"{name} {self.runtime} b{self.batch} t{self.threads}"


def artifact_job(path: str | Path, runtime: str, batch: int, threads: int, *, model: str | None = None,
                 device: str = "cpu", macs: float | None = None, input_size: tuple | None = None) -> Job:
    """``input_size`` (C or None, H, W) fills what the file leaves dynamic."""
    path = Path(path)
    spec = {"kind": "artifact", "path": str(path.resolve()), "runtime": runtime, "batch": batch,
            "threads": threads, "device": device}
    if input_size:
        spec["input_size"] = list(input_size)
    return Job(model or path.name.split(".")[0], runtime, precision_of(path), batch, threads, spec, device=device,
               macs=macs)


def torch_job(model: str, input_shape: tuple[int, ...], batch: int, threads: int, *, device: str = "cpu",
              cuda_graph: bool = False, macs: float | None = None, model_kwargs: dict | None = None) -> Job:
    return Job(model, "torch-cudagraph" if cuda_graph else "torch", "fp32", batch, threads,
               {"kind": "torch", "model": model, "input_shape": list(input_shape), "batch": batch,
                "threads": threads, "device": device, "cuda_graph": cuda_graph, "model_kwargs": model_kwargs or {}},
               device=device, macs=macs)


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


def sgemm_ceiling(threads: int, n: int = 2048) -> dict:
    """The machine's float32 ceiling (GFLOP/s of a large numpy sgemm) with ``threads`` threads."""
    result = call_worker({"kind": "sgemm", "threads": threads, "n": n})
    if "error" in result:
        raise CnnexportError(f"the sgemm ceiling could not be measured: {result['error']}")
    return result


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
                                 "jobs": [{**job.spec, **(timing or {})} for job in live]})
                results = answer.get("results") or [answer] * len(live)  # a crashed worker fails them all
                for job, result in zip(live, results):
                    _record(job, result)
            done += len(group)
            if on_progress:
                on_progress(done, total, group[-1].label)


def spread(medians: list[float]) -> float:
    """Relative spread of round medians: (max - min) / median."""
    return (max(medians) - min(medians)) / statistics.median(medians) if medians else 0.0


def rows_from(jobs: list[Job], *, machine: dict, ceilings: dict[int, float] | None = None,
              baseline: str | None = None) -> list[dict]:
    """One row per measured job, with derived fields; speed-up is against the ``baseline``
    runtime's fp32 row at the same batch, threads and device. The distribution figures (median,
    p90, p99, min, mean, std, runs) are of every round's timed runs pooled; the round medians give
    the spread; ``first_ms`` is the median of the rounds' first (cold) runs."""
    rows = []
    for job in jobs:
        if job.result is None:
            continue
        res = job.result
        stats = summarize(job.samples_ms)
        median = stats["median_ms"]
        gmacs = job.macs * job.batch / (median / 1e3) / 1e9 if job.macs else None
        ceiling = (ceilings or {}).get(job.threads)
        row = {
            "model": job.model, "artifact": Path(job.spec["path"]).name if "path" in job.spec else None,
            "runtime": res.get("runtime", job.runtime), "version": res.get("version"), "precision": job.precision,
            "device": job.device, "batch": job.batch, "threads": job.threads,
            "first_ms": statistics.median(job.first_ms) if job.first_ms else None, **stats,
            "images_per_s": job.batch / (median / 1e3), "macs": job.macs,
            "gmacs_per_s": gmacs, "ceiling_gflops": ceiling,
            "ceiling_fraction": 2 * gmacs / ceiling if gmacs and ceiling else None,
            "baseline": baseline, "speedup": None, "int8_speedup": None, "rounds": len(job.medians),
            "round_medians_ms": job.medians, "statistics": "pooled",
            "spread": spread(job.medians), "machine": machine, "gpu": res.get("gpu"),
        }
        rows.append(row)
    key = lambda r: (r["model"], r["runtime"], r["batch"], r["threads"], r["device"])  # noqa: E731
    fp32 = {key(r): r for r in rows if r["precision"] == "fp32"}
    for row in rows:
        if row["precision"] == "int8" and key(row) in fp32:
            row["int8_speedup"] = fp32[key(row)]["median_ms"] / row["median_ms"]
    if baseline:
        for row in rows:
            base = [b for b in rows if b["runtime"] == baseline and b["precision"] == "fp32" and b["model"] == row["model"]
                    and (b["batch"], b["threads"], b["device"]) == (row["batch"], row["threads"], row["device"])]
            if base:
                row["speedup"] = base[0]["median_ms"] / row["median_ms"]
    return rows


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


def faster_beyond_noise(a_ms: list[float], b_ms: list[float]) -> bool:
    """True when round medians ``a_ms`` are all below ``b_ms``: the two ranges do not overlap."""
    return max(a_ms) < min(b_ms)


def row_faster_beyond_noise(a: dict, b: dict) -> bool:
    """True when row ``a`` is faster than row ``b`` beyond the spread of their rounds."""
    return faster_beyond_noise(a["round_medians_ms"], b["round_medians_ms"])


def pick(rows: list[dict]) -> list[dict]:
    """The fastest row per (model, precision, batch, threads), with the runner-up as evidence and
    whether the ranking holds beyond the spread of the rounds."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["precision"], row["batch"], row["threads"], row["device"]), []).append(row)
    picks = []
    for (model, precision, batch, threads, device), group in sorted(groups.items(), key=lambda kv: str(kv[0])):
        group = sorted(group, key=lambda r: r["median_ms"])
        best, runner = group[0], group[1] if len(group) > 1 else None
        picks.append({
            "model": model, "precision": precision, "batch": batch, "threads": threads, "device": device,
            "artifact": best["artifact"] or best["runtime"], "runtime": best["runtime"],
            "median_ms": best["median_ms"], "round_medians_ms": best["round_medians_ms"],
            "runner_up": (runner["artifact"] or runner["runtime"]) if runner else None,
            "runner_up_median_ms": runner["median_ms"] if runner else None,
            "margin": runner["median_ms"] / best["median_ms"] if runner else None,
            # None: a single round measures no spread, so the ranking is unconfirmed.
            "beyond_noise": (row_faster_beyond_noise(best, runner) if best["rounds"] > 1 and runner["rounds"] > 1
                             else None)
            if runner else True,
        })
    return picks


def check_device(device: str) -> None:
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device '{device}'; choose cpu or cuda")
    if device == "cuda":
        result = call_worker({"kind": "cuda_probe", "threads": 1})
        if result.get("error") or not result.get("cuda"):
            raise MissingDependencyError("--device cuda: no CUDA device is visible to PyTorch here (nvidia-smi, "
                                         "and a CUDA build of torch, are needed)")


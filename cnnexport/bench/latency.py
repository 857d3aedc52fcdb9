"""The latency protocol (DESIGN.md): warm-up runs not counted, the first run reported on its own,
at least ``min_runs`` timed runs and at least ``min_time_s`` of timing (a slow model may stop at
``max_time_s`` once it has ``floor_runs``), then median, p90, p99, min, mean and std. numpy only; the
timer is injectable so the statistics can be tested. ``summarize`` computes the same statistics on
any set of timed runs, e.g. every round's runs pooled."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Timing:
    first_ms: float
    runs: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    mean_ms: float
    std_ms: float
    total_s: float
    samples_ms: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(samples_ms) -> dict:
    """runs, median, p90, p99, min, mean and std (ms) of one set of timed runs: every figure
    describes the same runs, so min <= median <= p90 <= p99 and min <= mean <= max hold."""
    ms = np.asarray(samples_ms, dtype=np.float64)
    if ms.size == 0:
        raise ValueError("no timed runs to summarize")
    return {"runs": int(ms.size), "median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "min_ms": float(ms.min()),
            # clipped: a float sum can land a rounding error outside [min, max] when all runs are equal
            "mean_ms": float(np.clip(ms.mean(), ms.min(), ms.max())),
            "std_ms": float(ms.std(ddof=1)) if ms.size > 1 else 0.0}


def measure(fn: Callable[[], object], *, warmup: int = 10, min_runs: int = 50, min_time_s: float = 1.0,
            max_runs: int = 100_000, max_time_s: float | None = None, floor_runs: int = 10,
            timer: Callable[[], float] = time.perf_counter) -> Timing:
    """Time ``fn``: the first call alone, ``warmup`` uncounted calls, then timed calls until both
    ``min_runs`` and ``min_time_s`` are reached (or ``max_runs``; or ``max_time_s`` of timed calls
    once there are ``floor_runs``, so a 1-second model does not take a minute per row)."""
    start = timer()
    fn()
    first = timer() - start
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    began = timer()
    while len(samples) < max_runs and (len(samples) < min_runs or sum(samples) < min_time_s):
        if max_time_s is not None and len(samples) >= floor_runs and sum(samples) >= max_time_s:
            break
        t0 = timer()
        fn()
        samples.append(timer() - t0)
    ms = [round(t * 1e3, 6) for t in samples]  # ns resolution keeps a worker's JSON answer small
    return Timing(first_ms=first * 1e3, **summarize(ms), total_s=timer() - began, samples_ms=ms)

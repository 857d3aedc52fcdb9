"""The machine's memory bandwidth, measured beside the compute ceilings: a STREAM-style add
(``a = b + c``) over float32 buffers much larger than the last-level cache, split across ``threads``
threads (numpy releases the GIL inside the loop). Counted as STREAM counts it: 3 arrays of bytes per
pass (two read, one written). numpy only; the timer is injectable so the arithmetic can be tested."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

MIN_MIB, MAX_MIB = 256, 2048  # per array


def buffer_mib() -> int:
    """MiB per array: the three arrays together at least 4x the last-level cache (some server parts
    report hundreds of MiB), at least 256 MiB each."""
    llc = last_level_cache_bytes() or 0
    return int(min(MAX_MIB, max(MIN_MIB, -(-4 * llc // (3 << 20)))))


def last_level_cache_bytes() -> int | None:
    """The largest CPU cache Linux reports (None where it does not)."""
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = f.read_text().strip().upper()
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        try:
            sizes.append(int(text.rstrip("KMG")) * scale)
        except ValueError:
            continue
    return max(sizes) if sizes else None


def stream_bandwidth(threads: int = 1, mib: int | None = None, runs: int = 5, warmup: int = 1,
                     timer: Callable[[], float] = time.perf_counter) -> dict:
    """GB/s (1e9 bytes) of ``a = b + c`` over three ``mib``-MiB float32 arrays on ``threads`` threads:
    the median pass and the best one, with the bytes counted per pass. ``mib`` defaults to
    ``buffer_mib()``."""
    mib = mib or buffer_mib()
    if threads < 1 or mib < 1 or runs < 1:
        raise ValueError("threads, mib and runs must be positive")
    n = mib * (1 << 20) // 4
    a, b, c = np.empty(n, np.float32), np.ones(n, np.float32), np.ones(n, np.float32)
    a.fill(0)  # touch every page before timing
    bounds = np.linspace(0, n, threads + 1).astype(int)
    chunks = [(a[i:j], b[i:j], c[i:j]) for i, j in zip(bounds[:-1], bounds[1:])]

    if threads == 1:
        def one_pass():
            np.add(b, c, out=a)
    else:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(threads)

        def one_pass():
            list(pool.map(lambda ch: np.add(ch[1], ch[2], out=ch[0]), chunks))
    try:
        for _ in range(warmup):
            one_pass()
        seconds = []
        for _ in range(runs):
            t0 = timer()
            one_pass()
            seconds.append(timer() - t0)
    finally:
        if threads > 1:
            pool.shutdown()
    nbytes = 3 * n * 4
    med = float(np.median(seconds))
    return {"kernel": "stream add (a = b + c)", "threads": threads, "bytes_per_pass": nbytes, "runs": runs,
            "gbs": nbytes / med / 1e9 if med > 0 else None,
            "best_gbs": nbytes / min(seconds) / 1e9 if min(seconds) > 0 else None,
            "llc_bytes": last_level_cache_bytes()}

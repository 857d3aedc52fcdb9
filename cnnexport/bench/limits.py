"""The machine's memory bandwidth, measured beside the compute ceilings: a STREAM-style add
(``a = b + c``) over float32 buffers much larger than the last-level cache, split across ``threads``
threads (numpy releases the GIL inside the loop). Counted as STREAM counts it: 3 arrays of bytes per
pass (two read, one written). numpy only; the timer is injectable so the arithmetic can be tested."""

from __future__ import annotations

import time
from dataclasses import dataclass
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


# --- memory roofs per cache level (the hierarchical roofline) ---------------------------------------

@dataclass(frozen=True)
class CacheLevel:
    """A data (or unified) cache as Linux reports it: ``size_bytes`` per instance, shared by
    ``shared_cpus`` logical CPUs (1: private to a core)."""

    name: str
    size_bytes: int
    shared_cpus: int

    def capacity(self, threads: int) -> int:
        """Bytes ``threads`` threads hold at this level: a private cache per thread, a shared one once."""
        return self.size_bytes * (max(1, -(-threads // self.shared_cpus)))


def _size(text: str) -> int | None:
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    try:
        return int(text.rstrip("KMG")) * scale
    except ValueError:
        return None


def _cpu_count(cpu_list: str) -> int:
    """``0-1,4`` -> 3."""
    n = 0
    for part in cpu_list.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            n += int(hi or lo) - int(lo) + 1
    return max(n, 1)


def cache_levels(root: str | Path = "/sys/devices/system/cpu/cpu0/cache") -> list[CacheLevel]:
    """cpu0's data and unified caches, smallest level first (empty where Linux does not say)."""
    out = []
    for index in sorted(Path(root).glob("index*")):
        try:
            level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
            size = _size((index / "size").read_text())
            shared = _cpu_count((index / "shared_cpu_list").read_text())
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified") and size:
            out.append(CacheLevel(f"L{level}", size, shared))
    return sorted(out, key=lambda c: c.name)


def copy_bandwidth(threads: int, bytes_per_thread: int, min_time_s: float = 0.05, runs: int = 5,
                   timer: Callable[[], float] = time.perf_counter) -> float:
    """GB/s of a memcpy (``np.copyto``) between two buffers of ``bytes_per_thread`` / 2 per thread, each
    thread copying its own pair over and over (so the pair stays in the cache it fits): the best of
    ``runs`` passes of at least ``min_time_s``, counting the bytes read and written."""
    n = max(16, bytes_per_thread // 8)  # float32 elements per buffer: two buffers of 4n bytes
    pairs = [(np.ones(n, np.float32), np.zeros(n, np.float32)) for _ in range(threads)]
    copies = 1
    src, dst = pairs[0]
    while True:  # copies per pass so that one pass takes about min_time_s on one thread
        t0 = timer()
        for _ in range(copies):
            np.copyto(dst, src)
        dt = timer() - t0
        if dt >= min_time_s / 4 or copies >= 1 << 24:
            break
        copies *= 4

    def work(pair):
        a, b = pair
        for _ in range(copies):
            np.copyto(b, a)

    from concurrent.futures import ThreadPoolExecutor

    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, pairs))  # warm: pages touched, lines in cache
        for _ in range(runs):
            t0 = timer()
            list(pool.map(work, pairs))
            best = min(best, timer() - t0)
    return threads * copies * 2 * n * 4 / best / 1e9 if best > 0 else 0.0


def memory_roofs(threads: int, levels: list[CacheLevel] | None = None, dram_gbs: float | None = None,
                 measure: Callable[[int, int], float] | None = None) -> list[dict]:
    """A memory roof per cache level and one for DRAM: ``{"level", "capacity_bytes", "gbs", "measured_gbs"}``,
    smallest first. Each cache level is measured by copies whose working set is half of what the
    threads hold there (``measure(threads, bytes_per_thread)``, default ``copy_bandwidth``); DRAM's is
    ``dram_gbs`` (the streaming add). A level's roof is never below a larger level's: data that fits
    a cache also fits every cache behind it, so a lower reading (numpy's call overhead on an L1-sized
    copy) is an artefact of the probe, not of the cache."""
    levels = cache_levels() if levels is None else levels
    measure = measure or copy_bandwidth
    roofs = []
    for level in levels:
        capacity = level.capacity(threads)
        gbs = measure(threads, max(1024, capacity // 2 // threads))
        roofs.append({"level": level.name, "capacity_bytes": capacity, "measured_gbs": gbs, "gbs": gbs})
    if dram_gbs:
        roofs.append({"level": "DRAM", "capacity_bytes": None, "measured_gbs": dram_gbs, "gbs": dram_gbs})
    return no_roof_below_the_next(roofs)


def no_roof_below_the_next(roofs: list[dict]) -> list[dict]:
    """Set each roof's ``gbs`` to its ``measured_gbs``, raised to the next larger level's roof where that is
    higher (smallest level first): what fits a cache fits every cache behind it."""
    floor = 0.0
    for roof in reversed(roofs):
        roof["gbs"] = floor = max(roof["measured_gbs"], floor)
    return roofs

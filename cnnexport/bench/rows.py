"""Result rows from measured jobs: the protocol's statistics over every round's runs pooled, the
spread across rounds, achieved GMAC/s, the fraction of the compute ceiling, the roofline bound from
the ceiling and the memory bandwidth, speed-ups; paired comparisons of two configurations round by
round; and the pick of the fastest artifact with its evidence. No torch."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from ..exporter.formats import artifact_files
from ..runtimes.cuda import GPU_FACTS
from .jobs import Job
from .latency import summarize

#: The measurement protocol rows follow (warm-up, timed runs, interleaved rounds, round medians).
#: Rows of another version are not mixed with these in a report; rows from before the field was
#: recorded followed version 1.
PROTOCOL = 1

#: Fields every JSON row carries (machine facts included), in table order.
ROW_FIELDS = ("model", "artifact", "file_mb", "runtime", "version", "precision", "device", "batch", "calls_per_batch",
              "threads", "first_ms", "runs", "median_ms", "p90_ms", "p99_ms", "min_ms", "mean_ms", "std_ms",
              "images_per_s", "macs", "gmacs_per_s", "ceiling_gflops", "ceiling_fraction", "bandwidth_gbs",
              "memory_access_bytes", "roofline_ms", "of_roofline", "roofline_dram_ms", "beats_bound", "baseline",
              "speedup", "int8_speedup", "rounds", "round_medians_ms", "statistics", "spread", "limits_noisy",
              "protocol", "plain", "machine", "gpu", "gpu_facts")


def bound_warnings(rows: list[dict]) -> list[str]:
    """One line naming the rows that ran faster than their roofline bound beyond their spread."""
    beaten = [r for r in rows if r.get("beats_bound")]
    if not beaten:
        return []
    return [f"{len(beaten)} of {sum(r.get('roofline_ms') is not None for r in rows)} row(s) ran faster than their "
            "roofline bound beyond their round spread, so a limit under it is too low: " + ", ".join(
                f"{r['artifact'] or r['model']} on {r['runtime']} at batch {r['batch']} ({r['of_roofline']:.0%})"
                for r in beaten[:5]) + ("" if len(beaten) <= 5 else ", ...")
            + "; profile --roofline --per-layer names the layer groups (see the level each is charged at)"]


def spread(medians: list[float]) -> float:
    """Relative spread of round medians: (max - min) / median."""
    return (max(medians) - min(medians)) / statistics.median(medians) if medians else 0.0


def bound_fields(costs, *, runtime: str, device: str, batch: int, precision: str, ceiling_gflops: float | None,
                 bandwidth_gbs: float | None, memory_roofs: list[dict], median_ms: float,
                 round_medians_ms: list[float]) -> dict:
    """A row's roofline columns from its model's layer costs (``roofline.ModelCosts``) and the limits
    measured in its run: ``memory_access_bytes``, ``roofline_ms``, ``of_roofline``, ``roofline_dram_ms``
    and ``beats_bound``; empty (None) without the costs, the ceiling or the bandwidth. A runtime of
    ``runtimes.WINOGRAD_RUNTIMES`` on the CPU is charged Winograd's multiplications for its dense 3x3
    stride-1 convolutions."""
    from ..profile.roofline import memory_roofs_from
    from ..runtimes import WINOGRAD_RUNTIMES

    roofline = costs.roofline(batch=batch, precision=precision, ceiling_gflops=ceiling_gflops,
                              bandwidth_gbs=bandwidth_gbs, roofs=memory_roofs_from(memory_roofs or []),
                              winograd=device == "cpu" and runtime in WINOGRAD_RUNTIMES) \
        if costs and ceiling_gflops and bandwidth_gbs else None
    bound = roofline.bound_ms if roofline else None
    return {"memory_access_bytes": costs.memory_bytes(batch, precision) if costs else None,
            "roofline_ms": bound, "of_roofline": bound / median_ms if bound else None,
            "roofline_dram_ms": roofline.bound_dram_ms if roofline else None,
            "beats_bound": bound / median_ms > 1 + spread(round_medians_ms) if bound else None}


def _megabytes(path: str) -> float | None:
    """The size on disk of the artifact ``path`` loads, all its files (an IR's .xml and .bin), in MB."""
    files = artifact_files(path)
    return sum(f.stat().st_size for f in files) / 1e6 if files else None


def rows_from(jobs: list[Job], *, machine: dict, ceilings: dict[int, float] | None = None,
              bandwidths: dict[int, float] | None = None, baseline: str | None = None,
              noisy_limits: set[int] = frozenset(),
              ceilings_by_precision: dict[int, dict[str, float]] | None = None,
              memory_roofs: dict[int, list[dict]] | None = None) -> list[dict]:
    """One row per measured job, with derived fields; speed-up is against the ``baseline``
    runtime's fp32 row at the same batch, threads and device. The distribution figures (median,
    p90, p99, min, mean, std, runs) are of every round's timed runs pooled; the round medians give
    the spread; ``first_ms`` is the median of the rounds' first (cold) runs. ``roofline_ms`` (and
    ``of_roofline``, bound / measured) need the job's layer costs, the ceiling of the row's precision
    (``ceilings_by_precision``; ``ceilings`` holds the fp32 one) and the bandwidth; without any of them
    they stay empty, and so does ``ceiling_fraction`` of an int8 or fp16 row with no ceiling of its own
    (never the fp32 one). ``limits_noisy``: the limits at the row's thread count (``noisy_limits``)
    varied too much to trust the fractions of them. With ``memory_roofs`` (per thread count, from
    ``schedule.memory_roofs``) the bound charges each layer at the cache level that holds it;
    ``roofline_dram_ms`` is the same bound with every byte at DRAM bandwidth. ``beats_bound``: the row
    ran faster than its bound by more than its own round spread (the bound's model broke)."""
    rows = []
    for job in jobs:
        if job.result is None:
            continue
        res = job.result
        stats = summarize(job.samples_ms)
        median = stats["median_ms"]
        gmacs = job.macs * job.batch / (median / 1e3) / 1e9 if job.macs else None
        own = (ceilings_by_precision or {}).get(job.threads, {})
        ceiling = own.get(job.precision) or ((ceilings or {}).get(job.threads) if job.precision == "fp32" else None)
        bandwidth = (bandwidths or {}).get(job.threads)
        row = {
            "model": job.model, "artifact": Path(job.worker_job["path"]).name if "path" in job.worker_job else None,
            "file_mb": _megabytes(job.worker_job["path"]) if "path" in job.worker_job else None,
            "runtime": res.get("runtime", job.runtime), "version": res.get("version"), "precision": job.precision,
            "device": job.device, "batch": job.batch, "calls_per_batch": res.get("calls_per_batch", 1),
            "threads": job.threads,
            "first_ms": statistics.median(job.first_ms) if job.first_ms else None, **stats,
            "images_per_s": job.batch / (median / 1e3), "macs": job.macs,
            "gmacs_per_s": gmacs, "ceiling_gflops": ceiling,
            "ceiling_fraction": 2 * gmacs / ceiling if gmacs and ceiling else None,
            "bandwidth_gbs": bandwidth,
            **bound_fields(job.costs, runtime=job.runtime, device=job.device, batch=job.batch,
                           precision=job.precision, ceiling_gflops=ceiling, bandwidth_gbs=bandwidth,
                           memory_roofs=(memory_roofs or {}).get(job.threads, []), median_ms=median,
                           round_medians_ms=job.medians),
            "baseline": baseline, "speedup": None, "int8_speedup": None, "rounds": len(job.medians),
            "round_medians_ms": job.medians, "statistics": "pooled",
            "spread": spread(job.medians), "limits_noisy": job.threads in noisy_limits if ceiling else None,
            "protocol": PROTOCOL, "plain": job.plain, "machine": machine,
            "gpu": res.get("gpu"),
            "gpu_facts": {k: res[k] for k in GPU_FACTS if res.get(k)} or None,
        }
        if res.get("compile_mode"):  # torch.compile's mode: what "PyTorch at its best" was
            row["compile_mode"] = res["compile_mode"]
        rows.append(row)
    key = lambda r: (r["model"], r["runtime"], r["batch"], r["threads"], r["device"])  # noqa: E731
    fp32 = {key(r): r for r in rows if r["precision"] == "fp32" and not r["plain"]}
    for row in rows:
        if row["precision"] == "int8" and key(row) in fp32:
            row["int8_speedup"] = fp32[key(row)]["median_ms"] / row["median_ms"]
    if baseline:
        for row in rows:
            base = [b for b in rows if b["runtime"] == baseline and b["precision"] == "fp32" and b["model"] == row["model"]
                    and not b["plain"]
                    and (b["batch"], b["threads"], b["device"]) == (row["batch"], row["threads"], row["device"])]
            if base:
                row["speedup"] = base[0]["median_ms"] / row["median_ms"]
    return rows


def paired(a_ms: list[float], b_ms: list[float]) -> dict:
    """``a`` against ``b`` round by round (rounds are interleaved, so round i of each ran adjacent in
    time and a drift between rounds cancels in their ratio): the median, lowest and highest of the
    per-round ratios a/b, how many rounds put ``a`` slower and how many faster, and the call
    (:func:`call_for`: ``"slower"``, ``"faster"`` or None, a tie within the rounds' noise).
    ``p_value``: how often two configurations of equal speed split their rounds at least this
    unevenly (the two-sided sign test)."""
    ratios = [a / b for a, b in zip(a_ms, b_ms) if a > 0 and b > 0]
    if not ratios:
        return {"rounds": 0, "median_ratio": None, "min_ratio": None, "max_ratio": None, "slower_rounds": 0,
                "faster_rounds": 0, "call": None, "p_value": None}
    n, slower, faster = len(ratios), sum(r > 1 for r in ratios), sum(r < 1 for r in ratios)
    call = call_for(slower, faster)
    return {"rounds": n, "median_ratio": statistics.median(ratios), "min_ratio": min(ratios),
            "max_ratio": max(ratios), "slower_rounds": slower, "faster_rounds": faster, "call": call,
            "p_value": sign_test(slower, faster)}


#: The paired test calls a difference when its split of rounds is no likelier by chance than 3 agreeing
#: rounds of 3 (the default ``--rounds``): the two-sided sign test's p at most this.
CALL_P = 0.25
#: The rule in words, for reports and help texts.
CALL_RULE = ("a split of rounds that equal speeds would show by chance at most one time in four (sign test p <= "
             "0.25, as 3 of 3): every round of 3 to 5, all but one of 6 to 8, all but two of 9 or 10")


def call_for(slower: int, faster: int) -> str | None:
    """``"slower"`` or ``"faster"`` when the rounds split that way no more likely by chance than
    :data:`CALL_P` (two rounds never suffice: their best split has p 0.5); otherwise None, a tie.
    A rule by the sign test's p keeps the chance of a false call the same at any number of rounds,
    where "all but one of at least 5" called 4 of 5 (p 0.375)."""
    if slower == faster or sign_test(slower, faster) > CALL_P:
        return None
    return "slower" if slower > faster else "faster"


def chance_of_call(rounds: int) -> float:
    """How often :func:`call_for` calls one given direction for two configurations of equal speed."""
    return sum(math.comb(rounds, k) for k in range(rounds + 1) if call_for(k, rounds - k) == "slower") / 2 ** rounds


def uncallable(rounds: int, what: str) -> list[str]:
    """A line for results whose ``rounds`` are too few for the paired test to call anything (``what``: the
    comparisons left tied), or none."""
    if chance_of_call(rounds) > 0:
        return []
    return [f"with {rounds} round{'s' if rounds > 1 else ''} the paired test calls no pair (2 rounds agree by "
            f"chance one time in two): {what}; use --rounds 3 or more"]


def ranking_holds(test: dict) -> bool | None:
    """Whether :func:`paired`'s ``test`` of the faster against the slower calls it faster; None where its
    rounds are too few for any call (1 or 2), so the ranking is unconfirmed rather than a tie."""
    return test["call"] == "faster" if chance_of_call(test["rounds"]) > 0 else None


def sign_test(up: int, down: int) -> float:
    """Two-sided sign test: the chance of a split at least as uneven as ``up`` against ``down`` when
    either is equally likely in every round (ties left out)."""
    n, k = up + down, max(up, down)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def pick(rows: list[dict]) -> list[dict]:
    """The fastest row per (model, precision, batch, device), over every runtime and thread count
    measured (``threads`` says which count won: the setting a deployment needs beside the file), with
    the runner-up as evidence and whether the ranking holds by the paired test (``paired``, called by
    :func:`call_for`)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if not row.get("plain"):  # the pick is among cnnexport's files; plain files are its yardstick
            groups.setdefault((row["model"], row["precision"], row["batch"], row["device"]), []).append(row)
    picks = []
    for (model, precision, batch, device), group in sorted(groups.items(), key=lambda kv: str(kv[0])):
        group = sorted(group, key=lambda r: r["median_ms"])
        best, runner = group[0], group[1] if len(group) > 1 else None
        test = paired(best["round_medians_ms"], runner["round_medians_ms"]) if runner else None
        picks.append({
            "model": model, "precision": precision, "batch": batch, "threads": best["threads"], "device": device,
            "thread_counts": sorted({r["threads"] for r in group}),
            "artifact": best["artifact"] or best["runtime"], "runtime": best["runtime"],
            "median_ms": best["median_ms"], "round_medians_ms": best["round_medians_ms"],
            "runner_up": (runner["artifact"] or runner["runtime"]) if runner else None,
            "runner_up_threads": runner["threads"] if runner else None,
            "runner_up_median_ms": runner["median_ms"] if runner else None,
            "margin": runner["median_ms"] / best["median_ms"] if runner else None,
            "paired": test,
            "beyond_noise": ranking_holds(test) if runner else True,
            "top1": best.get("top1"),  # bench --data: the pick's accuracy beside its speed
        })
    return picks


def against_plain(rows: list[dict]) -> list[dict]:
    """Each cnnexport row beside the plain-tool row of the same model, runtime, precision, batch,
    threads and device (``bench --plain``): the paired test of ours against plain, round by round
    (``median_ratio`` < 1: ours is faster), and its call."""
    out = []
    key = lambda r: (r["model"], r["runtime"], r["precision"], r["batch"], r["threads"], r["device"])  # noqa: E731
    plain = {key(r): r for r in rows if r.get("plain")}
    for ours in rows:
        other = plain.get(key(ours)) if not ours.get("plain") else None
        if other is None:
            continue
        test = paired(ours["round_medians_ms"], other["round_medians_ms"])
        out.append({"model": ours["model"], "runtime": ours["runtime"], "precision": ours["precision"],
                    "batch": ours["batch"], "threads": ours["threads"], "artifact": ours["artifact"],
                    "plain_artifact": other["artifact"], "median_ms": ours["median_ms"],
                    "plain_median_ms": other["median_ms"], "paired": test,
                    "verdict": test["call"] or "tie"})
    return out

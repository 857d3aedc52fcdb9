"""REPORT.md: graph-level changes, each measured (`graph_changes.py`)."""

from __future__ import annotations


from .common import fmt, table, measured_on


def graph_changes_section(gc: dict | None) -> list[str]:
    if not gc:
        return []
    out = ["## Graph-level changes, each measured", "",
           f"`benchmarks/graph_changes.py`, batch 1, {gc['threads']} threads, {gc['rounds']} rounds{measured_on(gc)}.",
           ""]
    paired_test = all("paired" in c for c in gc["changes"])
    out += table(["change", "model", "runtime", "before ms", "after ms", "speed-up",
                  "called by the paired test" if paired_test else "beyond the spread of round medians"],
                 [[c["change"], c["model"], c["runtime"], fmt(c["before"]["median_ms"]), fmt(c["after"]["median_ms"]),
                   f"{c['speedup']:.2f}x", "yes" if c["beyond_spread"] else "no"] for c in gc["changes"]])
    return out + [""]

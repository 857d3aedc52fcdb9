"""REPORT.md: graph-level changes, each measured (`graph_changes.py`)."""

from __future__ import annotations


from .common import fmt, table, measured_on, recalled


#: What the export does with each change, by its measured call (kept only when paired rounds show it faster)
_APPLIED = {"max-pool padding": "no (not applied since this run)", "stack shuffle": "yes (the model's own shuffle)",
            "channels last shuffle": "no", "NHWC input": "yes (the default layout: what an app feeds)",
            "threads instead of 1": "`--pick` over `--threads 1,2` chooses the faster"}


def _applied(change: str) -> str:
    return next((v for k, v in _APPLIED.items() if k in change), "-")


def graph_changes_section(gc: dict | None) -> list[str]:
    if not gc:
        return []
    out = ["## Graph-level changes, each measured", "",
           f"`benchmarks/graph_changes.py`, batch 1, {gc['threads']} threads, {gc['rounds']} rounds{measured_on(gc)}. "
           "A change the exporter controls is kept only when the paired test calls it faster on this CPU."
           + recalled(gc),
           ""]
    paired_test = all("paired" in c for c in gc["changes"])
    out += table(["change", "model", "runtime", "before ms", "after ms", "speed-up",
                  "called by the paired test" if paired_test else "beyond the spread of round medians",
                  "in the export"],
                 [[c["change"], c["model"], c["runtime"], fmt(c["before"]["median_ms"]), fmt(c["after"]["median_ms"]),
                   f"{c['speedup']:.2f}x",
                   (c["paired"]["call"] or "tie") if paired_test else ("yes" if c["beyond_spread"] else "no"),
                   _applied(c["change"])] for c in gc["changes"]])
    return out + [""]

"""The study's tables: the guidelines G1-G4 and the zoo (latency against MACs, Table 8)."""

from __future__ import annotations


from .console import out_console


def print_guidelines(result: dict) -> None:
    from rich.table import Table

    console = out_console()
    for t in result["tables"]:
        if not any(r["median_ms"] for r in t["rows"]):
            continue
        aligned = f", channels to multiples of {t['align']}" if t.get("align", 1) > 1 else ""
        table = Table(title=f"{t['guideline']} x{t['width']}{aligned} on {t['runtime']}: "
                            f"{t['verdict']['verdict'].upper()}")
        for col in ("config", "MMACs", "median ms", "spread", "speed vs row 1", "paper GPU", "paper ARM"):
            table.add_column(col, justify="left" if col == "config" else "right")
        for r in t["rows"]:
            fmt = lambda v, f: f.format(v) if v is not None else "-"  # noqa: E731
            table.add_row(r["config"], f"{r['macs'] / 1e6:.0f}", fmt(r["median_ms"], "{:.2f}"),
                          fmt(r["spread"], "{:.0%}"), fmt(r["ratio"], "{:.2f}"), fmt(r["paper_gpu_ratio"], "{:.2f}"),
                          fmt(r["paper_arm_ratio"], "{:.2f}"))
        console.print(table)
        if "detail" in t["verdict"]:
            console.print(f"  {t['verdict']['claim']}: [bold]{t['verdict']['verdict']}[/] ({t['verdict']['detail']})")
    if result.get("alignment"):
        table = Table(title="alignment factor: the guideline's slowdown per MAC (expected slowest / expected fastest)")
        for col in ("guideline", "width", "runtime", "aligned to", "unaligned", "aligned", "effect remaining"):
            table.add_column(col, justify="left" if col in ("guideline", "runtime") else "right")
        fmt = lambda v, f: f.format(v) if v is not None else "-"  # noqa: E731
        for a in result["alignment"]:
            table.add_row(a["guideline"], f"x{a['width']}", a["runtime"], str(a["align"]),
                          fmt(a["slowdown_unaligned"], "{:.2f}x"), fmt(a["slowdown_aligned"], "{:.2f}x"),
                          fmt(a["remaining"], "{:.0%}"))
        console.print(table)
    for failure in result["failures"]:
        console.print(f"[yellow]note:[/] {failure}")
    for warning in result.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}")


def print_zoo(result: dict) -> None:
    from rich.table import Table

    console = out_console()
    fmt = lambda v, f: f.format(v) if v is not None and v == v else "-"  # noqa: E731  (v == v: not NaN)
    for key, summary in result["summary"].items():
        table = Table(title=f"latency vs MACs, memory access and the roofline bound, {_batch_label(key)}: "
                            "Spearman per runtime "
                            "(zoo | MobileNet and ShuffleNet), and inversions at matched MACs (within 25%)")
        for col in ("runtime", "models", "MACs", "memory", "roofline", "dw MACs", "dw memory", "dw roofline",
                    "matched pairs", "inverted"):
            table.add_column(col, justify="left" if col == "runtime" else "right")
        for runtime, s in summary.items():
            zoo, dw = s.get("predictors", {}).get("zoo", {}), s.get("predictors", {}).get("depthwise_heavy", {})
            inv = s.get("matched_macs") or {}
            table.add_row(runtime, str(s["models"]), fmt(zoo.get("macs", s["spearman_macs_latency"]), "{:.2f}"),
                          fmt(zoo.get("memory_access"), "{:.2f}"), fmt(zoo.get("roofline"), "{:.2f}"),
                          fmt(dw.get("macs"), "{:.2f}"), fmt(dw.get("memory_access"), "{:.2f}"),
                          fmt(dw.get("roofline"), "{:.2f}"), str(inv.get("pairs", "-")),
                          fmt(inv.get("inversion_rate"), "{:.0%}"))
        console.print(table)
    for table in zoo_speed_tables(result["rows"]):
        console.print(table)
    runtimes = sorted({rt for row in result["table8"] for rt in row["latency_ms"]})
    table = Table(title="Table 8 at matched MACs: latency here, paper's MFLOPs and top-1 error beside")
    for col in ("budget", "model", "paper MFLOPs", "paper top-1 err", "MMACs here", *[f"{rt} ms" for rt in runtimes]):
        table.add_column(col, justify="left" if col in ("model",) else "right")
    for r in result["table8"]:
        table.add_row(f"~{r['budget_mflops']}M", r["paper_name"], str(r["paper_mflops"]), f"{r['paper_top1_err']:.1f}",
                      f"{r['macs'] / 1e6:.0f}" if r["macs"] else "-",
                      *[f"{r['latency_ms'][rt]:.2f}" if rt in r["latency_ms"] else "-" for rt in runtimes])
    console.print(table)
    plain = result["plain_export"]
    if plain:
        slower = [p for p in plain if p["slower_beyond_spread"]]
        console.print(f"cnnexport's files vs each runtime's own plain export: {len(plain) - len(slower)} of {len(plain)} "
                      "not slower by the paired test (round by round)" + (": slower: " + ", ".join(
                          f"{p['model']} on {p['runtime']} ({p['ratio']:.2f}x)" for p in slower) if slower else ""))
    if "plot" in result:
        console.print(f"plot: {result['plot']}")
    for failure in result["failures"]:
        console.print(f"[yellow]note:[/] {failure}")
    for warning in result.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}")


def _batch_label(key: str) -> str:
    """``batch1`` (a summary key) -> ``batch 1``."""
    return f"batch {key[5:]}" if key.startswith("batch") else key


def zoo_speed_tables(rows: list[dict]) -> list:
    """One table per batch: each model's MACs, and per runtime its median latency and achieved GMAC/s
    (2 x MACs / latency is the FLOP rate; the GMAC/s here counts MACs)."""
    from rich.table import Table

    tables = []
    for batch in sorted({r["batch"] for r in rows}):
        at = [r for r in rows if r["batch"] == batch]
        runtimes = sorted({r["runtime"] for r in at})
        table = Table(title=f"achieved speed per model, batch {batch}: median ms and GMAC/s per runtime")
        table.add_column("model", no_wrap=True)
        table.add_column("MMACs", justify="right")
        for rt in runtimes:
            table.add_column(f"{rt} ms", justify="right")
            table.add_column(f"{rt} GMAC/s", justify="right")
        by_model: dict[str, dict] = {}
        for r in at:
            by_model.setdefault(r["model"], {})[r["runtime"]] = r
        for model in sorted(by_model, key=lambda m: next(iter(by_model[m].values())).get("macs") or 0):
            cells = by_model[model]
            macs = next(iter(cells.values())).get("macs")
            row = [model, f"{macs / 1e6:,.0f}" if macs else "-"]
            for rt in runtimes:
                r = cells.get(rt)
                row += [f"{r['median_ms']:.2f}" if r else "-",
                        f"{r['gmacs_per_s']:.1f}" if r and r.get("gmacs_per_s") is not None else "-"]
            table.add_row(*row)
        tables.append(table)
    return tables

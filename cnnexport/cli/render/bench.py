"""The benchmark table: the columns that fit the terminal, CSV and JSON."""

from __future__ import annotations

import json

import click

from .console import out_console


#: Default columns dropped first, last to first, when the terminal is narrower than their natural width.
_BENCH_DROP_ORDER = ("file_mb", "of_roofline", "int8_speedup", "speedup", "spread", "images_per_s")


def bench_table(rows: list[dict], wide: bool = False, width: int | None = None):
    """The latency table: BENCH_DEFAULT_COLUMNS (or every column with ``wide``) that hold a value; the model
    column only where a file's name does not already say it. No cell is ever cut: within ``width``, the
    least telling default columns are left out instead (they stay in --wide, --json and --save)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from ...profile.costs import clever_format

    heads = {"precision": "prec", "threads": "thr", "median_ms": "median ms", "p90_ms": "p90 ms", "p99_ms": "p99 ms",
             "min_ms": "min ms", "spread": "spread", "images_per_s": "img/s", "gmacs_per_s": "GMAC/s",
             "ceiling_fraction": "of ceiling", "roofline_ms": "roofline ms", "of_roofline": "of roofline",
             "speedup": f"x {rows[0]['baseline']}" if rows[0]["baseline"] else "speed-up", "int8_speedup": "x fp32",
             "artifact": "file", "file_mb": "MB", "top1": "top-1"}

    def cell(r: dict, c: str) -> str:
        v = r.get(c)
        if v is None:
            return "-"
        if c == "batch" and (r.get("calls_per_batch") or 1) > 1:
            return f"{v} ({r['calls_per_batch']} calls)"  # a static-batch file: consecutive calls, not a batch
        if c == "macs":
            return clever_format(v, "%.2f")
        if c == "top1":
            return f"{v:.1%}"
        if c == "file_mb":
            return f"{v:.0f}" if v >= 100 else f"{v:.2f}" if v >= 0.1 else f"{v:.2g}"  # 102, 97.70, 0.26, 0.0031
        if c in ("ceiling_fraction", "of_roofline"):
            return f"{v:.0%}" + ("?" if r.get("limits_noisy") else "")  # against a limit that varied
        if c == "spread":
            return f"{v:.0%}"
        if c in ("speedup", "int8_speedup"):
            return f"{v:.2f}x"
        if c == "images_per_s":
            return f"{v:.1f}" if v < 100 else f"{v:.0f}"
        if isinstance(v, float):
            return f"{v:.2f}" if v < 1000 else f"{v:.0f}"
        return str(v)

    named = all(r.get("artifact") and r["artifact"].startswith(f"{r['model']}.") for r in rows)
    show = [c for c in (BENCH_COLUMNS if wide else BENCH_DEFAULT_COLUMNS)
            if any(r.get(c) is not None for r in rows) and not (c == "model" and named)]

    def build(columns: list[str]) -> Table:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)
        for col in columns:
            table.add_column(heads.get(col, col), no_wrap=True,
                             justify="left" if col in BENCH_KEY_COLUMNS or col == "precision" else "right")
        for r in rows:
            table.add_row(*[cell(r, c) for c in columns])
        return table

    table = build(show)
    if width and not wide:
        console = Console(width=10_000)  # measures the natural width, uncut
        for col in _BENCH_DROP_ORDER:
            if console.measure(table).maximum <= width:
                break
            if col in show:
                show.remove(col)
                table = build(show)
    return table


def _ceiling_limit(result: dict, threads, precision: str) -> dict | None:
    """The measured limit behind a precision's ceiling at ``threads`` (None when given or not measured)."""
    lim = (result.get("limits") or {}).get(threads, {}).get(f"{precision} ceiling")
    return lim if lim and lim.get("set_by") else None


BENCH_COLUMNS = ("model", "artifact", "runtime", "precision", "batch", "threads", "file_mb", "median_ms", "p90_ms",
                 "p99_ms", "min_ms", "spread", "images_per_s", "top1", "macs", "gmacs_per_s", "ceiling_fraction",
                 "roofline_ms", "of_roofline", "speedup", "int8_speedup")


#: The columns bench shows by default: they fit 100 columns; the rest behind --wide, in --json and --save.
BENCH_DEFAULT_COLUMNS = ("model", "artifact", "runtime", "precision", "batch", "threads", "file_mb", "median_ms",
                         "spread", "images_per_s", "top1", "of_roofline", "speedup", "int8_speedup")


#: Never cut: a row means nothing without them.
BENCH_KEY_COLUMNS = ("model", "artifact", "runtime")


def print_bench(result: dict, as_json: bool, as_csv: bool, wide: bool = False) -> None:
    rows = result["rows"]
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if as_csv:
        import csv
        import io

        buf = io.StringIO()
        fields = [f for f in BENCH_COLUMNS] + ["calls_per_batch", "version", "first_ms", "runs", "mean_ms", "std_ms",
                                                "rounds", "ceiling_gflops", "bandwidth_gbs", "memory_access_bytes",
                                                "baseline", "limits_noisy", "device", "top5", "agreement",
                                                "eval_images"]
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(buf.getvalue(), nl=False)
        return
    console = out_console()
    console.print(bench_table(rows, wide, console.width))
    machine = rows[0]["machine"]
    isa = ", ".join(k for k, v in machine["isa"].items() if v) or "no listed ISA extension"
    ceil = "; ".join(f"{t} thread{'s' if int(t) > 1 else ''}: " + ", ".join(
        f"{p} {g:.0f} G{'FLOP' if p != 'int8' else 'OP'}/s" + (f" ({lim['set_by'].split(' GEMM')[0]})"
                                                                if (lim := _ceiling_limit(result, t, p)) else "")
        for p, g in by_precision.items() if p != "fp16")
        for t, by_precision in (result.get("ceilings_by_precision") or
                                {t: {"fp32": g} for t, g in result["ceilings_gflops"].items()}).items())
    bw = ", ".join(f"{g:.1f} GB/s" for g in (result.get("bandwidths_gbs") or {}).values())
    console.print(f"on {machine['cpu']} ({isa})" + (f"; compute ceilings, best GEMM: {ceil}" if ceil else "")
                  + (f"; memory bandwidth {bw}" if bw else ""))
    if any(r.get("calls_per_batch", 1) > 1 for r in rows):
        console.print("batch N (K calls): the file has a static batch, so N images ran as K consecutive calls, not "
                      "as one batch; export with a dynamic batch (" + _max_batch_flags() + ") to measure a batch")
    for acc in result.get("accuracy") or []:
        ref = "; agreement with PyTorch's top-1 and top-5: --json or --save" if acc["reference"] else \
            "; top-5: --json or --save"
        console.print(f"top-1 on {acc['data']['source']}: {acc['data']['images']} images"
                      + (f", {acc['data']['skipped']} unreadable skipped" if acc["data"]["skipped"] else "") + ref)
    if not wide:
        console.print("more columns (p90, p99, min, MACs, GMAC/s, % of the compute ceiling, roofline ms): --wide, "
                      "--json or --save")
    for p in result.get("pick", []):
        several = len(p.get("thread_counts") or [p["threads"]]) > 1
        runner = (p["runner_up"] or "") + (f" at {p['runner_up_threads']} threads" if several and p["runner_up"] else "")
        evidence = (f"{p['median_ms']:.2f} ms vs {runner} {p['runner_up_median_ms']:.2f} ms "
                    f"({p['margin']:.2f}x; {_ranking(p)})" if p["runner_up"] else "the only candidate")
        where = (f"batch {p['batch']}: [bold]{p['artifact']}[/] on {p['runtime']} at {p['threads']} threads "
                 f"(of {', '.join(map(str, p['thread_counts']))})" if several else
                 f"batch {p['batch']} threads {p['threads']}: [bold]{p['artifact']}[/] on {p['runtime']}")
        accuracy = f", top-1 {p['top1']:.1%}" if p.get("top1") is not None else ""
        console.print(f"pick {p['precision']} {where}{accuracy}: {evidence}")
    if result.get("plain"):
        from rich.table import Table

        table = Table(title="cnnexport's files against each runtime's own converter (--plain), paired by round")
        for col in ("model", "runtime", "batch", "threads", "ours ms", "plain ms", "ours / plain", "range", "rounds",
                    "verdict"):
            table.add_column(col, justify="left" if col in ("model", "runtime", "verdict") else "right")
        for c in result["plain"]:
            t = c["paired"]
            table.add_row(c["model"], c["runtime"], str(c["batch"]), str(c["threads"]), f"{c['median_ms']:.2f}",
                          f"{c['plain_median_ms']:.2f}", f"{t['median_ratio']:.3f}" if t["median_ratio"] else "-",
                          f"{t['min_ratio']:.3f}-{t['max_ratio']:.3f}" if t["median_ratio"] else "-",
                          f"{t['faster_rounds']} faster, {t['slower_rounds']} slower of {t['rounds']}"
                          + (f" (p {t['p_value']:.2g})" if t.get("p_value") is not None else ""),
                          {"faster": "ours faster", "slower": "ours SLOWER"}.get(c["verdict"], "tie"))
        console.print(table)
    for note in result.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")
    for warning in result.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}")


def _ranking(p: dict) -> str:
    """What the paired test says of a pick against its runner-up, with its evidence (rounds, sign-test p)."""
    t = p["paired"]
    if p["beyond_noise"]:
        return f"faster in {t['faster_rounds']} of {t['rounds']} paired rounds, p {t['p_value']:.2g}"
    if p["beyond_noise"] is None:  # too few rounds for any call
        few = "one round measures no spread" if t["rounds"] < 2 else "2 rounds cannot call a difference"
        return f"{few}: use --rounds 3 or more"
    return f"faster in {t['faster_rounds']} of {t['rounds']} paired rounds, p {t['p_value']:.2g}: a tie here"


def _max_batch_flags() -> str:
    """The format options that give a static-batch format a dynamic batch (--executorch-max-batch, ...)."""
    from ...exporter.formats import FORMAT_OPTIONS

    return ", ".join(o.cli_flag for _, o in FORMAT_OPTIONS.values() if o.dynamic_batch)


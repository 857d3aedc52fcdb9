"""What the CLI shows: rich tables of reports, the per-stage spinner and progress bars. Only the
CLI imports this module; it prints, the rest of the package never does."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from .signals import check_interrupted

_terminal = None


def live_console():
    """The console for spinners and progress bars. On a terminal it writes to its own copy of the
    stderr descriptor: converters run with fds 1 and 2 redirected (pnnx, LiteRT and OpenVINO print
    there), which would otherwise swallow every frame drawn meanwhile."""
    global _terminal
    from rich.console import Console

    if not sys.stderr.isatty():
        return Console(stderr=True)
    if _terminal is None:
        _terminal = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding=sys.stderr.encoding,
                              errors="replace")
    return Console(file=_terminal, force_terminal=True)


def out_console():
    """stdout console; wide when piped so tables are not squeezed to 80 columns."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def tolerance_text(e: dict) -> str:
    """'tol 1e-04 x max |output| 11.2' rather than a bare number that means nothing on tiny outputs."""
    rule = e.get("tolerance_rule", "").split(";")[0]  # an fp16 file's rule goes on: fp16_text
    if rule.endswith("max |output|"):
        return f"tol {rule} {e['output_scale']:.3g}"
    return f"tol {e['tolerance']:.1e}"


def fp16_text(e: dict) -> str:
    """'fp16 rule on photos: cosine 0.9999995, top-1 90% (1 tie)': the rest of an fp16 (or bf16) file's check."""
    precision = "fp16" if "fp16_check" in e else "bf16"
    c = e[f"{precision}_check"]
    ties = f" ({c['tie_flips']} tie{'s' if c['tie_flips'] != 1 else ''})" if c.get("tie_flips") else ""
    return f"{precision} rule on {c['on']}: cosine {c['cosine']:.7f}, top-1 {c['top1_agreement']:.0%}{ties}"


def reduced_check(e: dict) -> bool:
    """Whether ``e`` was checked by a reduced float precision's rule (fp16, bf16)."""
    return "fp16_check" in e or "bf16_check" in e


def delegation_text(d: dict) -> str:
    """'XNNPACK 122/122 ops, 1 partition' or '... 143/157 ops, 15 partitions, 14 breaks (split x13)'."""
    total = d["delegated_ops"] + d["portable_ops"]
    text = (f"{d['delegate']} {d['delegated_ops']}/{total} ops, {d['delegated_partitions']} "
            f"partition{'s' if d['delegated_partitions'] != 1 else ''}")
    if d["portable_ops"]:
        text += (f", {d['graph_breaks']} break{'s' if d['graph_breaks'] != 1 else ''} ("
                 + ", ".join(f"{op.removeprefix('aten_')} x{n}" for op, n in d["portable_by_op"].items()) + ")")
    return text


def print_export_summary(report: dict) -> None:
    from rich.table import Table

    console = out_console()
    g = report["graph"]
    eq = {e["artifact"]: e for e in report["equivalence"]}
    # a heading line, not the table's title: rich wraps a title to the table's width, mid-phrase
    heading = (f"{report['model']}: {report['params']:,} params, input {'x'.join(map(str, report['input_shape']))} "
               f"({'dynamic' if report['dynamic_batch'] else 'static'} batch)")
    table = Table()
    table.add_column("")
    rows = {"file": [], "format": [], "size": [], "batch": [], "delegation": [], "max abs error": [],
            "max rel error": [], "cosine": [], "top-1 agreement": [], "accuracy (labels)": [], "check": []}
    for a in report["artifacts"]:
        e = eq.get(Path(a["path"]).name, {})
        table.add_column(a["format"], justify="right")
        rows["file"].append(Path(a["path"]).name)
        rows["format"].append(f"{a['format']} {a['precision']} {a['layout']}")
        rows["size"].append(f"{a['size_bytes'] / 1e6:.1f} MB")
        rows["batch"].append(f"static {a['static_batch']}" if "static_batch" in a else "")
        rows["delegation"].append(delegation_text(a["delegation"]) if "delegation" in a else "")
        tol = e.get("tolerance", 0)
        rows["max abs error"].append(f"{e.get('max_abs', float('nan')):.2e}" + (f" ({tolerance_text(e)})"
                                                                                if isinstance(tol, float) else ""))
        rows["max rel error"].append(f"{e.get('max_rel', float('nan')):.2e}")
        if "cosine_mean" in e:  # int8: the gate is on the mean, so the mean comes first
            rows["cosine"].append(f"mean {e['cosine_mean']:.4f} (min {e['cosine_min']:.4f})")
        else:
            rows["cosine"].append(f"min {e.get('cosine', float('nan')):.7f}")
        rows["accuracy (labels)"].append(
            f"fp32 {e['accuracy_fp32']:.2%} -> int8 {e['accuracy_int8']:.2%}" if "accuracy_int8" in e else "")
        rows["top-1 agreement"].append(f"{e.get('top1_agreement', 0):.0%} of {e.get('samples', 0)}")
        rows["check"].append(("[green]passed[/]" if e.get("passed") else "[red]FAILED[/]")
                             + (f" ({tol})" if isinstance(tol, str) else "")
                             + (f" ({fp16_text(e)})" if reduced_check(e) else ""))
    for label, cells in rows.items():
        if any(cells):
            table.add_row(label, *cells)
    console.print(heading, style="bold", markup=False, highlight=False, soft_wrap=True)
    console.print(table)
    for how in dict.fromkeys(a["load_as_verified"] for a in report["artifacts"] if a.get("load_as_verified")):
        formats = ", ".join(sorted({Path(a["path"]).name for a in report["artifacts"]
                                    if a.get("load_as_verified") == how}))
        note = "" if '"bf16"' in how else " (the runtime's own CPU default may compute in bf16)"
        console.print(f"load {formats} as verified: {how}{note}", markup=False, highlight=False)
    p = report["prepare"]
    inside = sum(1 for f in p["folded"] if f.get("level") == "graph")
    from ..exporter.report_fields import ONNX_GRAPH_FOLD

    in_onnx = sum(f["count"] for f in g.get("folded", []) if f.get("level") == ONNX_GRAPH_FOLD)
    console.print(f"graph: {g['nodes_before_simplify']} -> {g['nodes_after_simplify']} nodes ({g['simplifier']}), "
                  f"{g['batchnorm_nodes']} BatchNormalization, {g['dropout_nodes']} Dropout; "
                  f"folded {len(p['folded'])} BN into convs"
                  + (f" ({inside} inside another module's forward)" if inside else "")
                  + (f", {in_onnx} more in the ONNX file" if in_onnx else "")
                  + (f", {g['precomputed_constant_nodes']} nodes computed from weights only precomputed"
                     if g.get("precomputed_constant_nodes") else "")
                  + f", {len(p['scale_shift'])} as scale+shift, "
                  + (f"reparameterised {len(p['reparameterized'])} blocks, " if p.get("reparameterized") else "")
                  + f"removed {p['dropout_removed']} train-only random ops"
                  + (" (" + ", ".join(f"{t} x{n}" for t, n in p["train_only_removed"].items()) + ")"
                     if p.get("train_only_removed") else ""))
    console.print(f"{report['exporter']} exporter, opset {report['opset']}; "
                  + ", ".join(f"{k} {v:.1f}s" for k, v in report["timings_s"].items()))
    if report.get("quantization"):
        kept = describe_keep_float(report["quantization"][0])
        if kept:
            console.print(f"int8 ONNX Runtime {kept}")
    for w in report["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    files = [f for a in report["artifacts"] for f in a["files"]]
    console.print(f"written: {Path(report['artifacts'][0]['path']).parent}/ ({', '.join(files)}, reference.npz, "
                  "report.json)")
    if report.get("removed_earlier_files"):
        console.print(f"removed the earlier export's files this one did not write again: "
                      f"{', '.join(report['removed_earlier_files'])}")


def print_profile(model: str, result: dict, per_layer: bool, as_json: bool, as_csv: bool) -> None:
    from ..costs import clever_format

    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if as_csv:
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["name", "type", "params", "macs", "memory_access_bytes", "elementwise_ops", "output_shape"])
        for layer in result["layers"]:
            writer.writerow([layer["name"], layer["type"], layer["params"], layer["macs"],
                             layer["memory_access_bytes"], layer["elementwise_ops"],
                             "x".join(map(str, layer["output_shape"]))])
        click.echo(buf.getvalue(), nl=False)
        return
    from rich.table import Table

    console = out_console()
    if per_layer:
        table = Table(title=f"{model}: per layer")
        for col in ("layer", "type", "params", "MACs", "memory access", "intensity", "output"):
            table.add_column(col, justify="left" if col in ("layer", "type", "output") else "right")
        for layer in result["layers"]:
            mem = layer["memory_access_bytes"]
            table.add_row(layer["name"], layer["type"], clever_format(layer["params"]), clever_format(layer["macs"]),
                          clever_format(mem, "%.2f") + "B", f"{layer['macs'] / mem:.2f}" if mem else "-",
                          "x".join(map(str, layer["output_shape"])))
        console.print(table)
    table = Table(title=f"{model} ({result['source']}, input {'x'.join(map(str, result['input_shape']))})")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_column("", justify="left")
    pub = result.get("published") or {}
    # Totals with nodes of unknown shape are lower bounds: the table itself says so.
    low = result.get("totals_are_lower_bounds", False)
    at_least = ">= " if low else ""
    bound = f"lower bound: {result.get('unknown_shape_nodes')} nodes of unknown shape count as 0" if low else ""
    table.add_row("params", clever_format(result["params"]),
                  f"published {clever_format(pub['params'])} ({result['params'] / pub['params']:.3f}x)"
                  if pub.get("params") else "")
    table.add_row("MACs (\"FLOPs\")", at_least + clever_format(result["macs"]),
                  bound or (f"published {clever_format(pub['macs'])} ({result['macs'] / pub['macs']:.3f}x)"
                            if pub.get("macs") else ""))
    table.add_row("memory access (fp32)", at_least + clever_format(result["memory_access_bytes"], "%.2f") + "B",
                  bound or f"{clever_format(result['memory_access_elements'])} elements; int8 "
                  f"{clever_format(result['memory_access_bytes_int8'], '%.2f')}B")
    table.add_row("activation memory (fp32)", at_least + clever_format(result["activation_bytes"], "%.2f") + "B",
                  bound)
    table.add_row("arithmetic intensity", "-" if low else f"{result['arithmetic_intensity']:.2f}",
                  "unknown: some costs are unknown" if low else "MACs per byte accessed (fp32)")
    table.add_row("element-wise ops", clever_format(result["elementwise_ops"]), "BN, activations, additions, pooling")
    console.print(table)
    for note in result.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")
    for warning in result.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}")
    if "against_onnx" in result:
        cmp = result["against_onnx"]
        console.print("ONNX vs PyTorch: " + ", ".join(f"{k} {v['ratio']:.4f}x" for k, v in cmp["totals"].items()
                                                      if v["ratio"] is not None))
        for why in cmp["why_they_differ"]:
            console.print(f"  why: {why}")
    if "tensorboard" in result:
        tb = result["tensorboard"]
        console.print(f"TensorBoard: {tb['histograms']} histograms, {tb['images']} images in {tb['logdir']}")


def print_verify(eq: dict) -> None:
    status = "[green]passed[/]" if eq["passed"] else "[red]FAILED[/]"
    if eq.get("precision") == "int8":  # int8's rule: the mean cosine (and top-1 drop) on held-out samples
        accuracy = (f", accuracy fp32 {eq['accuracy_fp32']:.2%} -> int8 {eq['accuracy_int8']:.2%}"
                    if "accuracy_int8" in eq else "")
        out_console().print(f"{eq['artifact']} on {eq['runtime']['runtime']} {eq['runtime']['version']}: int8 mean "
                            f"cosine {eq['cosine_mean']:.4f} (min {eq['cosine_min']:.4f}; {eq['tolerance']}), top-1 "
                            f"agreement {eq['top1_agreement']:.0%} of {eq['samples']}{accuracy} {status}")
    else:
        out_console().print(f"{eq['artifact']} on {eq['runtime']['runtime']} {eq['runtime']['version']}: "
                            f"max abs error {eq['max_abs']:.2e} ({tolerance_text(eq)}), max rel "
                            f"{eq['max_rel']:.2e}, cosine {eq['cosine']:.7f}, top-1 agreement "
                            f"{eq['top1_agreement']:.0%} of {eq['samples']}"
                            + (f"; {fp16_text(eq)}" if reduced_check(eq) else "") + f" {status}")
    if eq.get("runtime_default"):
        out_console().print(runtime_default_text(eq["runtime"]["runtime"], eq["runtime_default"]), markup=False,
                            highlight=False)


def runtime_default_text(runtime: str, d: dict) -> str:
    """One line on what the runtime's own defaults compute on this CPU, where that is not what was verified."""
    if "cosine_mean" in d:  # an int8 file: its rule's figures
        figures = f"mean cosine {d['cosine_mean']:.4f}, top-1 agreement {d['top1_agreement']:.0%}"
    elif "max_rel" in d:
        figures = (f"max rel error {d['max_rel']:.1e}, cosine {d['cosine']:.6f}, "
                   f"top-1 agreement {d['top1_agreement']:.0%}")
    else:
        figures = "not checked"
    verdict = "it would pass this check too" if d.get("passed") else "it would NOT pass this check"
    return (f"note: {runtime}'s own default on this CPU computes in {d['precision']}, not the {d['verified_at']} "
            f"verified here: {figures} ({verdict}); to run what was verified: {d['how']}")


class StageStatus:
    """A status line that names each stage as it starts (silent when stderr is not a terminal). A
    process of its own draws it, so it keeps turning through native code (see ``_spinner``)."""

    def __init__(self, title: str):
        self.title, self.spinner = title, None

    def __enter__(self):
        if sys.stderr.isatty():
            from .._spinner import ProcessSpinner

            self.spinner = ProcessSpinner(self.title)
            self.spinner.__enter__()
        return self.update

    def update(self, stage: str) -> None:
        check_interrupted()
        if self.spinner:
            self.spinner.update(f"{self.title}: {stage}")

    def __exit__(self, *exc):
        if self.spinner:
            self.spinner.__exit__(*exc)


class ProgressBar:
    """``with ProgressBar(quiet, first) as (on_stage, on_progress)``: one bar that names the stage and
    counts measurements done of the total. Off a terminal, a plain line per stage and per finished
    measurement goes to stderr instead (what, how long, how many left), as pip and pytest do; both
    callbacks are None when quiet."""

    def __init__(self, quiet: bool, first: str = "measuring"):
        self.quiet, self.first, self.progress = quiet, first, None

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if self.quiet:
            return None, None
        console = live_console()
        if not console.is_terminal:
            return plain_progress()
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True)
        self.progress.__enter__()
        task = self.progress.add_task(self.first, total=None)

        def on_stage(stage: str) -> None:
            check_interrupted()
            self.progress.update(task, description=stage)

        def on_progress(done: int, total: int, label: str) -> None:
            self.progress.update(task, completed=done, total=total, description=f"measuring {label}")
        return on_stage, on_progress

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)


#: Default columns dropped first, last to first, when the terminal is narrower than their natural width.
_BENCH_DROP_ORDER = ("of_roofline", "int8_speedup", "speedup", "spread", "images_per_s")


def bench_table(rows: list[dict], wide: bool = False, width: int | None = None):
    """The latency table: BENCH_DEFAULT_COLUMNS (or every column with ``wide``) that hold a value; the model
    column only where a file's name does not already say it. No cell is ever cut: within ``width``, the
    least telling default columns are left out instead (they stay in --wide, --json and --save)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from ..costs import clever_format

    heads = {"precision": "prec", "threads": "thr", "median_ms": "median ms", "p90_ms": "p90 ms", "p99_ms": "p99 ms",
             "min_ms": "min ms", "spread": "spread", "images_per_s": "img/s", "gmacs_per_s": "GMAC/s",
             "ceiling_fraction": "of ceiling", "roofline_ms": "roofline ms", "of_roofline": "of roofline",
             "speedup": f"x {rows[0]['baseline']}" if rows[0]["baseline"] else "speed-up", "int8_speedup": "x fp32",
             "artifact": "file"}

    def cell(r: dict, c: str) -> str:
        v = r.get(c)
        if v is None:
            return "-"
        if c == "batch" and (r.get("calls_per_batch") or 1) > 1:
            return f"{v} ({r['calls_per_batch']} calls)"  # a static-batch file: consecutive calls, not a batch
        if c == "macs":
            return clever_format(v, "%.2f")
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


def plain_progress():
    """(on_stage, on_progress) that print one plain line each to stderr: for logs, where a bar cannot draw."""
    import time

    last = [time.perf_counter()]

    def on_stage(stage: str) -> None:
        check_interrupted()
        click.echo(f"{stage}...", err=True)
        last[0] = time.perf_counter()

    def on_progress(done: int, total: int, label: str) -> None:
        now = time.perf_counter()
        click.echo(f"measured {label} in {now - last[0]:.1f} s: {done} of {total} done, {total - done} left",
                   err=True)
        last[0] = now
    return on_stage, on_progress


class EvalProgress:
    """``with EvalProgress(quiet, total) as on_progress``: images done of the total and images/s; the
    callback is None when quiet or not on a terminal."""

    def __init__(self, quiet: bool, total: int):
        self.quiet, self.total, self.progress = quiet, total, None

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = live_console()
        if self.quiet or not console.is_terminal:
            return None
        self.progress = Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console,
                                 transient=True)
        self.progress.__enter__()
        task = self.progress.add_task("evaluating", total=self.total, rate="")

        def on_progress(done: int, total: int, per_s: float) -> None:
            self.progress.update(task, completed=done, total=total, rate=f"{per_s:.1f} images/s")
        return on_progress

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)


def print_eval(result: dict, as_json: bool) -> None:
    """``cnnexport eval``'s table: accuracy per model, agreement with PyTorch, worst classes."""
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    from rich.table import Table

    data, ref = result["data"], result["reference"]
    shard = f", shard {data['shard'][0]}/{data['shard'][1]}" if data.get("shard") and len(data["shard"]) == 2 \
        and isinstance(data["shard"][0], int) else ""
    title = (f"accuracy on {data['images']} images of {data['source']} ({len(data['classes'])} classes{shard})"
             + (f" [bold red]INCOMPLETE: shard(s) {', '.join(map(str, result['missing_shards']))} of "
                f"{data['shard'][0][1] if data.get('shard') else '?'} not merged[/]" if result.get("missing_shards")
                else "")
             + (" [bold red]PARTIAL: stopped early[/]" if result["partial"] and result.get("stopped_early", True)
                else ""))
    table = Table(title=title)
    columns = ["model", "runtime", "precision", "top-1", "top-5"]
    if ref:
        columns += ["drop (points)", "agrees with PyTorch", "disagree"]
    columns += ["images/s", "worst classes"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("model", "runtime", "precision", "worst classes") else "right")

    def pct(v):
        return "-" if v is None else f"{v:.2%}"

    for m in result["models"]:
        row = [m["name"], m.get("runtime", ""), m.get("precision", ""), pct(m["top1"]), pct(m["top5"])]
        if ref:
            own = m["name"] == ref
            row += ["" if own or m.get("drop_points") is None else f"{m['drop_points']:+.2f}",
                    "" if own else pct(m.get("agreement")), "" if own else str(m.get("disagreements", ""))]
        worst = ", ".join(f"{w['class']} {w['top1']:.0%}" + (f" ({-w['drop_points']:+.0f})" if "drop_points" in w
                                                              else "") for w in m["worst_classes"][:3])
        row += ["-" if not m.get("images_per_s") else f"{m['images_per_s']:.1f}", worst]
        table.add_row(*row)
    console = out_console()
    console.print(table)
    rate = f"{result['images_per_s']:.1f} images/s end to end" if result.get("images_per_s") else ""
    cache = data.get("cache")
    cached = f"; cache {cache['hits']} of {cache['hits'] + cache['misses']} images decoded before" if cache else ""
    console.print(f"{rate}, batch {result['batch']}; images/s per model count its own runs only{cached}")
    if result.get("emulated"):
        console.print(f"note: this ran under {result['emulated']}: the images/s are the emulator's, not the CPU's; "
                      "accuracy and agreement are what the emulated CPU's kernels compute")
    if t := result.get("threads"):
        console.print(f"threads: {t['per_runtime']} per runtime beside {t['decoding_workers']} decoding worker(s) on "
                      f"{t['cores']} cores" + (" (chosen; --threads and --workers to change)" if t["chosen"] else ""))
    if data["skipped"]:
        console.print(f"[yellow]warning:[/] {data['skipped']} unreadable image(s) skipped, e.g. "
                      f"{', '.join(data['skipped_files'][:3])}")


BENCH_COLUMNS = ("model", "artifact", "runtime", "precision", "batch", "threads", "median_ms", "p90_ms", "p99_ms",
                 "min_ms", "spread", "images_per_s", "macs", "gmacs_per_s", "ceiling_fraction", "roofline_ms",
                 "of_roofline", "speedup", "int8_speedup")
#: The columns bench shows by default: they fit 100 columns; the rest behind --wide, in --json and --save.
BENCH_DEFAULT_COLUMNS = ("model", "artifact", "runtime", "precision", "batch", "threads", "median_ms", "spread",
                         "images_per_s", "of_roofline", "speedup", "int8_speedup")
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
                                                "baseline", "limits_noisy", "device"]
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
                      "as one batch; export with a dynamic batch (or --executorch-max-batch) to measure a batch")
    if not wide:
        console.print("more columns (p90, p99, min, MACs, GMAC/s, % of the compute ceiling, roofline ms): --wide, "
                      "--json or --save")
    for p in result.get("pick", []):
        evidence = (f"{p['median_ms']:.2f} ms vs {p['runner_up']} {p['runner_up_median_ms']:.2f} ms "
                    f"({p['margin']:.2f}x; " + ("faster round by round: the paired test)" if p["beyond_noise"]
                                                 else "one round, no spread measured: use --rounds 3)"
                                                 if p["beyond_noise"] is None
                                                 else "the rounds disagree: a tie here)")
                    if p["runner_up"] else "the only candidate")
        console.print(f"pick {p['precision']} batch {p['batch']} threads {p['threads']}: [bold]{p['artifact']}[/] "
                      f"on {p['runtime']}: {evidence}")
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


def print_quantize(result: dict, how: str) -> None:
    info, figures = result["quantization"], result["evaluation"]
    console = out_console()
    if "per_layer_sqnr" in result:
        from rich.table import Table

        table = Table(title="per-layer SQNR, float vs int8 activations (worst first)",
                      caption="SQNR: error accumulated up to the tensor (where it ends up); own quantization: "
                              "the tensor's own rounding (where it starts). --keep-float auto measures which "
                              "modules to keep in float.")
        for col in ("tensor", "op", "SQNR dB", "own quantization SQNR dB"):
            table.add_column(col, justify="left" if col in ("tensor", "op") else "right")
        for row in result["per_layer_sqnr"][:15]:
            table.add_row(row["tensor"], row["op"], f"{row['sqnr_db']:.1f}", f"{row['qdq_sqnr_db']:.1f}")
        console.print(table)
    console.print(f"{Path(result['output']).name}: {how}, {info['calibration_samples']} calibration samples, "
                  f"{result['sizes_bytes']['fp32'] / 1e6:.1f} MB -> {result['sizes_bytes']['int8'] / 1e6:.1f} MB")
    line = (f"on {figures['samples']} held-out samples: top-1 agreement {figures['top1_agreement']:.1%}, cosine "
            f"{figures['cosine_mean']:.4f} (min {figures['cosine_min']:.4f}), SQNR {figures['sqnr_db']:.1f} dB")
    if "accuracy_fp32" in figures:
        line += (f"; accuracy fp32 {figures['accuracy_fp32']:.2%} -> int8 {figures['accuracy_int8']:.2%} "
                 f"({figures['accuracy_drop_points']:+.2f} points drop)")
    console.print(line)
    if kept := describe_keep_float(info):
        console.print(kept)
    if result.get("replaced"):
        console.print(f"replaced the earlier {', '.join(result['replaced'])} (--force)")
    for w in result["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")


def describe_keep_float(info: dict) -> str | None:
    """One line on what ``--keep-float`` left in float (None when nothing was)."""
    search = info.get("keep_float_search")
    drop = bool(search) and search.get("metric") == "top1_drop_points"

    def fig(key: str) -> str:
        return f"{search[key]:.2f} points" if drop else f"{search[key]:.4f}"

    measure = "top-1 drop" if drop else "cosine"
    if search and not search["groups"] and search["reached"]:
        return (f"--keep-float auto: fully int8 already reaches {measure} {fig('baseline')} on "
                f"{search['tune_samples']} calibration samples (aim {fig('aim')} for a target of "
                f"{search['target']}); nothing kept in float")
    if not info.get("excluded_nodes"):
        return None
    line = f"kept in float: {info['float_compute_nodes']} of {info['compute_nodes']} compute nodes"
    if search:
        line += (f" ({', '.join(search['groups']) or 'none'}; {measure} on {search['tune_samples']} calibration "
                 f"samples {fig('baseline')} -> {fig('drop_points' if drop else 'cosine')}, aiming at {fig('aim')} "
                 f"for a target of {search['target']})")
    return line


def print_fold(result: dict, src_name: str, dst_name: str) -> None:
    from rich.table import Table

    table = Table(title=f"{src_name} -> {dst_name}")
    for col in ("op", "before", "after"):
        table.add_column(col, justify="left" if col == "op" else "right")
    ops = sorted(set(result["op_counts_before"]) | set(result["op_counts_after"]))
    for op in ops:
        table.add_row(op, str(result["op_counts_before"].get(op, 0)), str(result["op_counts_after"].get(op, 0)))
    table.add_row("[bold]nodes[/]", str(result["nodes_before"]), str(result["nodes_after"]))
    console = out_console()
    console.print(table)
    eq = result["equivalence"]
    removed = {("nodes computed from constants only (precomputed)" if op == "constant" else op): n
               for op, n in result["removed"].items()}
    console.print(f"folded {len(result['folded'])} BatchNormalization; removed "
                  + (", ".join(f"{n} {op}" for op, n in removed.items()) or "nothing else")
                  + f"; verified on {eq['samples']} random inputs: max abs error {eq['max_abs']:.2e}, cosine "
                  f"{eq['cosine']:.7f} [green]passed[/]")


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


def print_models(infos: list) -> None:
    from rich.table import Table

    from ..costs import clever_format

    table = Table(title=f"cnnexport models ({len(infos)})")
    for col in ("name", "family", "input", "classes", "params", "MACs", "source", "paper", "arXiv"):
        table.add_column(col, justify="right" if col in ("params", "MACs", "classes") else "left",
                         no_wrap=col == "name")
    for i in infos:
        table.add_row(i.name, i.family, "x".join(map(str, i.input_size)), str(i.num_classes),
                      f"{i.params:,}" if i.params else "-", clever_format(i.macs, "%.2f") if i.macs else "-",
                      i.source, i.paper, i.arxiv or "-")
    out_console().print(table)


def print_roofline(result: dict, per_layer: bool, as_json: bool) -> None:
    """``profile --roofline``: the limits, the bound per layer kind, then the layers (every one with
    --per-layer, else the ten with the largest bound), measured beside the bound when timed."""
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    from rich.table import Table

    from ..costs import clever_format

    console = out_console()
    timed = result.get("runtime") is not None
    fmt = lambda v, f: f.format(v) if v is not None else "-"  # noqa: E731
    measured = "given" if not result["limits_measured"]["ceiling"] else "measured"
    console.print(f"{result['file']}: roofline at {result['precision']}, input {'x'.join(map(str, result['input_shape']))}"
                  f" (costs of {result['costs_from']}); {measured} limits at {result['limits_measured']['threads']} "
                  f"thread(s): {result['ceiling_gflops']:.0f} GFLOP/s"
                  + (f" (best GEMM: {result['ceiling_set_by']})" if result.get("ceiling_set_by") else "")
                  + f", {result['bandwidth_gbs']:.1f} GB/s (ridge {result['ridge_flops_per_byte']:.1f} FLOPs/byte)")
    line = f"bound {result['bound_ms']:.3f} ms, {result['memory_bound_share']:.0%} of it memory-bound"
    if result.get("roofs"):
        line += (" (bytes charged at the cache level that holds them: " + ", ".join(
            f"{r['level']} {r['gbs']:.0f} GB/s" for r in result["roofs"])
            + f"; every byte at DRAM: {result['bound_dram_ms']:.3f} ms)")
    if timed:
        line += (f"; {result['runtime']} measured {result['measured_ms']:.3f} ms per run over its nodes "
                 f"(median of {result['runs']} runs), bound / measured = {result['of_roofline']:.0%}")
        if result["unmatched_ms"]:
            line += f"; {result['unmatched_ms']:.3f} ms in nodes not matched to the graph (reorders, copies)"
    console.print(line)
    table = Table(title="per layer kind (a convolution with the ops fused into it)")
    cols = ["kind", "layers", "memory-bound", "bound ms", "share"] + (["measured ms", "bound / measured"] if timed else [])
    for c in cols:
        table.add_column(c, justify="left" if c == "kind" else "right")
    for k in result["by_kind"]:
        table.add_row(k["kind"], str(k["groups"]), str(k["memory_bound"]), f"{k['bound_ms']:.3f}", f"{k['share']:.0%}",
                      *([fmt(k["measured_ms"], "{:.3f}"), fmt(k["of_bound"], "{:.0%}")] if timed else []))
    console.print(table)
    layers = result["layers"] if per_layer else sorted(result["layers"], key=lambda r: -r["bound_ms"])[:10]
    table = Table(title="every layer" if per_layer else "the 10 layers with the largest bound (--per-layer: all)")
    cols = ["layer", "kind", "MACs", "bytes", "FLOPs/B", "bound ms", "limit", "level", "share"] + \
        (["measured ms", "bound / measured"] if timed else [])
    for c in cols:
        table.add_column(c, justify="left" if c in ("layer", "kind", "limit", "level") else "right")
    for r in layers:
        kind = r["kind"] + ("+" + "+".join(r["fused"]) if r["fused"] else "")
        table.add_row(r["name"], kind, clever_format(r["macs"], "%.2f"), clever_format(r["bytes"], "%.2f"),
                      f"{2 * r['macs'] / r['bytes']:.1f}" if r["bytes"] else "-", f"{r['bound_ms']:.4f}", r["limit"],
                      r.get("level", "DRAM"), f"{r['share']:.1%}",
                      *([fmt(r["measured_ms"], "{:.4f}"), fmt(r["of_bound"], "{:.0%}")] if timed else []))
    console.print(table)
    if timed and result.get("farthest_kind"):
        console.print(f"farthest from its bound (of kinds with 5%+ of the time): [bold]{result['farthest_kind']}[/]")

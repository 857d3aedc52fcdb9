"""Profiles and roofline tables of a model, and the registry's list."""

from __future__ import annotations

import json

import click

from .console import out_console


def print_profile(model: str, result: dict, per_layer: bool, as_json: bool, as_csv: bool) -> None:
    from ...profile.costs import clever_format

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


def print_models(infos: list) -> None:
    from rich.table import Table

    from ...profile.costs import clever_format

    table = Table(title=f"cnnexport models ({len(infos)})")
    for col in ("name", "family", "input", "classes", "params", "MACs", "source", "paper", "arXiv"):
        table.add_column(col, justify="right" if col in ("params", "MACs", "classes") else "left",
                         no_wrap=col == "name")
    for i in infos:
        table.add_row(i.name, i.family, "x".join(map(str, i.input_size)), str(i.num_classes),
                      f"{i.params:,}" if i.params else "-", clever_format(i.macs, "%.2f") if i.macs else "-",
                      i.source, i.paper, i.arxiv or "-")
    out_console().print(table)


def print_timm_models(rows: list[dict], pattern: str) -> None:
    """``list timm:PATTERN``: timm's architectures with their default input and classes."""
    from rich.table import Table

    table = Table(title=f"timm architectures matching '{pattern}' ({len(rows)}): cnnexport timm:NAME [--weights ...]")
    for col in ("name", "input", "classes", "pretrained tag"):
        table.add_column(col, justify="right" if col == "classes" else "left", no_wrap=col == "name")
    for r in rows:
        table.add_row(r["name"], "x".join(map(str, r["input_size"])) if r["input_size"] else "-",
                      str(r["num_classes"]) if r["num_classes"] is not None else "-", r["pretrained_tag"] or "-")
    out_console().print(table)


def print_roofline(result: dict, per_layer: bool, as_json: bool) -> None:
    """``profile --roofline``: the limits, the bound per layer kind, then the layers (every one with
    --per-layer, else the ten with the largest bound), measured beside the bound when timed."""
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    from rich.table import Table

    from ...profile.costs import clever_format

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
    if result.get("winograd"):
        line += "; dense 3x3 stride-1 convolutions at Winograd F(6x6,3x3)'s multiplications, as this runtime computes them"
    if timed:
        line += (f"; {result['runtime']} measured {result['measured_ms']:.3f} ms per run over its nodes "
                 f"(median of {result['runs']} runs), bound / measured = {result['of_roofline']:.0%}")
        if result["unmatched_ms"]:
            line += f"; {result['unmatched_ms']:.3f} ms in nodes not matched to the graph (reorders, copies)"
    console.print(line)
    table = Table(title="per layer kind (a convolution with the ops fused into it)")
    cols = ["kind", "layers", "memory-bound", "levels", "bound ms", "share"] + \
        (["measured ms", "bound / measured"] if timed else [])
    for c in cols:
        table.add_column(c, justify="left" if c in ("kind", "levels") else "right")
    for k in result["by_kind"]:
        levels = ", ".join(f"{n} {lv}" for lv, n in (k.get("levels") or {}).items()) or "-"
        table.add_row(k["kind"], str(k["groups"]), str(k["memory_bound"]), levels, f"{k['bound_ms']:.3f}",
                      f"{k['share']:.0%}",
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
    for b in (result.get("beating") or [])[:5]:
        console.print(f"[yellow]faster than its bound[/]: {b['name']} ({b['kind']}, {b['of_bound']:.0%}): {b['assumption']}")

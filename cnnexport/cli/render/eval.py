"""Accuracy tables of ``cnnexport eval``."""

from __future__ import annotations

import json

import click

from .console import out_console


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

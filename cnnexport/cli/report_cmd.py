"""``cnnexport report``: rows of several machines merged into one report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import OutputError, UsageError
from .render import out_console
from .app import cli


@cli.command("report")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default="report", show_default=True,
              help="Where REPORT.md and its plots go.")
@click.option("--no-plots", is_flag=True, help="Markdown tables only (no matplotlib needed).")
@click.option("--json", "as_json", is_flag=True, help="Print the merged tables as JSON on stdout.")
def report_cmd(files, output_dir, no_plots, as_json):
    """Merge rows from several machines (bench --save, study --save JSON files) into one Markdown report with
    plots: G1-G4 verdicts per machine and runtime, Spearman of latency against MACs, memory access and the
    roofline bound. Incomplete rows and rows of another protocol version are named and skipped."""
    from ..study.report import merge_rows, write_report

    if not no_plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            from ..errors import MissingDependencyError

            raise MissingDependencyError("the report's plots need matplotlib: pip install 'cnnexport[study]', or "
                                         "pass --no-plots") from None
    merged = merge_rows(list(files))
    if not merged.machines:
        raise UsageError("no usable rows in " + ", ".join(Path(f).name for f in files) + ": "
                         + ("; ".join(merged.skipped[:3]) or "nothing to report"))
    try:
        result = write_report(merged, output_dir, plots=not no_plots)
    except OSError as exc:
        raise OutputError(f"cannot write the report to '{output_dir}': {exc.strerror or exc}; choose a writable "
                          "folder with -o") from None
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    console = out_console()
    console.print(f"{result['report']}: {len(result['machines'])} machine(s) ({', '.join(result['machines'])}), "
                  f"{len(result['verdicts'])} guideline verdicts, {len(result['spearman'])} Spearman rows"
                  + (f", plots {', '.join(result['plots'])}" if result["plots"] else ""))
    for line in result["skipped"]:
        console.print(f"[yellow]skipped:[/] {line}")

"""``cnnexport study guidelines|zoo``: the FLOPs-vs-speed study."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import ExportError, UsageError
from .render import ProgressBar, print_guidelines, print_zoo
from .app import cli
from .options import RUNTIME_HELP, export_fn, int_list, plain_export_fn, save_json


@cli.group("study")
def study_group() -> None:
    """The FLOPs-vs-speed study: ShuffleNetV2's guidelines G1-G4, and the zoo's latency against MACs."""


def _study_common(fn):
    options = [
        click.option("--runtime", default="ort", show_default=True, help=f"Runtimes: {RUNTIME_HELP}."),
        click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True),
        click.option("--rounds", type=click.IntRange(1, 100), default=3, show_default=True,
                     help="Rounds, interleaved across runtimes; the paired test calls a difference from 3."),
        click.option("--runs", type=click.IntRange(min=1), default=30, show_default=True,
                     help="Minimum timed runs per round."),
        click.option("--min-time", type=click.FloatRange(min=0), default=0.5, show_default=True),
        click.option("--max-time", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True,
                     help="Stop a slow configuration after this many seconds (once it has 10 runs)."),
        click.option("-o", "--output-dir", type=click.Path(file_okay=False), default=None,
                     help="Where the exported networks go (default: a temporary folder)."),
        click.option("--save", type=click.Path(dir_okay=False), default=None, help="Write the results as JSON here."),
        click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout, nothing else."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _check_study_args(threads, rounds, runs, min_time, max_time, device):
    from ..bench.schedule import check_device

    if not 1 <= threads <= 4096 or not 1 <= rounds <= 100 or runs < 1 or min_time < 0 or max_time <= 0:
        raise UsageError("--threads must be 1..4096, --rounds 1..100, --runs >= 1, --min-time >= 0, --max-time > 0")
    check_device(device)
    return {"warmup": 5, "min_runs": runs, "min_time_s": min_time, "max_time_s": max_time}


def _run_study(fn, output_dir, save, as_json, **kwargs) -> dict:
    """Run a study with its exports in a temporary folder, or staged in ``output_dir`` (each network's
    folder moved there once the whole study has run: an interrupted study leaves nothing)."""
    import tempfile

    from .._atomic import StagingDir, check_output_file
    from ..bench.schedule import refuse_emulation

    refuse_emulation()
    for path, option in ((save, "--save"), (kwargs.get("plot"), "--plot")):
        if path:  # before the study's minutes of work, not after them
            check_output_file(path, option)

    with tempfile.TemporaryDirectory(prefix="cnnexport-study-") as tmp, \
            ProgressBar(as_json, "exporting") as (on_stage, on_progress):
        staging = StagingDir(output_dir) if output_dir else None
        out = staging.path if staging else Path(tmp)
        try:
            result = fn(out_dir=out, on_stage=on_stage, on_progress=on_progress, **kwargs)
            if staging:
                staging.commit()
                result = json.loads(json.dumps(result).replace(json.dumps(str(out))[1:-1],
                                                               json.dumps(str(output_dir))[1:-1]))
        finally:
            if staging:
                staging.discard()  # after a commit: the emptied staging folder only
    if not result["rows"]:
        raise ExportError("nothing could be measured: " + (result["failures"][0] if result["failures"] else "no rows"))
    if save:
        save_json(save, result)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    return result


@study_group.command("guidelines")
@click.option("--guidelines", "which", default="G1,G2,G3,G4", show_default=True)
@click.option("--widths", default="1,2,4", show_default=True, help="Channel width multipliers of the paper's tables.")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch size (the paper: 8 on GPU, 1 on ARM).")
@click.option("--align", default="8,16", show_default=True,
              help="Repeat G1 and G2 with channels rounded to these multiples (the alignment factor); 'none' skips.")
@_study_common
def study_guidelines_cmd(which, widths, batch, align, runtime, threads, device, rounds, runs, min_time, max_time,
                         output_dir, save, as_json):
    """G1-G4 on the paper's micro-networks (56x56, 10 blocks, the paper's channel settings), per runtime."""
    from ..bench.plan import parse_runtimes
    from ..study.run import parse_aligns, parse_guidelines, parse_widths, study_guidelines

    runtimes, selected, width_list = parse_runtimes(runtime), parse_guidelines(which), parse_widths(widths)
    aligns = parse_aligns(align)
    if not 1 <= batch <= 4096:
        raise UsageError(f"bad --batch {batch}: use 1..4096")
    timing = _check_study_args(threads, rounds, runs, min_time, max_time, device)
    result = _run_study(study_guidelines, output_dir, save, as_json, export=export_fn(), runtimes=runtimes,
                        guidelines=selected, widths=width_list, batch=batch, threads=threads, device=device,
                        rounds=rounds, timing=timing, aligns=aligns)
    if not as_json:
        print_guidelines(result)


@study_group.command("zoo")
@click.option("--models", default="*", show_default=True, help="Registry wildcard(s), comma-separated.")
@click.option("--batch", default="1", show_default=True, help="Batch sizes, e.g. 1,8.")
@click.option("--plot", type=click.Path(dir_okay=False), default="latency_vs_macs.png", show_default=True,
              help="Where the log-log plot of latency against MACs goes.")
@click.option("--no-plot", is_flag=True, help="No plot (no matplotlib needed): the tables and Spearman only.")
@click.option("--no-plain", is_flag=True, help="Skip measuring each runtime's own plain export beside cnnexport's "
              "files.")
@click.option("--precision", type=click.Choice(["fp32", "int8"]), default="fp32", show_default=True,
              help="Measure each runtime's fp32 files, or its int8 files (calibrated on the sample photographs; "
                   "rows named onnxruntime-int8, ..., against the int8 roofline; no PyTorch or plain rows).")
@_study_common
def study_zoo_cmd(models, batch, plot, no_plot, no_plain, precision, runtime, threads, device, rounds, runs, min_time, max_time, output_dir,
                  save, as_json):
    """Every zoo model on every runtime: latency against MACs (Spearman, log-log plot, GMAC/s, Table 8)."""
    from ..bench.plan import parse_runtimes
    from ..models import list_models
    from ..study.run import check_precision, study_zoo

    names = sorted({n for pattern in models.split(",") if pattern.strip() for n in list_models(pattern.strip())})
    if not names:
        raise UsageError(f"no model matches '{models}' (see cnnexport list)")
    plot = None if no_plot else plot
    if plot:  # before the measurements, not after
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            from ..errors import MissingDependencyError

            raise MissingDependencyError("the latency plot needs matplotlib: pip install 'cnnexport[study]', or pass "
                                         "--no-plot") from None
    runtimes, batches = parse_runtimes(runtime), int_list(batch, "--batch")
    check_precision(precision, runtimes)
    timing = _check_study_args(threads, rounds, runs, min_time, max_time, device)
    result = _run_study(study_zoo, output_dir, save, as_json, export=export_fn(), models=names,
                        runtimes=runtimes, batches=batches, threads=threads, device=device, rounds=rounds,
                        timing=timing, plot=plot, plain=not no_plain and precision == "fp32", precision=precision,
                        plain_export=None if no_plain or precision != "fp32" else plain_export_fn())
    if not as_json:
        print_zoo(result)

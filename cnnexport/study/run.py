"""Running the study: export the networks, measure them with the benchmark matrix, analyse.

``study_guidelines`` builds the paper's micro-networks; ``study_zoo`` the registry's models, plus a
plain ``torch.onnx.export`` of each (no folding, no simplification) measured on the same runtimes,
so that cnnexport's graphs can be checked never to be slower than the plain export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..bench.jobs import Job, artifact_job, jobs_from_report, torch_jobs
from ..bench.rows import paired, rows_from
from ..bench.schedule import measure
from ..bench.plan import ExportFn, FileCosts, ModuleMacs, formats_for, with_costs
from ..errors import UsageError
from ..exporter.formats import ALWAYS
from .analysis import (alignment_effect, guideline_table, micronet_macs, micronet_name, micronet_predictors,
                       plot_latency_vs_macs, table8, zoo_summary)
from .paper import ALIGNABLE, ALIGNMENTS, GUIDELINES, WIDTHS

Progress = Callable[[int, int, str], None]
Stage = Callable[[str], None]
MICRONET_BUILDER = "cnnexport.study.micronets:build"
PLAIN_FILE = ".plain.onnx"  # what torch.onnx.export alone writes, measured beside cnnexport's files


def _export(export: ExportFn, module, shape, out_dir: Path, name: str, runtimes: list[str]) -> dict:
    formats = formats_for(runtimes) or [ALWAYS]
    return export(module, shape, out_dir / name, name=name, formats=formats, photos=False)


def parse_widths(text: str) -> list[int]:
    try:
        widths = [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        widths = []
    if not widths or any(w not in WIDTHS for w in widths):
        raise UsageError(f"bad --widths '{text}'; choose from {','.join(map(str, WIDTHS))}")
    return widths


def parse_aligns(text: str) -> list[int]:
    """``--align``: channel multiples for the G1/G2 alignment factor (``none`` or empty: none)."""
    if text.strip().lower() in ("", "none", "0"):
        return []
    try:
        aligns = [int(a) for a in text.split(",") if a.strip()]
    except ValueError:
        aligns = []
    if not aligns or any(a < 2 or a > 64 for a in aligns):
        raise UsageError(f"bad --align '{text}'; give channel multiples 2..64, e.g. 8,16, or none")
    return list(dict.fromkeys(aligns))


def parse_guidelines(text: str) -> list[str]:
    names = [g.strip().upper() for g in text.split(",") if g.strip()]
    if not names or any(g not in GUIDELINES for g in names):
        raise UsageError(f"bad --guidelines '{text}'; choose from {','.join(GUIDELINES)}")
    return names


def study_guidelines(runtimes: list[str], out_dir: str | Path, *, export: ExportFn,
                     guidelines: list[str] | None = None, widths: list[int] = (1, 2, 4), batch: int = 1,
                     threads: int = 2, device: str = "cpu", rounds: int = 3, timing: dict | None = None,
                     aligns: list[int] = ALIGNMENTS, costs_of_file: FileCosts | None = None,
                     on_stage: Stage | None = None, on_progress: Progress | None = None) -> dict:
    """Export (with ``export``, the pipeline the CLI passes in) and measure the G1-G4 micro-networks on
    ``runtimes``; tables and verdicts per runtime. G1 and G2 are repeated with channels rounded to
    each multiple in ``aligns`` (the alignment factor). ``costs_of_file`` gives each exported graph's
    layer costs for the roofline columns."""
    from .micronets import build, input_shape

    stage = on_stage or (lambda _s: None)
    out_dir = Path(out_dir)
    jobs: list[Job] = []
    selected = guidelines or list(GUIDELINES)
    variants = [(g, a) for g in selected for a in [1, *(aligns if g in ALIGNABLE else [])]]
    for g, align in variants:
        for width in widths:
            for net in GUIDELINES[g]:
                name, settings = micronet_name(net, width, align), net.at_width(width, align)
                shape = input_shape(net.block, settings)
                macs = micronet_macs(net, width, align)
                stage(f"exporting {name}")
                net_jobs: list[Job] = []
                artifact_runtimes = [r for r in runtimes if r != "torch"]
                if artifact_runtimes:
                    report = _export(export, build(net.block, **settings), shape, out_dir, name, artifact_runtimes)
                    net_jobs += jobs_from_report(report, out_dir / name, name, artifact_runtimes, ["fp32"], [batch],
                                                 [threads], device, macs)
                if "torch" in runtimes:
                    net_jobs += torch_jobs(MICRONET_BUILDER, shape, [batch], [threads], device=device, macs=macs,
                                           model_kwargs={"block": net.block, **settings}, name=name)
                with_costs(net_jobs, costs_of_file, out_dir / name / f"{name}.onnx")
                jobs += net_jobs
    stage("measuring")
    result = measure(jobs, rounds=rounds, timing=timing, threads=[threads], device=device, on_progress=on_progress)
    rows, ceiling = result["rows"], result["ceilings_gflops"].get(threads)
    measured = sorted({r["runtime"] for r in rows})
    tables = [guideline_table(g, w, rows, rt, a) for rt in measured for g, a in variants for w in widths]
    verdicts = {rt: {g: {f"x{t['width']}" + (f"@{t['align']}" if t["align"] > 1 else ""): t["verdict"]
                         for t in tables if t["runtime"] == rt and t["guideline"] == g}
                     for g in selected} for rt in measured}
    return {"study": "guidelines", "threads": threads, "device": device, "batch": batch, "rounds": rounds,
            "widths": list(widths), "aligns": [a for a in aligns if any(g in ALIGNABLE for g in selected)],
            "ceiling_gflops": ceiling, "bandwidth_gbs": result["bandwidths_gbs"].get(threads),
            "machine": result["machine"], "tables": tables, "verdicts": verdicts,
            "alignment": alignment_effect(tables),
            "predictors": {rt: micronet_predictors([r for r in rows if r["runtime"] == rt], list(widths))
                           for rt in measured},
            "rows": rows, "failures": result["failures"]}


def _plain_export(module, shape, path: Path) -> None:
    """What a user gets from torch.onnx.export alone: no BN folding, no simplification."""
    import torch

    from .._atomic import atomic_path
    from .._quiet import quiet_fds

    with atomic_path(path) as tmp, quiet_fds(), torch.no_grad():
        torch.onnx.export(module.eval(), torch.zeros(shape), str(tmp), opset_version=18, dynamo=False,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})


def study_zoo(models: list[str], runtimes: list[str], out_dir: str | Path, *, export: ExportFn, macs_of: ModuleMacs,
              batches: list[int] = (1,), threads: int = 2, device: str = "cpu", rounds: int = 3,
              timing: dict | None = None, plot: str | Path | None = None, plain: bool = True,
              costs_of_file: FileCosts | None = None, on_stage: Stage | None = None,
              on_progress: Progress | None = None) -> dict:
    """Every model on every runtime: rank correlation of latency with MACs, memory access and the
    roofline bound, inversions at matched MACs, GMAC/s, Table 8, a plot. ``export``, ``macs_of`` and
    ``costs_of_file`` (the pipeline and the profilers) are passed in by the CLI."""
    from ..models import create_model, model_info

    stage = on_stage or (lambda _s: None)
    out_dir = Path(out_dir)
    jobs: list[Job] = []
    plain_jobs: list[Job] = []
    artifact_runtimes = [r for r in runtimes if r != "torch"]
    for name in models:
        shape = (1, *model_info(name).input_size)
        module = create_model(name)
        macs = macs_of(module, shape)
        stage(f"exporting {name}")
        model_jobs: list[Job] = []
        if artifact_runtimes:
            report = _export(export, module, shape, out_dir, name, artifact_runtimes)
            model_jobs += jobs_from_report(report, out_dir / name, name, artifact_runtimes, ["fp32"], list(batches),
                                           [threads], device, macs)
        if plain and any(r in ("onnxruntime", "openvino") for r in runtimes):
            path = out_dir / name / f"{name}{PLAIN_FILE}"
            _plain_export(module, shape, path)
            for rt in ("onnxruntime", "openvino"):
                if rt in runtimes:
                    job = artifact_job(path, rt, 1, threads, model=name, device=device, macs=macs)
                    job.runtime = f"{rt} (plain torch.onnx.export)"
                    plain_jobs.append(job)
        if "torch" in runtimes:
            model_jobs += torch_jobs(name, shape, list(batches), [threads], device=device, macs=macs)
        with_costs(model_jobs, costs_of_file, out_dir / name / f"{name}.onnx")
        jobs += model_jobs
    stage("measuring")
    measured = measure(jobs + plain_jobs, rounds=rounds, timing=timing, threads=[threads], device=device,
                       baseline="torch" if "torch" in runtimes else None, on_progress=on_progress)
    ceiling, machine = measured["ceilings_gflops"].get(threads), measured["machine"]
    rows = [r for r in measured["rows"] if not (r["artifact"] or "").endswith(PLAIN_FILE)]
    plain_rows = rows_from(plain_jobs, machine=machine)  # without the ceiling and the baseline
    result = {"study": "zoo", "threads": threads, "device": device, "rounds": rounds, "batches": list(batches),
              "ceiling_gflops": ceiling, "bandwidth_gbs": measured["bandwidths_gbs"].get(threads), "machine": machine, "summary": {f"batch{b}": zoo_summary(rows, b)
                                                                        for b in batches},
              "table8": table8(rows), "plain_export": plain_comparison(rows, plain_rows), "rows": rows,
              "plain_rows": plain_rows, "failures": measured["failures"]}
    if plot and rows:
        result["plot"] = str(plot_latency_vs_macs(rows, plot))
    return result


def plain_comparison(rows: list[dict], plain_rows: list[dict]) -> list[dict]:
    """cnnexport's graph against the plain export on the same runtime: slower only when the paired
    test (round by round) says so."""
    out = []
    for p in plain_rows:
        runtime = p["runtime"].split(" ")[0]
        ours = next((r for r in rows if r["model"] == p["model"] and r["runtime"] == runtime and r["batch"] == 1
                     and r["precision"] == "fp32"), None)
        if ours is None:
            continue
        test = paired(ours["round_medians_ms"], p["round_medians_ms"])
        out.append({"model": p["model"], "runtime": runtime, "cnnexport_ms": ours["median_ms"],
                    "plain_ms": p["median_ms"], "ratio": p["median_ms"] / ours["median_ms"],
                    "paired": test, "slower_beyond_spread": test["call"] == "slower"})
    return out

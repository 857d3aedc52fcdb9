"""Running the study: export the networks, measure them with the benchmark matrix, analyse.

``study_guidelines`` builds the paper's micro-networks; ``study_zoo`` the registry's models, plus a
plain export of each with every runtime's own converter (``exporter.plain``: no folding, no
simplification) measured in the same rounds, so that cnnexport's files can be checked never to be
slower than the plain ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..bench.jobs import Job, file_jobs, jobs_from_report, torch_jobs
from ..bench.rows import against_plain, uncallable
from ..bench.schedule import measure
from ..bench.plan import ExportFn, PlainFn, device_options, formats_for, with_costs
from ..errors import CnnexportError, UsageError
from ..listopt import parse_list
from ..exporter.formats import ALWAYS, by_runtime, int8_formats
from ..runtimes import MODULE_RUNTIMES
from .analysis import (alignment_effect, guideline_table, micronet_macs, micronet_name, micronet_predictors,
                       plot_latency_vs_macs, table8, verdict_index, zoo_summary)
from .paper import ALIGNABLE, ALIGNMENTS, GUIDELINES, WIDTHS

Progress = Callable[[int, int, str], None]
Stage = Callable[[str], None]
MICRONET_BUILDER = "cnnexport.study.micronets:build"


#: what the zoo study's int8 files are calibrated on: the sample photographs (the zoo's weights are random,
#: so the int8 files are measured for their speed, and their check against PyTorch is reported, not required)
INT8_CHOICES = {"int8": True, "calib": "samples", "calib_count": 64, "int8_min_cosine": 0.0}
PRECISIONS = ("fp32", "int8")


def _export(export: ExportFn, module, shape, out_dir: Path, name: str, runtimes: list[str], device: str,
            precision: str = "fp32", batches: list[int] = (1,)) -> dict:
    formats = formats_for(runtimes) or [ALWAYS]
    return export(module, shape, out_dir / name, name=name, formats=formats, photos=False,
                  fp16=_fp16_engines(runtimes, device), **(INT8_CHOICES if precision == "int8" else {}),
                  **device_options(formats, device, list(batches)))


def _export_each(export: ExportFn, module, shape, out_dir: Path, name: str, runtimes: list[str], device: str,
                 precision: str = "fp32", batches: list[int] = (1,)) -> tuple[list[tuple[dict, list[str]]], list[str]]:
    """Every runtime's files in one export; where that fails (one runtime's file does not verify and the
    export writes nothing), one export per runtime, so that one runtime's failure costs the study that
    runtime's row, not the model. Returns (report, runtimes) pairs and the failures, one line each."""
    try:
        return [(_export(export, module, shape, out_dir, name, runtimes, device, precision, batches), runtimes)], []
    except CnnexportError:
        if len(runtimes) == 1:
            raise
    done, failed = [], []
    for rt in runtimes:
        try:
            done.append((_export(export, module, shape, out_dir / rt, name, [rt], device, precision, batches), [rt]))
        except CnnexportError as exc:
            failed.append(f"{name} on {rt}: {exc}")
    return done, failed


def _gpu_precision(runtime: str, device: str) -> str | None:
    """The precision a runtime's files are also measured at on a GPU, as they are deployed there (the
    format row's ``gpu_study_precision``: TensorRT's fp16 engine, rows labelled tensorrt-fp16)."""
    fmt = by_runtime(runtime)
    return fmt.gpu_study_precision if device == "cuda" and fmt else None


def _fp16_engines(runtimes: list[str], device: str) -> bool:
    return any(_gpu_precision(r, device) == "fp16" for r in runtimes)


def _file_jobs(report: dict, folder: Path, name: str, runtimes: list[str], batches: list[int], threads: int,
               device: str, macs: float | None, precision: str = "fp32") -> list[Job]:
    """fp32 files on every runtime, and the GPU precision of ``_gpu_precision``; with ``precision``
    int8, the int8 files only."""
    if precision == "int8":
        return jobs_from_report(report, folder, name, runtimes, ["int8"], batches, [threads], device, macs)
    jobs = jobs_from_report(report, folder, name, runtimes, ["fp32", "fp16"], batches, [threads], device, macs)
    return [j for j in jobs if j.precision == "fp32" or j.precision == _gpu_precision(j.runtime, device)]


def _label_precisions(rows: list[dict]) -> list[dict]:
    """A row of another precision is a runtime of its own in the study's tables (``tensorrt-fp16``)."""
    for r in rows:
        if r["precision"] != "fp32":
            r["runtime"] = f"{r['runtime']}-{r['precision']}"
    return rows


def parse_widths(text: str) -> list[int]:
    return parse_list(text, "--widths", f"choose from {','.join(map(str, WIDTHS))}", item=int,
                      valid=lambda w: w in WIDTHS)


def parse_aligns(text: str) -> list[int]:
    """``--align``: channel multiples for the G1/G2 alignment factor (``none`` or empty: none)."""
    if text.strip().lower() in ("", "none", "0"):
        return []
    return parse_list(text, "--align", "give channel multiples 2..64, e.g. 8,16, or none", item=int,
                      valid=lambda a: 2 <= a <= 64, unique=True)


def parse_guidelines(text: str) -> list[str]:
    return parse_list(text, "--guidelines", f"choose from {','.join(GUIDELINES)}", item=str.upper,
                      valid=lambda g: g in GUIDELINES)


def study_guidelines(runtimes: list[str], out_dir: str | Path, *, export: ExportFn,
                     guidelines: list[str] | None = None, widths: list[int] = (1, 2, 4), batch: int = 1,
                     threads: int = 2, device: str = "cpu", rounds: int = 3, timing: dict | None = None,
                     aligns: list[int] = ALIGNMENTS, on_stage: Stage | None = None,
                     on_progress: Progress | None = None) -> dict:
    """Export (with ``export``, the pipeline the CLI passes in) and measure the G1-G4 micro-networks on
    ``runtimes``; tables and verdicts per runtime. G1 and G2 are repeated with channels rounded to
    each multiple in ``aligns`` (the alignment factor). The roofline columns use each exported graph's
    layer costs (the module's, when only PyTorch runs)."""
    from ..profile.torch_profile import module_costs
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
                artifact_runtimes = [r for r in runtimes if r not in MODULE_RUNTIMES]
                if artifact_runtimes:
                    report = _export(export, build(net.block, **settings), shape, out_dir, name, artifact_runtimes,
                                     device, batches=[batch])
                    net_jobs += _file_jobs(report, out_dir / name, name, artifact_runtimes, [batch], threads, device,
                                           macs)
                if set(MODULE_RUNTIMES) & set(runtimes):
                    net_jobs += torch_jobs(MICRONET_BUILDER, shape, [batch], [threads], device=device, macs=macs,
                                           model_kwargs={"block": net.block, **settings}, name=name,
                                           runtimes=tuple(runtimes))
                with_costs(net_jobs, out_dir / name / f"{name}.onnx",
                           lambda: module_costs(build(net.block, **settings), shape))
                jobs += net_jobs
    stage("measuring")
    result = measure(jobs, rounds=rounds, timing=timing, threads=[threads], device=device, on_progress=on_progress)
    rows, ceiling = _label_precisions(result["rows"]), result["ceilings_gflops"].get(threads)
    measured = sorted({r["runtime"] for r in rows})
    tables = [guideline_table(g, w, rows, rt, a) for rt in measured for g, a in variants for w in widths]
    return {"study": "guidelines", "threads": threads, "device": device, "batch": batch, "rounds": rounds,
            "widths": list(widths), "aligns": [a for a in aligns if any(g in ALIGNABLE for g in selected)],
            "ceiling_gflops": ceiling, "bandwidth_gbs": result["bandwidths_gbs"].get(threads),
            "memory_roofs": result.get("memory_roofs", {}).get(threads),
            "machine": result["machine"], "tables": tables, "verdicts": verdict_index(tables),
            "alignment": alignment_effect(tables),
            "predictors": {rt: micronet_predictors([r for r in rows if r["runtime"] == rt], list(widths))
                           for rt in measured},
            "rows": rows, "failures": result["failures"], "limits": result["limits"],
            "warnings": result["limits_warnings"] + uncallable(rounds, "every guideline's verdict is inconclusive")}


def study_zoo(models: list[str], runtimes: list[str], out_dir: str | Path, *, export: ExportFn,
              batches: list[int] = (1,), threads: int = 2, device: str = "cpu", rounds: int = 3,
              timing: dict | None = None, plot: str | Path | None = None, plain: bool = True,
              plain_export: PlainFn | None = None, precision: str = "fp32", on_stage: Stage | None = None,
              on_progress: Progress | None = None) -> dict:
    """Every model on every runtime: rank correlation of latency with MACs, memory access and the
    roofline bound, inversions at matched MACs, GMAC/s, Table 8, a plot. ``export`` and ``plain_export``
    (the pipeline and the runtimes' own converters) are passed in by the CLI; with ``plain`` and
    ``plain_export`` each model's plain files are measured beside cnnexport's. With ``precision``
    int8, each runtime's int8 file is measured instead of its fp32 one (rows ``onnxruntime-int8``...),
    against the int8 roofline; PyTorch and the plain files have no int8 and are refused."""
    from ..models import create_model, model_info
    from ..profile.torch_profile import module_costs, module_macs

    check_precision(precision, runtimes)
    plain = plain and precision == "fp32"
    stage = on_stage or (lambda _s: None)
    out_dir = Path(out_dir)
    jobs: list[Job] = []
    export_failures: list[str] = []
    artifact_runtimes = [r for r in runtimes if r not in MODULE_RUNTIMES]
    for name in models:
        shape = (1, *model_info(name).input_size)
        module = create_model(name)
        macs = module_macs(module, shape)
        stage(f"exporting {name}")
        model_jobs: list[Job] = []
        onnx_path = out_dir / name / f"{name}.onnx"
        if artifact_runtimes:
            exported, failed = _export_each(export, module, shape, out_dir, name, artifact_runtimes, device, precision,
                                            list(batches))
            export_failures += failed
            for report, rts in exported:
                folder = out_dir / name if rts == artifact_runtimes else out_dir / rts[0] / name
                model_jobs += _file_jobs(report, folder, name, rts, list(batches), threads, device, macs, precision)
                onnx_path = onnx_path if onnx_path.is_file() else folder / f"{name}.onnx"
        if plain and plain_export is not None and artifact_runtimes:
            for rt, path in plain_export(module, shape, out_dir / name, name, artifact_runtimes).items():
                for job in file_jobs(path, rt, 1, threads, model=name, device=device, macs=macs,
                                     input_size=shape[1:]):
                    job.plain = True
                    model_jobs.append(job)
        if set(MODULE_RUNTIMES) & set(runtimes):
            model_jobs += torch_jobs(name, shape, list(batches), [threads], device=device, macs=macs,
                                     runtimes=tuple(runtimes))
        with_costs(model_jobs, onnx_path, lambda: module_costs(module, shape))
        jobs += model_jobs
    stage("measuring")
    measured = measure(jobs, rounds=rounds, timing=timing, threads=[threads], device=device,
                       baseline="torch" if "torch" in runtimes else None, on_progress=on_progress)
    rows = [r for r in _label_precisions(measured["rows"]) if not r["plain"]]
    plain_rows = [r for r in measured["rows"] if r["plain"]]
    result = {"study": "zoo", "precision": precision, "threads": threads, "device": device, "rounds": rounds, "batches": list(batches),
              "ceiling_gflops": measured["ceilings_gflops"].get(threads),
              "ceilings_by_precision": measured.get("ceilings_by_precision", {}).get(threads),
              "bandwidth_gbs": measured["bandwidths_gbs"].get(threads),
              "memory_roofs": measured.get("memory_roofs", {}).get(threads), "machine": measured["machine"],
              "summary": {f"batch{b}": zoo_summary(rows, b, precision) for b in batches},
              "table8": table8(rows, precision=precision), "plain_export": plain_comparison(measured["rows"]), "rows": rows,
              "plain_rows": plain_rows, "failures": export_failures + measured["failures"], "limits": measured["limits"],
              "warnings": measured["limits_warnings"] + uncallable(rounds, "the inversions at matched MACs are left "
                                                                                 "empty, the plain files' verdicts tied")}
    if plot and rows:
        result["plot"] = str(plot_latency_vs_macs(rows, plot, precision=precision))
    return result


def check_precision(precision: str, runtimes: list[str]) -> None:
    """The zoo study's ``precision``: fp32, or int8 on runtimes that all have int8 files."""
    if precision not in PRECISIONS:
        raise UsageError(f"bad precision '{precision}': use {' or '.join(PRECISIONS)}")
    if precision == "int8":
        without = [r for r in runtimes if not (fmt := by_runtime(r)) or "int8" not in fmt.precisions]
        if without:
            with_int8 = [f.runtime for f in int8_formats() if not f.needs_cuda]
            raise UsageError(f"{', '.join(without)} {'has' if len(without) == 1 else 'have'} no int8 files: "
                             f"give --runtime from {','.join(with_int8)} with --precision int8")


def plain_comparison(rows: list[dict]) -> list[dict]:
    """cnnexport's file against the plain one on the same runtime (``bench.rows.against_plain``):
    slower only when the paired test (round by round) says so."""
    return [{"model": c["model"], "runtime": c["runtime"], "cnnexport_ms": c["median_ms"],
             "plain_ms": c["plain_median_ms"], "ratio": c["plain_median_ms"] / c["median_ms"], "paired": c["paired"],
             "slower_beyond_spread": c["verdict"] == "slower"} for c in against_plain(rows) if c["batch"] == 1]

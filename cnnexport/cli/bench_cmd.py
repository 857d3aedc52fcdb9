"""``cnnexport bench``: latency of a model (exported first) or of files, in paired rounds."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UsageError
from .render import ProgressBar, StageStatus, print_bench
from .app import cli
from .options import (RUNTIME_HELP, export_fn, files_of_folders, int_list, parse_input_size, plain_export_fn,
                      save_json, trust_pickle_option)


@cli.command("bench")
@click.argument("targets", nargs=-1, required=True)
@click.option("--runtime", default=None,
              help=f"Runtimes: {RUNTIME_HELP} (default: a file's own; for a model: ort,torch), or all: for a model, "
                   "every runtime installed here, a format it cannot be exported to reported but not failing the run.")
@click.option("--precision", default="fp32", show_default=True,
              help="fp32, fp16, bf16 or int8, comma-separated (fp32,fp16,int8), for a model name; a file has its "
                   "own.")
@click.option("--batch", default="1", show_default=True, help="Batch sizes, e.g. 1,8.")
@click.option("--threads", default="1", show_default=True, help="Thread counts, e.g. 1,2.")
@click.option("--input-size", default=None,
              help="H, HxW or C,H,W: a model name's export size, or the size a file leaves dynamic.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--baseline", default=None, help="Runtime the speed-up column divides by (default: torch if measured).")
@click.option("--rounds", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Rounds, interleaved across configurations; the paired test (--pick, --plain) calls a "
                   "difference from 3 (use 7 for small ones).")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True, help="Minimum timed runs per round.")
@click.option("--min-time", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Minimum seconds of timed runs.")
@click.option("--max-time", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop a slow configuration after this many seconds "
              "(once it has 10 runs).")
@click.option("--no-ceiling", is_flag=True, help="Skip measuring the machine's limits (compute ceilings, memory "
              "bandwidth); the roofline columns stay empty.")
@click.option("--pick", is_flag=True, help="Name the fastest artifact per precision, with the evidence.")
@click.option("--plain", is_flag=True, help="For a model name: also export it with each runtime's own converter "
              "(torch.onnx.export, ov.convert_model, litert_torch.convert, ...) and measure those files in the same "
              "rounds, ours against plain by the paired test.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default=None,
              help="For a model name: where the exported files go (default: a temporary folder).")
@click.option("--reuse", is_flag=True, help="For a model name: measure the files an earlier export left in "
              "--output-dir (its report.json) instead of exporting again.")
@click.option("--weights", default=None, help="For a model name: its weights (a state_dict file or folder, or a "
              "shipped tag: digits), for the export and PyTorch's rows.")
@click.option("--num-classes", type=int, default=None, help="For a model name: its classifier outputs.")
@click.option("--use-ema", is_flag=True, help="For a model name: the --weights checkpoint's EMA weights.")
@trust_pickle_option
@click.option("--calib", default="samples", show_default=True,
              help="For a model name: the int8 files' calibration data (samples, digits, a folder, .npy/.npz).")
@click.option("--data", default=None, help="Labelled images (a folder with one subfolder per class, digits, .npz "
              "with x, y): each file's top-1 and top-5 in its rows, and its agreement with PyTorch's.")
@click.option("--data-count", type=click.IntRange(min=1), default=None,
              help="Evaluate the first N images of --data's fixed shuffled order (default: all).")
@click.option("--classes", "classes_file", type=click.Path(dir_okay=False), default=None,
              help="With --data: class names in the model's output order, one per line (default: the folders "
                   "sorted by name).")
@click.option("--save", type=click.Path(dir_okay=False), default=None, help="Also write the JSON rows to this file.")
@click.option("--wide", is_flag=True, help="Show every column (p90, p99, min, MACs, GMAC/s, % of the compute "
              "ceiling, roofline ms); the default set fits 100 columns.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON rows on stdout, nothing else.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV rows on stdout.")
def bench_cmd(targets, runtime, precision, batch, threads, input_size, device, baseline, rounds, warmup, runs,
              min_time, max_time, no_ceiling, pick, plain, output_dir, reuse, weights, num_classes, use_ema,
              trust_pickle, calib, data, data_count, classes_file, save, wide, as_json, as_csv):
    """Latency of a MODEL (a zoo name, timm:NAME or module:callable; exported first) or of exported files (or an
    export's folder: its files), across runtimes, precisions, batches and threads. Each measurement runs in its
    own process; rounds are interleaved. Files need no torch."""
    import tempfile

    from ..bench import plan, rows, schedule
    from ..bench.schedule import check_device

    schedule.refuse_emulation()  # before any export
    batches, thread_counts = int_list(batch, "--batch"), int_list(threads, "--threads")
    precisions = plan.parse_precisions(precision)
    every_runtime = runtime is not None and runtime.strip().lower() == "all"
    runtimes = plan.parse_runtimes(runtime) if runtime is not None and not every_runtime else None
    check_device(device)
    # a zoo name, timm:NAME, package.module:callable or path/to/file.py:callable
    from ..runtimes import runtime_for

    target = Path(targets[0])
    is_model = len(targets) == 1 and (not target.exists() and (target.suffix == "" or ":" in targets[0])
                                      or (target / "config.json").is_file()  # a timm model folder
                                      or trust_pickle and target.is_file() and runtime_for(target) is None)
    if every_runtime and not is_model:
        raise UsageError("--runtime all exports a model to every installed runtime's format; files run on their own "
                         "runtime: leave --runtime out, or name the runtimes")
    if plain and not is_model:
        raise UsageError("--plain exports a model with each runtime's own converter; give a model (a zoo name, "
                         "timm:NAME or module:callable), not files")
    _refuse_unused(is_model, device, data, data_count, classes_file, weights, num_classes, use_ema, trust_pickle,
                   calib)
    load = {k: v for k, v in (("weights", weights), ("num_classes", num_classes), ("use_ema", use_ema),
                              ("trust_pickle", trust_pickle)) if v}
    if reuse and not (is_model and output_dir):
        raise UsageError("--reuse measures a model name's earlier export: give the model name and the --output-dir "
                         "it was exported to")
    size = None
    if input_size:
        channels = None  # a file's, or a user's model's (its first convolution's: plan.model_jobs)
        if is_model:
            from ..models import is_registered, model_info

            channels = model_info(targets[0]).input_size[0] if is_registered(targets[0]) else None
        size = parse_input_size(input_size, channels)
    notes: list[str] = []
    module = None  # a model name's, as exported
    left_out: list[dict] = []  # the files a model name's export could not make (its report's "failed")
    with tempfile.TemporaryDirectory(prefix="cnnexport-bench-") as tmp:
        if is_model:
            if every_runtime:
                from ..runtimes import installed_runtimes

                runtimes, notes = installed_runtimes(device)
            runtimes = runtimes or ["onnxruntime", "torch"]
            out = Path(output_dir) if output_dir else Path(tmp)
            with StageStatus(f"exporting {targets[0]}") as on_stage:
                jobs, export_notes, report, module = plan.model_jobs(
                    targets[0], runtimes, precisions, batches, thread_counts, device, out, export=export_fn(),
                    on_stage=on_stage, input_size=size, plain_export=plain_export_fn() if plain else None,
                    reuse=reuse, weights=load, calib=calib, every_runtime=every_runtime)
            notes += export_notes
            left_out = report.get("failed", [])
        else:
            files = files_of_folders(targets)
            _refuse_torchscript_files(files)
            jobs = plan.artifact_jobs(files, runtimes or [], batches, thread_counts, device, input_size=size)
        if not jobs:
            raise UsageError("nothing to measure: check --runtime and --precision")
        timing = {"warmup": warmup, "min_runs": runs, "min_time_s": min_time, "max_time_s": max_time}
        baseline = plan.parse_runtimes(baseline)[0] if baseline else ("torch" if any(j.runtime == "torch" for j in jobs)
                                                                     else None)
        with ProgressBar(as_json or as_csv) as (_, on_progress):
            measured = schedule.measure(jobs, rounds=rounds, timing=timing, threads=thread_counts, device=device,
                                        ceiling=not no_ceiling, baseline=baseline, on_progress=on_progress)
        schedule.raise_if_all_failed(jobs)
        accuracy = _accuracy(jobs, measured["rows"], data, data_count, classes_file, module, size,
                             quiet=as_json or as_csv) if data else None
    from ..runtimes import default_precision_notes, not_yet_run_notes

    notes = notes + default_precision_notes({r["runtime"] for r in measured["rows"] if r["device"] == "cpu"})
    notes += not_yet_run_notes({r["runtime"] for r in measured["rows"]}, device)
    result = {"rows": measured["rows"], "ceilings_gflops": measured["ceilings_gflops"],
              "ceilings_by_precision": measured.get("ceilings_by_precision", {}),
              "memory_roofs": measured.get("memory_roofs", {}),
              "bandwidths_gbs": measured["bandwidths_gbs"], "limits": measured["limits"],
              "notes": notes + measured["failures"], "warnings": measured["limits_warnings"]}
    if left_out:
        result["left_out"] = left_out
    if accuracy is not None:
        result["accuracy"] = accuracy
        if any(r["runtime"] == "torch-compile" for r in result["rows"]):
            result["notes"].append("torch-compile: top-1 not measured (compiling for the data's batch takes "
                                   "minutes); it computes what PyTorch's eager row does, to rounding")
    if pick:
        result["pick"] = rows.pick(result["rows"])
    if plain:
        result["plain"] = rows.against_plain(result["rows"])
        result["notes"] += rows.uncallable(rounds, "every file against its plain one is a tie")
    if save:
        save_json(save, result)
    print_bench(result, as_json, as_csv, wide)
    schedule.raise_if_any_failed(jobs)


def _refuse_unused(is_model, device, data, data_count, classes_file, weights, num_classes, use_ema, trust_pickle,
                   calib) -> None:
    """Options that would be ignored are refused: the model's own with files, --data's without it."""
    if not is_model:
        given = [o for o, v in (("--weights", weights), ("--num-classes", num_classes), ("--use-ema", use_ema),
                                ("--trust-pickle", trust_pickle), ("--calib", calib != "samples")) if v]
        if given:
            raise UsageError(f"{', '.join(given)} describe{'s' if len(given) == 1 else ''} a model name's export: "
                             "files carry their own weights and int8 scales; leave it out")
    if not data:
        given = [o for o, v in (("--data-count", data_count), ("--classes", classes_file)) if v]
        if given:
            raise UsageError(f"{' and '.join(given)} apply only with --data (labelled images)")
    elif device != "cpu":
        raise UsageError("--data measures accuracy on the CPU; measure the GPU's latency without it, and each file's "
                         "accuracy with cnnexport eval FILES --data DATA")


def _accuracy(jobs, rows, data, count, classes_file, module, size, quiet) -> list[dict]:
    """``--data``: every measured file's top-1 and top-5 (and PyTorch's, for a model name: ``module``, the one
    exported, whose weights the files hold) on the data, added to the rows; the evaluations' results
    (``cnnexport eval``'s, one per input size)."""
    from ..bench import accuracy
    from ..exporter import evaluate as ev
    from ..runtimes import load_at_batch
    from .render import EvalProgress

    batch = 32  # eval's default
    workers, threads = ev.eval_threads(None, None)
    candidates = {}
    for key, (path, runtime) in accuracy.measured_files(jobs).items():
        meta = ev.reference_meta(None, [path])
        candidates[key] = ev.Candidate(load_at_batch(path, runtime, threads, batch),
                                       dict(meta.get("preprocess") or {}), meta.get("classes"))
    if module is not None and any(r["runtime"] == "torch" and r["device"] == "cpu" for r in rows):
        from ..exporter.pipeline import exportable
        from ..models.outputs import FirstOutput
        from ..runtimes.torch_eager import TorchModel

        chw = next(tuple(j.worker_job["input_shape"][1:]) for j in jobs if j.worker_job.get("kind") == "torch")
        module = exportable(module)[0]
        fields = dict(next(iter(candidates.values())).preprocess) if candidates else {}
        fields.update(getattr(module, "cnnexport_preprocess", {}))
        torch_model = TorchModel(FirstOutput(module), (1, *chw), threads=threads)
        classes = getattr(module, "cnnexport_classes", None)
        candidates = {accuracy.PYTORCH: ev.Candidate(torch_model, fields, classes), **candidates}
    if not candidates:
        raise UsageError("--data: no measured row runs a file or PyTorch's eager model on the CPU")
    with EvalProgress(quiet, count or 0) as on_progress:
        results = ev.evaluate_by_input_size(candidates, data, count=count, given=size, classes_file=classes_file,
                                            reference=accuracy.PYTORCH, batch=batch, workers=workers,
                                            on_progress=on_progress)
    accuracy.add_to_rows(rows, jobs, results)
    return results


def _refuse_torchscript_files(targets) -> None:
    """A TorchScript file among the files: bench measures exported files, so export it first (one line)."""
    from ..runtimes import runtime_for

    unread = [t for t in targets if runtime_for(t) is None and Path(t).is_file()]
    if not unread:
        return
    from ..models import is_torchscript_file  # imports torch: only for a file no runtime reads

    for target in unread:
        if is_torchscript_file(target):
            stem = Path(target).stem
            raise UsageError(f"'{target}' is a TorchScript file: bench measures exported files; export it first "
                             f"(cnnexport {target} --openvino -o out), then cnnexport bench out/{stem}.onnx "
                             f"out/{stem}.xml")

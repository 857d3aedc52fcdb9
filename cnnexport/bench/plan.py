"""From what the user named to benchmark jobs: artifact files as they are, or a zoo model exported
first to every format the selected runtimes need (int8 too when asked). Torch is imported only
for a model name."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import UsageError
from ..listopt import parse_list
from ..exporter.formats import FORMATS, bf16_formats, by_runtime, fp16_formats, int8_formats
from ..runtimes import ALIASES, CUDA_RUNTIMES, MODULE_RUNTIMES, RUNTIMES, check_model_file, no_runtime_for, runtime_for
from ..profile.roofline import ModelCosts
from .jobs import PRECISIONS, Job, file_jobs, jobs_from_report, left_out_jobs, torch_jobs

# What the CLI passes in, so that bench never imports the exporter (DESIGN.md): the export pipeline
# (the profilers it reads from ``profile``, below it).
ExportFn = Callable[..., dict]
# The plain-tool exports (exporter.plain.plain_export): module, shape, folder, name, runtimes -> runtime: path.
PlainFn = Callable[..., dict]

RUNTIME_NAMES = ", ".join(RUNTIMES)


def formats_for(runtimes: list[str]) -> list[str]:
    """The formats to export so that each of ``runtimes`` has a file (from ``FORMATS``)."""
    return [f.name for r in runtimes if (f := by_runtime(r))]


def device_options(formats: list[str], device: str, batches: list[int]) -> dict:
    """The format options that make ``formats``' files for ``device`` (``bench --device cuda``: AOTInductor's
    package compiled for the GPU), each such file with a dynamic batch up to the largest of ``batches``, so that
    a GPU row at batch 64 is one batch of 64, not 64 calls of the export's batch."""
    options: dict = {}
    if device == "cpu":
        return options
    for fmt in (FORMATS[f] for f in formats):
        if (on := fmt.device_option()) is None or device not in on.choices:
            continue
        options[on.name] = device
        dynamic = next((o for o in fmt.options if o.dynamic_batch), None)
        if dynamic is not None and max(batches) >= dynamic.low:
            options[dynamic.name] = max(batches)
    return options


def parse_runtimes(text: str | None) -> list[str]:
    names = [ALIASES.get(r.strip().lower(), r.strip().lower()) for r in (text or "").split(",") if r.strip()]
    bad = [n for n in names if n not in RUNTIMES]
    if bad or (text is not None and not names):
        raise UsageError(f"unknown runtime(s) '{','.join(bad) or text}'; choose from {RUNTIME_NAMES}")
    return list(dict.fromkeys(names))


def parse_precisions(text: str) -> list[str]:
    return parse_list(text, "--precision", f"choose from {', '.join(PRECISIONS)}, comma-separated (fp32,int8)",
                      item=str.lower, valid=lambda p: p in PRECISIONS, unique=True)


def artifact_jobs(paths: list[str], runtimes: list[str], batches: list[int], threads: list[int],
                  device: str, input_size: tuple | None = None) -> list[Job]:
    """Jobs for model files, each with its layer costs (MACs per image and the roofline's bytes, from
    the fp32 ONNX graph: ``profile.onnx_profile.file_costs``), or None."""
    from ..profile.onnx_profile import file_costs

    jobs = []
    for path in paths:
        check_model_file(path)
        own = runtime_for(path)
        chosen = [r for r in runtimes if r not in MODULE_RUNTIMES] or ([own] if own else [])
        if not chosen:
            raise no_runtime_for(path)
        costs = file_costs(path, input_size)
        for runtime in chosen:
            for t in threads:
                for b in batches:
                    for job in file_jobs(path, runtime, b, t, device=device, macs=costs.macs if costs else None,
                                         input_size=input_size):
                        job.costs = costs
                        jobs.append(job)
    return jobs


def model_jobs(model: str, runtimes: list[str], precisions: list[str], batches: list[int], threads: list[int],
               device: str, out_dir: str | Path, *, export: ExportFn,
               on_stage: Callable[[str], None] | None = None, input_size: tuple[int, ...] | None = None,
               calib: str = "samples", plain_export: PlainFn | None = None,
               reuse: bool = False, weights: dict | None = None,
               every_runtime: bool = False) -> tuple[list[Job], list[str], dict, object]:
    """Export ``model`` into ``out_dir`` for the selected runtimes with ``export`` (the pipeline, passed
    in by the CLI); jobs, notes, the export report and the module exported (its weights are the files').
    Every job's roofline uses the exported ONNX graph's layer costs; ``plain_export`` also writes each
    runtime's plain-tool file, measured as fp32 jobs marked ``plain``. ``reuse``: measure the files an earlier export of ``model`` left in ``out_dir``
    (its report.json) instead of exporting again; every selected runtime and precision must be there.
    ``weights``: ``load_model``'s weights, num_classes, use_ema and trust_pickle, for the export and PyTorch's
    rows. A format the model cannot be exported to (its converter fails, or its file fails its check) leaves out
    only its own jobs: each is reported with why, and fails the run unless ``every_runtime`` (``--runtime all``)."""
    from ..models import create_model, is_registered, load_model, model_input_size
    from ..profile.torch_profile import module_macs

    spec, module, weights = model, None, weights or {}
    if not is_registered(model):  # timm:NAME, package.module:callable or path/to/file.py:callable
        module = load_model(spec, **weights)
        # its files are named after the callable (a timm model folder's after its architecture, a pickled model's
        # after its file), as export names them
        model = module.cnnexport_name if Path(spec).exists() else spec.rpartition(":")[2]
    default = model_input_size(spec, module, weights.get("weights"))
    shape = (1, input_size[0] or default[0], *input_size[1:]) if input_size else (1, *default)
    notes: list[str] = []
    formats = formats_for(runtimes)
    wanted = {}
    for precision, with_it in (("int8", int8_formats()), ("fp16", fp16_formats()), ("bf16", bf16_formats())):
        wanted[precision] = precision in precisions and any(f.runtime in runtimes for f in with_it)
        if precision in precisions:
            labels = [f.runtime_label for f in with_it]
            without = [r for r in runtimes if (f := by_runtime(r)) and precision not in f.precisions]
            if without:
                notes.append(f"{', '.join(without)}: no {precision} artifact (cnnexport writes {precision} for "
                             f"{', '.join(labels[:-1])} and {labels[-1]})")
    for fmt in (f for f in bf16_formats() if wanted["bf16"] and f.runtime in runtimes):
        try:
            fmt.module().bf16_preflight()
        except UsageError as exc:  # this CPU cannot compute bf16: the other precisions are still measured
            notes.append(f"{fmt.runtime}: no bf16 rows: {exc}")
            wanted["bf16"] = False
    report = {}
    if formats and reuse:  # checked before a zoo model is built (a user's was, for its size)
        report = reused_report(model, out_dir, formats, [p for p in precisions if p == "fp32" or wanted.get(p)], device)
    module = module if module is not None else create_model(model, **weights)
    macs = module_macs(module, shape)
    if formats and not reuse:
        report = export(module, shape, out_dir, name=model, formats=formats, int8=wanted["int8"],
                        fp16=wanted["fp16"], bf16=wanted["bf16"], calib=calib,
                        int8_min_cosine=0.0, keep_going=True, on_stage=on_stage,
                        **device_options(formats, device, batches))
    jobs: list[Job] = []
    if set(MODULE_RUNTIMES) & set(runtimes) and "fp32" in precisions:
        jobs += torch_jobs(spec, shape, batches, threads, device=device, macs=macs, name=model,
                           runtimes=tuple(runtimes), weights=weights)
    jobs += jobs_from_report(report, out_dir, model, runtimes, precisions, batches, threads, device, macs)
    jobs += left_out_jobs(report, out_dir, model, runtimes, precisions, batches[0], threads[0], device,
                          optional=every_runtime)
    if plain_export is not None and "fp32" in precisions:
        if on_stage:
            on_stage(f"exporting {model} with each runtime's own converter (--plain)")
        measured = [r for r in runtimes if r not in MODULE_RUNTIMES and (device != "cuda" or r in CUDA_RUNTIMES)]
        for runtime, path in plain_export(module, shape, out_dir, model, measured).items():
            for t in threads:
                for b in batches:
                    for job in file_jobs(path, runtime, b, t, model=model, device=device, macs=macs,
                                         input_size=shape[1:]):  # an ncnn .param records no shape
                        job.plain = True
                        jobs.append(job)
    with_costs(jobs, Path(out_dir) / f"{model}.onnx")
    if device == "cuda":
        dropped = [r for r in runtimes if r not in CUDA_RUNTIMES]
        if dropped:
            notes.append(f"--device cuda measures {' and '.join(CUDA_RUNTIMES)} only; {', '.join(dropped)} left out")
    return jobs, notes, report, module


def reused_report(model: str, out_dir: str | Path, formats: list[str], precisions: list[str], device: str) -> dict:
    """The report.json of an earlier export of ``model`` in ``out_dir``, checked to hold every one of ``formats``
    at each of ``precisions`` (compiled for ``device`` where the format is compiled for one); raises naming
    what is missing."""
    import json

    path = Path(out_dir) / "report.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--reuse measures an earlier export in {out_dir}, and its report.json cannot be read "
                         f"({type(exc).__name__}): export {model} there first (cnnexport {model} ... -o {out_dir})") from None
    if report.get("model") != model:
        raise UsageError(f"--reuse: {path} is the export of {report.get('model')!r}, not {model}")
    have = {(a["format"], a["precision"]): a for a in report.get("artifacts", [])
            if (Path(out_dir) / Path(a["path"]).name).is_file()}
    missing = []
    left_out = {(f["format"], f["precision"]) for f in report.get("failed", [])}  # measured as such, with why
    for name in formats:
        fmt = FORMATS[name]
        on = fmt.device_option()
        for precision in (p for p in dict.fromkeys(precisions) if p in fmt.precisions):
            art = have.get((name, precision))
            if art is None and (name, precision) in left_out:
                continue
            if art is None or (on is not None and art.get("device", on.default) != device):
                missing.append(fmt.file_name(model, precision) + (f" for {device}" if on is not None else ""))
    if missing:
        raise UsageError(f"--reuse: {out_dir} holds no {', '.join(missing)}: export them there first, or leave out "
                         "--reuse")
    return report


def with_costs(jobs: list[Job], onnx_path: Path, module_costs: Callable[[], "ModelCosts | None"] | None = None) -> None:
    """Give ``jobs`` (one model's, every runtime and precision) the layer costs of its exported fp32
    ONNX graph, the graph every other file was made from; without one (PyTorch alone measured),
    ``module_costs()``'s, from the module's own profile."""
    from ..profile.onnx_profile import file_costs

    costs = file_costs(str(onnx_path), None) if onnx_path.is_file() else None
    if costs is None and module_costs is not None:
        costs = module_costs()
    for job in jobs:
        job.costs = costs

"""From what the user named to benchmark jobs: artifact files as they are, or a zoo model exported
first to every format the selected runtimes need (int8 too when asked). Torch is imported only
for a model name."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import UsageError
from ..runtimes import ALIASES, RUNTIMES, runtime_for
from .matrix import PRECISIONS, Job, artifact_job, torch_job

FORMAT_OF = {"onnxruntime": "onnx", "openvino": "openvino", "tflite": "tflite", "ncnn": "ncnn"}
INT8_RUNTIMES = ("onnxruntime", "openvino", "tflite")


def parse_runtimes(text: str | None) -> list[str]:
    names = [ALIASES.get(r.strip().lower(), r.strip().lower()) for r in (text or "").split(",") if r.strip()]
    bad = [n for n in names if n not in RUNTIMES]
    if bad or (text is not None and not names):
        raise UsageError(f"unknown runtime(s) '{','.join(bad) or text}'; choose from ort, openvino, tflite, ncnn, torch")
    return list(dict.fromkeys(names))


def parse_precisions(text: str) -> list[str]:
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    if not names or any(p not in PRECISIONS for p in names):
        raise UsageError(f"bad --precision '{text}'; choose fp32, int8 or fp32,int8")
    return list(dict.fromkeys(names))


def onnx_macs(path: str | Path, input_size: tuple | None = None) -> float | None:
    """MACs per image of an ONNX file, or of the fp32 ONNX file beside another artifact, at its own
    input size or ``input_size`` (C or None, H, W); None when they cannot be known."""
    path = Path(path)
    stem = path.name.split(".")[0]
    for candidate in (path, path.with_name(f"{stem}.onnx")):
        if candidate.suffix == ".onnx" and candidate.is_file():
            try:
                from ..exporter.graph import check
                from ..exporter.profile_onnx import profile_onnx

                dims = check(candidate, full_check=False).inputs[0]["shape"]
                if input_size:
                    c = input_size[0] if input_size[0] is not None else dims[1]
                    shape = (1, c, *input_size[1:])
                elif all(isinstance(d, int) for d in dims[1:]):
                    shape = None  # its own size, a dynamic batch set to 1
                else:
                    return None  # dynamic spatial size: MACs at 1x1 would be wrong
                prof = profile_onnx(candidate, shape)
                # A lower bound would print a wrong GMAC/s and % of ceiling: leave them empty instead.
                return prof.macs / prof.input_shape[0] if prof.complete else None
            except Exception:  # MACs are a nicety for artifacts; a file the profiler cannot read still runs
                return None
    return None


def artifact_jobs(paths: list[str], runtimes: list[str], batches: list[int], threads: list[int],
                  device: str, input_size: tuple | None = None) -> list[Job]:
    jobs = []
    for path in paths:
        if not Path(path).is_file():
            from ..errors import InvalidModelFileError

            raise InvalidModelFileError(f"model file '{path}' does not exist")
        own = runtime_for(path)
        chosen = [r for r in runtimes if r != "torch"] or ([own] if own else [])
        if not chosen:
            raise UsageError(f"no runtime for '{path}': give --runtime")
        macs = onnx_macs(path, input_size)
        for runtime in chosen:
            for t in threads:
                for b in batches:
                    jobs.append(artifact_job(path, runtime, b, t, device=device, macs=macs, input_size=input_size))
    return jobs


def model_jobs(model: str, runtimes: list[str], precisions: list[str], batches: list[int], threads: list[int],
               device: str, out_dir: str | Path, *, on_stage: Callable[[str], None] | None = None,
               input_size: tuple[int, ...] | None = None, calib: str = "samples") -> tuple[list[Job], list[str], dict]:
    """Export ``model`` into ``out_dir`` for the selected runtimes; jobs, notes and the export report."""
    import cnnexport
    from ..exporter.profile_torch import profile_module
    from ..models import create_model, model_info

    info = model_info(model)
    shape = (1, *(input_size or info.input_size))
    notes: list[str] = []
    formats = [FORMAT_OF[r] for r in runtimes if r in FORMAT_OF]
    int8 = "int8" in precisions and any(r in INT8_RUNTIMES for r in runtimes)
    if "int8" in precisions and "ncnn" in runtimes:
        notes.append("ncnn: no int8 artifact (cnnexport quantizes for ONNX Runtime, OpenVINO and TFLite)")
    module = create_model(model)
    macs = profile_module(module, shape).macs
    report = {}
    if formats:
        report = cnnexport.export(module, shape, out_dir, name=model, formats=formats, int8=int8, calib=calib,
                                  int8_min_cosine=0.0, on_stage=on_stage)
    jobs: list[Job] = []
    for t in threads:
        for b in batches:
            if "torch" in runtimes and "fp32" in precisions:
                jobs.append(torch_job(model, shape, b, t, device=device, macs=macs))
                if device == "cuda":
                    jobs.append(torch_job(model, shape, b, t, device=device, cuda_graph=True, macs=macs))
            for art in report.get("artifacts", []):
                runtime, precision = art["runtime"], art["precision"]
                if runtime not in runtimes or precision not in precisions:
                    continue
                if device == "cuda" and runtime != "onnxruntime":
                    continue
                jobs.append(artifact_job(Path(out_dir) / Path(art["path"]).name, runtime, b, t, model=model,
                                         device=device, macs=macs))
    if device == "cuda":
        dropped = [r for r in runtimes if r not in ("torch", "onnxruntime")]
        if dropped:
            notes.append(f"--device cuda measures torch and onnxruntime only; {', '.join(dropped)} left out")
    return jobs, notes, report

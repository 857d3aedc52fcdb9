"""Benchmark jobs: what to measure (a model file on a runtime, or a PyTorch model, at a batch and a
thread count), and the builders the bench command and the study share. No torch."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..exporter.formats import precision_of
from ..profile.roofline import ModelCosts
from ..runtimes import CUDA_RUNTIMES, RUNTIME_TABLE

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass
class Job:
    """One configuration to measure; ``worker_job`` is what the worker runs, without the timing options."""

    model: str
    runtime: str
    precision: str
    batch: int
    threads: int
    worker_job: dict
    device: str = "cpu"
    macs: float | None = None  # per image
    costs: ModelCosts | None = None  # per layer, for the roofline bound
    plain: bool = False  # a plain-tool file (bench --plain), measured beside cnnexport's
    medians: list[float] = field(default_factory=list)  # one per round: the spread between rounds
    samples_ms: list[float] = field(default_factory=list)  # every round's timed runs, pooled
    first_ms: list[float] = field(default_factory=list)  # each round's first (cold) run
    result: dict | None = None  # the latest round's answer (runtime, version, device facts)
    error: str | None = None
    error_type: str | None = None
    # bench --runtime all: a file this model could not be exported to is reported, not a failure of the run
    optional: bool = False

    @property
    def label(self) -> str:
        name = Path(self.worker_job["path"]).name if "path" in self.worker_job else self.model
        return f"{name} {self.runtime} b{self.batch} t{self.threads}"


def artifact_job(path: str | Path, runtime: str, batch: int, threads: int, *, model: str | None = None,
                 device: str = "cpu", macs: float | None = None, input_size: tuple | None = None,
                 ep: str | None = None) -> Job:
    """``input_size`` (C or None, H, W) fills what the file leaves dynamic; ``ep``: ONNX Runtime's
    execution provider on cuda (cuda or tensorrt)."""
    # the path as the user typed it (the worker runs in the same folder): its errors name it so
    spec = {"kind": "artifact", "path": os.fspath(path), "runtime": runtime, "batch": batch, "threads": threads,
            "device": device}
    path = Path(path)
    if input_size:
        spec["input_size"] = list(input_size)
    if ep:
        spec["ep"] = ep
    return Job(model or path.name.split(".")[0], runtime_label(runtime, ep), precision_of(path), batch, threads, spec,
               device=device, macs=macs)


def runtime_label(runtime: str, ep: str | None) -> str:
    """How rows name a runtime: ONNX Runtime on its TensorRT EP is a runtime of its own (onnxruntime-trt;
    the table's ``ep_labels``)."""
    suffix = dict(RUNTIME_TABLE[runtime].ep_labels).get(ep) if runtime in RUNTIME_TABLE and ep else None
    return f"{runtime}-{suffix}" if suffix else runtime


def file_jobs(path: str | Path, runtime: str, batch: int, threads: int, **kw) -> list[Job]:
    """The jobs that measure one file: one, or on cuda for ONNX Runtime one per execution provider (CUDA,
    and TensorRT as ONNX Runtime users run it)."""
    eps = RUNTIME_TABLE[runtime].cuda_eps if kw.get("device") == "cuda" and runtime in RUNTIME_TABLE else ()
    return [artifact_job(path, runtime, batch, threads, ep=ep, **kw) for ep in eps] or [
        artifact_job(path, runtime, batch, threads, **kw)]


def torch_job(model: str, input_shape: tuple[int, ...], batch: int, threads: int, *, device: str = "cpu",
              cuda_graph: bool = False, macs: float | None = None, model_kwargs: dict | None = None,
              compiled: bool = False, weights: dict | None = None) -> Job:
    """``model_kwargs``: a builder's arguments (the study's micro-networks); ``weights``: ``load_model``'s
    weights, num_classes and use_ema (bench --weights)."""
    runtime = "torch-compile" if compiled else "torch-cudagraph" if cuda_graph else "torch"
    return Job(model, runtime, "fp32", batch, threads,
               {"kind": "torch", "model": model, "input_shape": list(input_shape), "batch": batch,
                "threads": threads, "device": device, "cuda_graph": cuda_graph, "compiled": compiled,
                "model_kwargs": model_kwargs or {}, "weights": weights or {}},
               device=device, macs=macs)


def jobs_from_report(report: dict, folder: str | Path, model: str, runtimes: list[str], precisions: list[str],
                     batches: list[int], threads: list[int], device: str, macs: float | None) -> list[Job]:
    """One job per artifact of an export ``report`` (files in ``folder``) whose runtime and precision
    are selected, at every thread count and batch; on cuda only the runtimes that run there (``CUDA_RUNTIMES``:
    ONNX Runtime with both its GPU execution providers, TensorRT, AOTInductor's CUDA packages) measure files."""
    jobs = []
    for t in threads:
        for b in batches:
            for art in report.get("artifacts", []):
                runtime, precision = art["runtime"], art["precision"]
                if runtime not in runtimes or precision not in precisions:
                    continue
                if device == "cuda" and runtime not in CUDA_RUNTIMES:
                    continue
                jobs += file_jobs(Path(folder) / Path(art["path"]).name, runtime, b, t, model=model, device=device,
                                  macs=macs)
    return jobs


def left_out_jobs(report: dict, folder: str | Path, model: str, runtimes: list[str], precisions: list[str],
                  batch: int, threads: int, device: str, optional: bool = False) -> list[Job]:
    """One job per file of the selected runtimes and precisions that the export left out (``export(keep_going=True)``:
    the report's ``failed`` entries), failed before it runs, its error saying why; ``optional``: a failure that
    does not fail the run (``bench --runtime all``)."""
    jobs = []
    for entry in report.get("failed", []):
        if entry["runtime"] not in runtimes or entry["precision"] not in precisions:
            continue
        if device == "cuda" and entry["runtime"] not in CUDA_RUNTIMES:
            continue
        job = artifact_job(Path(folder) / entry["file"], entry["runtime"], batch, threads, model=model, device=device)
        job.error, job.error_type = f"not exported ({entry['stage']} failed): {entry['error']}", entry["error_type"]
        job.optional = optional
        jobs.append(job)
    return jobs


def torch_jobs(model: str, input_shape: tuple[int, ...], batches: list[int], threads: list[int], *,
               device: str = "cpu", macs: float | None = None, model_kwargs: dict | None = None,
               name: str | None = None, runtimes: tuple[str, ...] = ("torch",),
               weights: dict | None = None) -> list[Job]:
    """PyTorch at every thread count and batch, for each of ``runtimes`` (``MODULE_RUNTIMES``): eager
    (on cuda also captured in a CUDA graph) and torch.compile; ``name`` labels the rows when ``model``
    is a builder (``module:callable``)."""
    variants = ([(False, False), *([(True, False)] if device == "cuda" else [])] if "torch" in runtimes else [])
    variants += [(False, True)] if "torch-compile" in runtimes else []
    jobs = []
    for t in threads:
        for b in batches:
            for graph, compiled in variants:
                job = torch_job(model, input_shape, b, t, device=device, cuda_graph=graph, macs=macs,
                                model_kwargs=model_kwargs, compiled=compiled, weights=weights)
                job.model = name or model
                jobs.append(job)
    return jobs

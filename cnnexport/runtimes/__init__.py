"""Runtime adapters behind one interface (``RuntimeModel``). Never imports torch (the PyTorch
baseline adapter imports it lazily, only when asked for)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

from ..errors import UsageError
from .base import RuntimeModel, TensorSpec

__all__ = ["RuntimeModel", "TensorSpec", "load", "RUNTIMES", "RUNTIME_TABLE", "MODULE_RUNTIMES", "runtime_for",
           "run_nchw"]


@dataclass(frozen=True)
class Runtime:
    """One row of ``RUNTIME_TABLE``: what cnnexport knows about a runtime, and what bench asks of it."""
    name: str
    adapter: str | None     # "module:Class" under cnnexport.runtimes; None: it runs the PyTorch module, not a file
    suffix: str | None = None  # the file suffix it reads by default (exporter/formats' FORMATS agrees: tested)
    aliases: tuple[str, ...] = ()
    # takes ``batch=N``: a dynamic batch axis compiled static at load (TensorRT: the input shape set within
    # the engine's optimisation profile)
    fixes_batch: bool = False
    # what ``--input-size`` gives its adapter: "fill" (the file's dynamic dimensions compiled static: OpenVINO),
    # "full" (the file records no shape at all: ncnn), None (the file's own)
    input_shape: str | None = None
    devices: tuple[str, ...] = ("cpu",)
    takes_device: bool = False  # its adapter takes ``device=`` (bench's --device): a file compiled for one device
    gpu_options: dict = field(default_factory=dict)  # what its adapter takes on --device cuda
    # on --device cuda, one bench row per execution provider: how its users run it (ONNX Runtime's CUDA and
    # TensorRT providers); the rows of the second are labelled <name>-trt
    cuda_eps: tuple[str, ...] = ()
    # computes dense 3x3 stride-1 convolutions with Winograd on the CPU as cnnexport runs it (fewer
    # multiplications than the direct MACs): the roofline charges those layers Winograd's multiplications
    # (measured for ncnn: benchmarks/ncnn_winograd.py). MNN's own default is Winograd too, but its adapter turns
    # it off (its rounding misses the fp32 tolerance), so MNN rows compute direct convolutions.
    winograd: bool = False
    # elementwise functions it computes with an approximation of about this absolute error (PyTorch's name, the
    # error measured on one op over [-12, 12]; tests/test_runtimes checks each bound). Near zero, where
    # PyTorch's tanh is exact to its value's own rounding, these are off by ~1e-7: a model with small
    # activations (untrained, or scaled down) then misses an fp32 tolerance that only rounding sets. The export
    # measures what the approximation does to the model's outputs (prepare_check.approximation_floors) and
    # the file's tolerance respects it, as it respects the model's own rounding floor.
    approximate_ops: tuple[tuple[str, float], ...] = ()
    # precisions of its own GEMM that the roofline's compute ceilings measure (its adapter module's gemm_call)
    gemm_precisions: tuple[str, ...] = ()
    # on --device cuda: execution provider -> the suffix of its rows' runtime label (onnxruntime-trt)
    ep_labels: tuple[tuple[str, str], ...] = ()
    # the import names its runtime and its converter need (bench --runtime all measures the runtimes that have
    # them), the pip command that installs them, and on cuda the distribution its GPU build comes in
    packages: tuple[str, ...] = ()
    install: str = ""
    cuda_distribution: str | None = None


RUNTIME_TABLE: dict[str, Runtime] = {r.name: r for r in (
    Runtime("onnxruntime", "ort:OnnxRuntimeModel", ".onnx", ("ort",), fixes_batch=True, devices=("cpu", "cuda"),
            gpu_options={"ep": "cuda"}, cuda_eps=("cuda", "tensorrt"), ep_labels=(("tensorrt", "trt"),),
            gemm_precisions=("fp32", "int8"), packages=("onnxruntime",), install="pip install onnxruntime",
            cuda_distribution="onnxruntime-gpu"),
    Runtime("openvino", "openvino:OpenVinoModel", ".xml", ("ov",), fixes_batch=True, input_shape="fill",
            gemm_precisions=("fp32", "int8"), packages=("openvino",), install="pip install 'cnnexport[openvino]'"),
    Runtime("tflite", "tflite:TfliteModel", ".tflite", ("litert",), packages=("ai_edge_litert", "litert_torch"),
            install="pip install 'cnnexport[tflite]'"),
    Runtime("ncnn", "ncnn:NcnnModel", ".param", input_shape="full", winograd=True,
            approximate_ops=(("tanh", 3e-7),), packages=("ncnn", "pnnx"), install="pip install 'cnnexport[ncnn]'"),
    Runtime("executorch", "executorch:ExecuTorchModel", ".pte", ("et",), packages=("executorch",),
            install="pip install 'cnnexport[executorch]'"),
    Runtime("mnn", "mnn:MnnModel", ".mnn", approximate_ops=(("tanh", 3e-7), ("gelu", 6e-4)), packages=("MNN",),
            install="pip install 'cnnexport[mnn]'"),
    Runtime("aoti", "aoti:AotiModel", ".pt2", ("aotinductor", "pt2"), devices=("cpu", "cuda"), takes_device=True,
            packages=("torch",), install="pip install torch"),
    Runtime("tensorrt", "tensorrt:TensorRtModel", ".engine", ("trt",), fixes_batch=True, devices=("cuda",),
            packages=("tensorrt",), install="pip install 'cnnexport[gpu]'"),
    Runtime("torch", None, aliases=("pytorch",), devices=("cpu", "cuda"), packages=("torch",),
            install="pip install torch"),
    Runtime("torch-compile", None, aliases=("compile", "torch.compile"), devices=("cpu", "cuda"),
            packages=("torch",), install="pip install torch"),
)}

RUNTIMES = tuple(RUNTIME_TABLE)
#: Runtimes that run the PyTorch module itself, not a file: eager, and torch.compile (Inductor).
MODULE_RUNTIMES = tuple(r.name for r in RUNTIME_TABLE.values() if r.adapter is None)
FIXES_BATCH = tuple(r.name for r in RUNTIME_TABLE.values() if r.fixes_batch)
ALIASES = {alias: r.name for r in RUNTIME_TABLE.values() for alias in r.aliases}
_BY_SUFFIX = {r.suffix: r.name for r in RUNTIME_TABLE.values() if r.suffix}
#: the runtimes whose 3x3 stride-1 convolutions the roofline charges at Winograd's multiplications
WINOGRAD_RUNTIMES = tuple(r.name for r in RUNTIME_TABLE.values() if r.winograd)
#: the runtimes bench measures on --device cuda
CUDA_RUNTIMES = tuple(r.name for r in RUNTIME_TABLE.values() if "cuda" in r.devices)


def installed_runtimes(device: str = "cpu") -> tuple[list[str], list[str]]:
    """``bench --runtime all``: the runtimes that run on ``device`` and are installed here (their packages found,
    not imported: ExecuTorch's import takes seconds), in the table's order; and one line per runtime left out
    because it is not, with its pip command."""
    from importlib.metadata import PackageNotFoundError, distribution
    from importlib.util import find_spec

    def has(runtime: Runtime) -> bool:
        if not all(find_spec(p) is not None for p in runtime.packages):
            return False
        if device != "cuda" or runtime.cuda_distribution is None:
            return True
        try:
            distribution(runtime.cuda_distribution)
        except PackageNotFoundError:
            return False
        return True

    present, notes = [], []
    for runtime in (r for r in RUNTIME_TABLE.values() if device in r.devices):
        if has(runtime):
            present.append(runtime.name)
        else:
            package = runtime.cuda_distribution if device == "cuda" and runtime.cuda_distribution else None
            notes.append(f"{runtime.name}: not installed here, left out of --runtime all "
                         f"({f'pip install {package}' if package else runtime.install})")
    return present, notes


def runtime_for(path: str | os.PathLike) -> str | None:
    """The default runtime for a model file, from its extension."""
    return _BY_SUFFIX.get(Path(path).suffix.lower())


def no_runtime_for(path: str | os.PathLike) -> UsageError:
    """The error for a file no runtime reads by its extension: the extensions they read, and --runtime."""
    return UsageError(f"no runtime reads '{Path(path).suffix or Path(path).name}' files ('{path}'): give a "
                      f"{', '.join(_BY_SUFFIX)} file, or choose a runtime with --runtime "
                      f"({', '.join(r for r in RUNTIMES if r not in MODULE_RUNTIMES)})")


def check_model_file(path: str | os.PathLike) -> None:
    """A model file must exist and be a file: a folder is named as one, with the model files inside it."""
    from ..errors import InvalidModelFileError

    p = Path(path)
    if p.is_dir():
        inside = sorted(f.name for f in p.iterdir() if f.suffix.lower() in _BY_SUFFIX and f.is_file())[:4]
        raise InvalidModelFileError(f"'{path}' is a folder, not a model file: give the file"
                                    + (f" (in it: {', '.join(inside)})" if inside else ", not its folder"))
    if not p.is_file():
        raise InvalidModelFileError(f"model file '{path}' does not exist")


def load_at_batch(path: str | os.PathLike, runtime: str | None, threads: int | None = None,
                  batch: int | None = None) -> RuntimeModel:
    """``load`` with ``threads``, a dynamic batch axis compiled static at ``batch`` where the runtime fixes
    one (ONNX Runtime, OpenVINO), as bench measures it."""
    runtime = runtime or runtime_for(path)
    options = {"threads": threads} if threads else {}
    if batch and runtime in FIXES_BATCH:
        options["batch"] = batch
    return load(path, runtime, **options)


def load(path: str | os.PathLike, runtime: str | None = None, **options) -> RuntimeModel:
    """Load a model file with ``runtime`` (default: chosen by the file's extension)."""
    runtime = ALIASES.get(runtime, runtime) or runtime_for(path)
    check_model_file(path)
    entry = RUNTIME_TABLE.get(runtime) if runtime else None
    if entry is not None and entry.adapter:
        module, cls_name = entry.adapter.split(":")
        cls = getattr(import_module(f".{module}", __name__), cls_name)
    elif runtime is None:
        raise no_runtime_for(path)
    else:
        raise UsageError(f"unknown runtime '{runtime}' for '{path}'; choose one of "
                         f"{', '.join(r for r in RUNTIMES if r not in MODULE_RUNTIMES)}")
    return cls(path, **options)


def run_nchw(model: RuntimeModel, batch):
    """First output for an NCHW batch, transposed to NHWC for a model that takes NHWC, and split into
    the model's static batch when it has one."""
    import numpy as np

    if model.inputs[0].layout == "NHWC" and batch.ndim == 4:
        batch = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
    return model.run_batches(batch)


#: Runtimes whose own default precision depends on the CPU: the adapter module with ``cpu_default_note()``.
_CPU_DEFAULT_NOTES = {"openvino": ".openvino"}


#: What has not yet run on a GPU in cnnexport's own tests: written and tested here without one (no GPU machine
#: with tensorrt or onnxruntime-gpu has been available), so said once wherever it is used.
NOT_YET_RUN_ON_GPU = {
    "tensorrt": "TensorRT engines have not yet run on a GPU in cnnexport's own tests (written and checked without "
                "one): trust the verification line of this machine, and report a failure",
    "onnxruntime": "ONNX Runtime's CUDA and TensorRT execution providers have not yet run on a GPU in cnnexport's "
                   "own tests (written and checked without one): trust the rows' verification, and report a failure",
    "aoti": "AOTInductor's CUDA packages (--aoti --device cuda) have not yet run on a GPU in cnnexport's own tests "
            "(written and checked without one): trust the verification line of this machine, and report a failure",
}


def not_yet_run_notes(runtimes: set[str], device: str) -> list[str]:
    """One line per GPU path among ``runtimes`` on ``device`` that has not yet run on real hardware."""
    if device != "cuda":
        return []
    names = {r.removesuffix("-trt") for r in runtimes}
    return [NOT_YET_RUN_ON_GPU[r] for r in sorted(names & set(NOT_YET_RUN_ON_GPU))]


def default_precision_notes(runtimes: set[str]) -> list[str]:
    """One line per measured runtime whose own default on this CPU computes at another precision than
    the one cnnexport runs (and verifies) it at."""
    from importlib import import_module

    notes = []
    for runtime in sorted(set(runtimes) & set(_CPU_DEFAULT_NOTES)):
        if note := import_module(_CPU_DEFAULT_NOTES[runtime], __name__).cpu_default_note():
            notes.append(note)
    return notes

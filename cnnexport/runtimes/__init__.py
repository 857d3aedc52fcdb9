"""Runtime adapters behind one interface (``RuntimeModel``). Never imports torch (the PyTorch
baseline adapter imports it lazily, only when asked for)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError
from .base import RuntimeModel, TensorSpec

__all__ = ["RuntimeModel", "TensorSpec", "load", "RUNTIMES", "MODULE_RUNTIMES", "runtime_for", "run_nchw"]

RUNTIMES = ("onnxruntime", "openvino", "tflite", "ncnn", "executorch", "mnn", "aoti", "tensorrt", "torch",
            "torch-compile")
#: Runtimes that run the PyTorch module itself, not a file: eager, and torch.compile (Inductor).
MODULE_RUNTIMES = ("torch", "torch-compile")
#: Runtimes whose adapters take ``batch=N``: a dynamic batch axis compiled static at load (TensorRT: the
#: input shape set within the engine's optimisation profile).
FIXES_BATCH = ("onnxruntime", "openvino", "tensorrt")
ALIASES = {"ort": "onnxruntime", "ov": "openvino", "litert": "tflite", "et": "executorch", "pytorch": "torch",
           "trt": "tensorrt", "aotinductor": "aoti", "pt2": "aoti", "compile": "torch-compile",
           "torch.compile": "torch-compile"}
# exporter/formats keeps the same facts in FORMATS; tests/test_formats.py checks that the two agree
_BY_SUFFIX = {".onnx": "onnxruntime", ".xml": "openvino", ".tflite": "tflite", ".param": "ncnn", ".pte": "executorch",
              ".mnn": "mnn", ".pt2": "aoti", ".engine": "tensorrt"}


def runtime_for(path: str | os.PathLike) -> str | None:
    """The default runtime for a model file, from its extension."""
    return _BY_SUFFIX.get(Path(path).suffix.lower())


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


def load(path: str | os.PathLike, runtime: str | None = None, **options) -> RuntimeModel:
    """Load a model file with ``runtime`` (default: chosen by the file's extension)."""
    runtime = ALIASES.get(runtime, runtime) or runtime_for(path)
    check_model_file(path)
    if runtime == "onnxruntime":
        from .ort import OnnxRuntimeModel as cls
    elif runtime == "openvino":
        from .openvino import OpenVinoModel as cls
    elif runtime == "tflite":
        from .tflite import TfliteModel as cls
    elif runtime == "ncnn":
        from .ncnn import NcnnModel as cls
    elif runtime == "executorch":
        from .executorch import ExecuTorchModel as cls
    elif runtime == "mnn":
        from .mnn import MnnModel as cls
    elif runtime == "aoti":
        from .aoti import AotiModel as cls
    elif runtime == "tensorrt":
        from .tensorrt import TensorRtModel as cls
    elif runtime is None:
        raise UsageError(f"no runtime reads '{Path(path).suffix or Path(path).name}' files ('{path}'): give a "
                         f"{', '.join(_BY_SUFFIX)} file, or choose a runtime with --runtime "
                         f"({', '.join(r for r in RUNTIMES if r not in MODULE_RUNTIMES)})")
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

"""Runtime adapters behind one interface (``RuntimeModel``). Never imports torch."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError
from .base import RuntimeModel, TensorSpec

__all__ = ["RuntimeModel", "TensorSpec", "load", "RUNTIMES"]

RUNTIMES = ("onnxruntime",)


def load(path: str | os.PathLike, runtime: str | None = None, **options) -> RuntimeModel:
    """Load a model file with the given runtime (default: chosen by the file's extension)."""
    runtime = runtime or {".onnx": "onnxruntime"}.get(Path(path).suffix)
    if runtime in ("onnxruntime", "ort"):
        from .ort import OnnxRuntimeModel

        return OnnxRuntimeModel(path, **options)
    raise UsageError(f"no runtime for '{path}' (runtime={runtime!r}); supported: {', '.join(RUNTIMES)}")

"""The one small interface every runtime adapter implements. No torch here."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import InvalidModelFileError, MissingDependencyError, UsageError, cause_line


def require(module: str, install_hint: str):
    """Import an optional runtime package, or raise naming what installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"{install_hint}") from None


def dims_text(dims) -> str:
    """'1x3x?x?': a shape with its dynamic (None) dimensions as '?'."""
    return "x".join("?" if d is None else str(d) for d in dims)


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (None for a dynamic dimension), numpy dtype name and layout of one tensor."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    layout: str = "NCHW"

    @property
    def chw(self) -> list[int | None]:
        """The dimensions after the batch in NCHW order (an NHWC input's H, W, C reordered)."""
        dims = list(self.shape[1:])
        return [dims[2], dims[0], dims[1]] if self.layout == "NHWC" and len(dims) == 3 else dims

    def check(self, array: np.ndarray) -> None:
        """Raise naming what was expected and what was given when ``array`` does not fit."""
        if array.dtype != np.dtype(self.dtype):
            raise UsageError(f"input '{self.name}' expects dtype {self.dtype}, got {array.dtype}")
        if len(array.shape) != len(self.shape) or any(
            want is not None and want != got for want, got in zip(self.shape, array.shape)
        ):
            want = dims_text(self.shape)
            raise UsageError(
                f"input '{self.name}' expects shape {want} ({self.layout}), got {'x'.join(map(str, array.shape))}"
            )


@dataclass(frozen=True)
class RuntimeDefault:
    """A runtime's own default precision on this machine, where it differs from what cnnexport runs."""

    precision: str      # e.g. bf16
    verified: str       # what cnnexport compiles with, e.g. f32
    how: str            # the one line of code that runs the verified precision
    load: Callable[[], "RuntimeModel"]  # the file as the runtime's defaults load it


class RuntimeModel(ABC):
    """A loaded model file: describe its tensors, run numpy arrays through it. Adapters set
    ``_inputs`` and ``_outputs`` when they load."""

    runtime: str = ""
    # a dynamic batch with an upper bound (an ExecuTorch program's, an AOTInductor package's): a larger
    # batch runs as consecutive calls of at most this many
    max_batch: int | None = None
    _inputs: list[TensorSpec]
    _outputs: list[TensorSpec]

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    @abstractmethod
    def _run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]: ...

    @abstractmethod
    def describe(self) -> dict:
        """Runtime name, version, device, threads, provider or delegate."""

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Run one batch; inputs are checked against ``inputs`` first (a float32 array for an fp16 input
        is rounded to fp16: the one conversion a caller of an fp16-I/O file makes)."""
        if len(arrays) != len(self.inputs):
            raise UsageError(f"{self.runtime} model takes {len(self.inputs)} input(s), got {len(arrays)}")
        arrays = self._as_input_types(arrays)
        for spec, array in zip(self.inputs, arrays):
            spec.check(array)
        try:
            return self._run(arrays)
        except RuntimeError as exc:  # a file the runtime loaded and cannot run here (OpenVINO 2026.4 on ARMv8.0:
            # "[CPU] Convolution node ... is not initialized" for an int8 IR): its words, not an internal error
            name = os.path.basename(str(getattr(self, "path", ""))) or "the model"
            raise InvalidModelFileError(f"{self.runtime} failed running '{name}': {cause_line(exc)}") from None

    def _as_input_types(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [a.astype(np.float16) if spec.dtype == "float16" and a.dtype == np.float32 else a
                for spec, a in zip(self.inputs, arrays)]

    def run_batches(self, x: np.ndarray) -> np.ndarray:
        """First output for a batch of any size: split into the model's static batch when it has one, or
        into calls of at most ``max_batch``."""
        if self.max_batch and len(x) > self.max_batch:
            return np.concatenate([self.run(x[i:i + self.max_batch])[0] for i in range(0, len(x), self.max_batch)])
        static = self.inputs[0].shape[0] if self.inputs[0].shape else None
        if static is None or static == len(x):
            return self.run(x)[0]
        if len(x) % static:
            raise UsageError(f"batch of {len(x)} cannot be split into this model's static batch of {static}")
        return np.concatenate([self.run(x[i:i + static])[0] for i in range(0, len(x), static)])

    def runtime_default(self) -> "RuntimeDefault | None":
        """When this runtime, loaded with its own defaults on this machine (as its documentation shows),
        computes at another precision than cnnexport loads it with: that precision, the call that
        gets the verified one, and a loader of the file with the defaults. None when they agree."""
        return None

    def intermediates(self, x: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The values, for the NCHW batch ``x``, of those ``names`` (the ONNX file's tensor names) that this
        file still holds, in the ONNX file's layout: what ``verify --locate`` compares. Only the runtimes of
        files converted from the ONNX file with its names kept (MNN, OpenVINO) have them."""
        raise UsageError(f"--locate compares the tensors of files converted from the ONNX file with its names "
                         f"kept (.mnn, OpenVINO .xml); {self.runtime} names its tensors otherwise")

    def calls_per_batch(self, batch: int) -> int:
        """How many calls ``run_batches`` makes for ``batch`` images (1: one real batch; more: a static-batch
        file splits it into consecutive calls, which ``bench`` labels rather than presents as a batch)."""
        if self.max_batch and batch > self.max_batch:
            return -(-batch // self.max_batch)
        static = self.inputs[0].shape[0] if self.inputs[0].shape else None
        return 1 if static is None or static >= batch else -(-batch // static)

    def timed_call(self, x: np.ndarray):
        """A function that runs the batch ``x`` (already in this model's layout) and returns the first
        output, with the input's one-time conversions done now rather than in every call: what
        ``bench`` times. Adapters whose files take integer inputs override it."""
        x = self._as_input_types([x])[0]
        return lambda: self.run_batches(x)

    def spec_dicts(self) -> dict:
        return {"inputs": [asdict(s) for s in self.inputs], "outputs": [asdict(s) for s in self.outputs]}

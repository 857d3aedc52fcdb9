"""ncnn adapter (the ``.ncnn.param`` + ``.ncnn.bin`` pair); CPU threads. ncnn runs one image at a
time: a batch is run image by image. A .param file holds no input shape: it is given, or read from
the report.json cnnexport wrote beside it, so that a wrong shape is refused before ncnn sees it
(ncnn itself crashes on one)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .._quiet import quiet_fds
from ..errors import InvalidModelFileError, UsageError
from .base import RuntimeModel, TensorSpec, require


def _shape_from_report(param: Path) -> tuple | None:
    """The input shape cnnexport recorded beside the file (an ncnn .param does not hold one)."""
    import json

    report = param.with_name("report.json")
    try:
        data = json.loads(report.read_text())
        if any(Path(a["path"]).name == param.name for a in data.get("artifacts", [])):
            return tuple(data["input_shape"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def import_ncnn():
    return require("ncnn", "ncnn is not installed: pip install 'cnnexport[ncnn]'")


class NcnnModel(RuntimeModel):
    runtime = "ncnn"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, input_shape: tuple | None = None):
        ncnn = import_ncnn()
        param = Path(path)
        binary = param.with_suffix(".bin")
        if not param.is_file() or not binary.is_file():
            raise InvalidModelFileError(f"ncnn needs '{param}' and '{binary}' side by side")
        self.path, self.threads = str(param), threads
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        # fp32 end to end: ncnn stores activations in fp16/bf16 on CPUs that support it unless told not to
        for flag in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage"):
            if hasattr(self.net.opt, flag):
                setattr(self.net.opt, flag, False)
        if threads:
            self.net.opt.num_threads = int(threads)
        with quiet_fds() as log:  # ncnn prints its complaints to the process's stderr
            ok = self.net.load_param(str(param)) == 0 and self.net.load_model(str(binary)) == 0
        if not ok:
            detail = f": {log[-1].strip()}" if log else ""
            raise InvalidModelFileError(f"ncnn cannot load '{param.name}'{detail}")
        input_shape = input_shape or _shape_from_report(param)
        if not input_shape:
            raise UsageError(f"'{param.name}' does not record its input shape (ncnn .param files do not) and no "
                             "cnnexport report.json lies beside it: keep the report.json the export wrote, or pass "
                             "input_shape=(N, C, H, W); ncnn would crash on a wrong one")
        chw = tuple(input_shape[1:])
        self._inputs = [TensorSpec(n, (None, *chw), "float32", "NCHW") for n in self.net.input_names()]
        self._outputs = [TensorSpec(n, (None,), "float32", "") for n in self.net.output_names()]

    def calls_per_batch(self, batch: int) -> int:
        return batch  # ncnn has no batch axis: one extractor per image

    def _run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        ncnn = import_ncnn()
        results: list[list[np.ndarray]] = [[] for _ in self._outputs]
        for i in range(len(arrays[0])):
            ex = self.net.create_extractor()
            # ncnn.Mat(a) wraps the numpy buffer without owning it, and a graph whose first layer works in place
            # on the input blob (an activation, x * 2 - 1) then crashes the process: clone into ncnn's own memory
            owned = [np.ascontiguousarray(array[i], dtype=np.float32) for array in arrays]
            mats = [ncnn.Mat(a).clone() for a in owned]
            for spec, mat in zip(self._inputs, mats):
                ex.input(spec.name, mat)
            for k, spec in enumerate(self._outputs):
                _, out = ex.extract(spec.name)
                results[k].append(np.array(out).reshape(-1))
        return [np.stack(r) for r in results]

    def describe(self) -> dict:
        import ncnn

        return {"runtime": self.runtime, "version": ncnn.__version__, "device": "cpu", "threads": self.threads,
                "precision": "fp32 (fp16/bf16 storage off)", "file": Path(self.path).name}

"""The export report: versions of the tools used, and the report's stable top-level layout."""

from __future__ import annotations

import platform
from importlib import metadata

#: ``graph.folded[].level`` of a fold made on the exported ONNX graph (``onnx_fold``), beside "module"
#: (prepare's, on the PyTorch modules) and "graph" (inside another module's forward, traced)
ONNX_GRAPH_FOLD = "onnx"
#: an int8 check entry's ``scales`` where the file keeps a QAT model's trained scales and was checked against the
#: QAT model itself (its ``accuracy_fp32`` is that model's)
QAT_SCALES = "trained (QAT)"


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions(*extra: str) -> dict[str, str | None]:
    names = ("torch", "onnx", "onnxruntime", "onnxsim", *extra)
    return {"python": platform.python_version(), **{n: package_version(n) for n in names}}


def new_report(model: str, params: int, input_shape: tuple[int, ...]) -> dict:
    """A report with every field present; later stages fill them in."""
    return {
        "model": model,
        "params": params,
        "input_shape": list(input_shape),
        "dynamic_batch": True,
        "exporter": None,
        "opset": None,
        "fold_bn": True,
        "artifacts": [],
        "prepare": {},
        "graph": {},
        "equivalence": [],
        "failed": [],  # export(keep_going=True): the files left out, and why
        "timings_s": {},
        "warnings": [],
        "removed_earlier_files": [],
        "versions": versions(),
    }

"""MNN (.mnn): converted from the verified ONNX file with MNN's own converter, fp32; ``half`` writes
fp16 weights (MNN's ``--fp16``: the file stores them in half precision, the CPU computes in fp32);
int8 with MNN's quantization module (``nn.compress.train_quant``: int8 weights per channel, per-tensor
activation scales from the calibration samples), starting from the fp32 ``.mnn`` file. Converter and
quantizer run in a child process (``exporter.formats.mnn.mnn_tool``): MNN reports an unsupported operator only
in its output, and crashes outright on some graphs."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ...._atomic import atomic_path
from ....errors import CalibrationError, ExportError, MissingDependencyError, disk_full
from .. import Artifact, ConvertSource, Int8Options

INSTALL = "MNN is not installed: pip install 'cnnexport[mnn]'"
_UNSUPPORTED = re.compile(r"These Op Not Support:\s*(.+)")
SCALE_UPDATE = "moving_average"  # MNN's default; min-max (maximum) scored no better on the digits


def convert(source: ConvertSource, dst: Path) -> Artifact:
    path, changes = _mnn_file(source.onnx_path, dst, source.shape)
    return Artifact("mnn", [path], "mnn", graph_changes=changes)


def half(source: ConvertSource, fp32: Artifact, dst: Path) -> Artifact:
    """fp16 weights (half the file); MNN's CPU backend computes in fp32."""
    path, changes = _mnn_file(source.onnx_path, dst, source.shape, fp16=True)
    return Artifact("mnn", [path], "mnn", precision="fp16", graph_changes=changes,
                    details={"fp16": {"weights": "fp16", "compute": "fp32 on CPU"}})


def _mnn_file(onnx_path: Path, dst: Path, shape: tuple[int, ...], fp16: bool = False) -> tuple[Path, list[str]]:
    """:func:`to_mnn` of the ONNX file with what MNN gets wrong rewritten first (the same values): the
    reductions its converter misreads as sums (``onnx_reduces``), and softmaxes over a middle axis shifted
    by their maximum (``onnx_softmax``); and what changed."""
    import onnx

    from .onnx_reduces import rewrite_reduces
    from .onnx_softmax import stabilize_softmaxes

    model = onnx.load(str(onnx_path))
    reduces, softmaxes = rewrite_reduces(model), stabilize_softmaxes(model)
    if not reduces and not softmaxes:
        return to_mnn(onnx_path, dst, shape, fp16), []
    with tempfile.TemporaryDirectory() as tmp:
        rewritten = Path(tmp) / Path(onnx_path).name
        onnx.save(model, str(rewritten))
        path = to_mnn(rewritten, dst, shape, fp16)
    changes = []
    if reduces:
        changes.append(f"{reduces} ONNX reduction{'s' * (reduces > 1)} (L1, L2, log-sum, log-sum-exp, sum of "
                       "squares) written as sums: MNN's converter ignores their axes and reduces over every one")
    if softmaxes:
        changes.append(f"{softmaxes} softmax{'es' * (softmaxes > 1)} over a middle axis shifted by their maximum "
                       "first: MNN's kernel for them does not subtract it, and logits beyond +-87 saturate its Exp")
    return path, changes


def to_mnn(onnx_path: Path, dst: Path, shape: tuple[int, ...], fp16: bool = False) -> Path:
    """``dst`` from ``onnx_path`` with MNN's converter, run at ``shape`` (and batches 2, 3) by MNN's runtime in
    the child process (it crashes on some converted graphs); an operator MNN lacks is named, nothing is
    written."""
    from .mnn_tool import RUN_CHECK

    with atomic_path(Path(dst)) as tmp:
        code, out = _run_tool("convert", str(onnx_path), str(tmp), ",".join(map(str, shape)),
                              *(["--fp16"] if fp16 else []))
        missing = [m.group(1).strip() for line in out for m in [_UNSUPPORTED.search(line)] if m]
        if missing:
            ops = ", ".join(sorted({o.split("::")[-1] for m in missing for o in m.split()}))
            raise ExportError(f"MNN's converter does not support the operator(s) {ops} in '{Path(onnx_path).name}'; "
                              "replace them in the model (or leave out --mnn)")
        if code and RUN_CHECK in out:
            how = f"crashed (signal {-code})" if code < 0 else f"failed ({_last(out)})"
            raise ExportError(f"MNN's runtime {how} running the converted file at the export's shape or at batch 2 "
                              "or 3: MNN cannot run this model (leave out --mnn)")
        _raise_if_failed(code, out, "converter")
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise ExportError(f"MNN's converter wrote no file ({_last(out)})")
    return Path(dst)


def quantize(src: Path, dst: Path, calibration: np.ndarray, options: Int8Options, layout: str) -> dict:
    """int8 from the fp32 ``.mnn`` file, calibrated on ``calibration`` (NCHW)."""
    if len(calibration) == 0:
        raise CalibrationError("the calibration set is empty")
    with tempfile.TemporaryDirectory() as tmp, atomic_path(Path(dst)) as out:
        samples = Path(tmp) / "calibration.npy"
        np.save(samples, np.ascontiguousarray(calibration, np.float32))
        _raise_if_failed(*_run_tool("quantize", str(src), str(out), str(samples), SCALE_UPDATE), "quantizer")
        if not out.is_file() or out.stat().st_size == 0:
            raise ExportError("MNN's quantizer wrote no file")
    return {"runtime": "mnn", "format": "MNN int8", "scale_update": SCALE_UPDATE,
            "method": "MNN nn.compress.train_quant: int8 weights, per-tensor activation scales "
                      f"({SCALE_UPDATE.replace('_', ' ')} of each tensor's range over the calibration samples)",
            "calibration_samples": int(len(calibration))}


def describe_int8(info: dict) -> str:
    return f"MNN int8 ({info['method']})"


def runtime_options(artifact: Artifact, batch_shape: tuple[int, ...]) -> dict:
    return {}


def _run_tool(*args: str) -> tuple[int, list[str]]:
    """Run ``exporter.formats.mnn.mnn_tool`` in a child process: its exit status and output lines."""
    import importlib.util

    if importlib.util.find_spec("_tools") is None:  # MNN's converter extension, shipped in the mnn wheel
        raise MissingDependencyError(INSTALL)
    proc = subprocess.run([sys.executable, "-m", "cnnexport.exporter.formats.mnn.mnn_tool", *args], capture_output=True,
                          text=True, errors="replace")
    return proc.returncode, (proc.stdout + proc.stderr).splitlines()


def _raise_if_failed(code: int, lines: list[str], what: str) -> None:
    """A crash or failure of MNN's ``what`` is an ExportError quoting its last line."""
    if not code:
        return
    if any("No space left" in line for line in lines):
        raise disk_full(OSError(28, "No space left on device")) from None
    how = f"crashed (signal {-code})" if code < 0 else "failed"
    raise ExportError(f"MNN's {what} {how}: {_last(lines)}")


def _last(lines: list[str]) -> str:
    useful = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("The device supports")]
    return useful[-1] if useful else "no message"


def plain(module, x, path: Path) -> None:
    """``bench --plain``: MNN's converter on the plain ONNX file."""
    from ...plain import plain_onnx

    to_mnn(plain_onnx(module, x, path), path, tuple(x.shape))

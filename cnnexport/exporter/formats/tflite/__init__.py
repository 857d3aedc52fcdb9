"""TFLite/LiteRT: converted from the prepared module with litert-torch (no tensorflow), NHWC input
by default as mobile pipelines feed; int8 is full integer (int8 weights, activations, input and
output) with ai-edge-quantizer's static recipe, calibrated on the same samples; fp16 stores the
convolution and fully-connected weights in fp16 (ai-edge-quantizer's float casting: a DEQUANTIZE op
feeds each layer its fp32 weights, which XNNPACK unpacks once at load), as TFLite's fp16 post-training
quantization does.

(litert-torch's PT2E route leaves residual additions in float; quantizing the converted .tflite
does not.)
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ...._atomic import atomic_path
from ...._quiet import quiet_fds
from ....errors import CalibrationError, ExportError, MissingDependencyError, UsageError, disk_full, cause_line
from .. import Artifact, ConvertSource, Int8Options


def convert(source: ConvertSource, dst: Path) -> Artifact:
    """The .tflite file of the prepared module. (``xnnpack_rewrites.zero_pad_maxpool_after_relu`` is not
    applied: measured in paired rounds, it was not faster, benchmarks/graph_changes.py.)"""
    layout = source.option("tflite_layout")
    path, changes = tflite_file(source.prepared, dst, source.shape, layout=layout)
    layout = layout.upper() if len(source.shape) == 4 else "NCHW"
    return Artifact("tflite", [path], "tflite", layout=layout, graph_changes=changes)


def half(source: ConvertSource, fp32: Artifact, dst: Path) -> Artifact:
    """The fp32 .tflite with its weights in fp16."""
    info = fp16_tflite(fp32.files[0], dst)
    return Artifact("tflite", [Path(dst)], "tflite", precision="fp16", layout=fp32.layout,
                    graph_changes=list(fp32.graph_changes), details={"fp16": info})


def quantize(src: Path, dst: Path, calibration: np.ndarray, options: Int8Options, layout: str) -> dict:
    return quantize_tflite(src, dst, calibration, layout=layout)


def describe_int8(info: dict) -> str:
    return f"TFLite full integer, int8 input/output ({info['method']})"


def runtime_options(artifact: Artifact, batch_shape: tuple[int, ...]) -> dict:
    return {"layout": artifact.layout}


LAYOUTS = ("nhwc", "nchw")


def import_litert_torch():
    try:
        with quiet_fds():
            import litert_torch  # slow (~5 s): imported only when a .tflite is asked for
    except ImportError:
        raise MissingDependencyError("the TFLite converter is not installed: pip install 'cnnexport[tflite]'") from None
    return litert_torch


def to_tflite(module, path: str | os.PathLike, input_shape: tuple[int, ...], *,
              layout: str = "nhwc") -> Path:
    """Convert the (prepared, eval) module at a static ``input_shape`` (NCHW) and write ``path``."""
    return tflite_file(module, path, input_shape, layout=layout)[0]


def tflite_file(module, path: str | os.PathLike, input_shape: tuple[int, ...], *,
                layout: str = "nhwc") -> tuple[Path, list[str]]:
    """:func:`to_tflite`, and the graph changes it needed (:mod:`.litert_rewrites`, the same values; the file
    is checked as every file is): those for what litert-torch converts wrongly always, and where it still
    fails, the model is converted again with those for what it refuses too."""
    if layout not in LAYOUTS:
        raise UsageError(f"unknown TFLite layout '{layout}'; choose nhwc or nchw")
    import torch

    from .litert_rewrites import for_litert

    example = torch.randn(*input_shape)
    safe, changes = for_litert(module, example, refused=False)
    try:
        return _litert_convert(safe, path, input_shape, layout), changes
    except ExportError as failure:
        rewritten, more = for_litert(module, example)
        if more == changes:
            raise
        try:
            return _litert_convert(rewritten, path, input_shape, layout), more
        except ExportError:
            raise failure from None


def _litert_convert(module, path: str | os.PathLike, input_shape: tuple[int, ...], layout: str) -> Path:
    import torch

    litert_torch = import_litert_torch()
    example = torch.randn(*input_shape)
    if layout == "nhwc" and len(input_shape) == 4:
        module = litert_torch.to_channel_last_io(module, args=[0])
        module.training = False  # the wrapper only: the model inside is eval already (an exported one refuses eval())
        example = example.permute(0, 2, 3, 1).contiguous()
    loggers = [logging.getLogger(n) for n in ("litert_torch", "torch._dynamo", "torch.export", "absl")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), quiet_fds(), torch.no_grad():
            warnings.simplefilter("ignore")
            edge = litert_torch.convert(module, (example,))
            edge.export(str(path))
    except (ExportError, UsageError):
        raise
    except Exception as exc:
        first = cause_line(exc)
        raise (disk_full(exc) or ExportError(f"TFLite conversion (litert-torch) failed: {first}")) from None
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    return Path(path)


FP16_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONV_2D_TRANSPOSE")


def fp16_tflite(src: str | os.PathLike, dst: str | os.PathLike) -> dict:
    """Write ``dst``: ``src`` with the weights of its ``FP16_WEIGHT_OPS`` in fp16 (activations stay fp32)."""
    try:
        with quiet_fds():
            from ai_edge_quantizer import algorithm_manager, qtyping, quantizer
    except ImportError:
        raise MissingDependencyError("TFLite fp16 needs ai-edge-quantizer: pip install 'cnnexport[tflite]'") from None
    logging.getLogger("ai_edge_quantizer").setLevel(logging.ERROR)
    try:
        with quiet_fds(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            qt = quantizer.Quantizer(str(src))
            for op in FP16_WEIGHT_OPS:
                qt.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName[op], num_bits=16,
                                          algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
            _save(qt.quantize(), dst)
    except Exception as exc:
        raise (disk_full(exc) or ExportError(f"TFLite fp16 conversion (ai-edge-quantizer) failed: "
                                             f"{cause_line(exc)}")) from None
    return {"weights": "fp16 (" + ", ".join(FP16_WEIGHT_OPS[:3]).lower() + ")", "compute": "fp32",
            "method": "ai-edge-quantizer float_casting"}


def quantize_tflite(src: str | os.PathLike, dst: str | os.PathLike, calibration: np.ndarray, *,
                    layout: str = "NHWC") -> dict:
    """Quantize the fp32 ``src`` .tflite into the fully int8 ``dst``."""
    try:
        with quiet_fds():
            from ai_edge_quantizer import quantizer, recipe
    except ImportError:
        raise MissingDependencyError("TFLite int8 needs ai-edge-quantizer: pip install 'cnnexport[tflite]'") from None
    from ....calib.readers import representative_dataset
    from ....runtimes.tflite import import_interpreter

    if len(calibration) == 0:
        raise CalibrationError("the calibration set is empty")
    interpreter_cls, _ = import_interpreter()
    with quiet_fds():
        signatures = interpreter_cls(model_path=str(src)).get_signature_list()
    signature, spec = next(iter(signatures.items()))
    input_name = spec["inputs"][0]
    data = {signature: [{input_name: x[0]} for x in representative_dataset(calibration, layout)]}
    logging.getLogger("ai_edge_quantizer").setLevel(logging.ERROR)
    try:
        with quiet_fds(), contextlib.redirect_stdout(io.StringIO()):
            qt = quantizer.Quantizer(str(src), recipe.static_wi8_ai8())
            _save(qt.quantize(qt.calibrate(data)), dst)
    except Exception as exc:
        raise (disk_full(exc) or ExportError(f"ai-edge-quantizer failed: {cause_line(exc)}")) from None
    return {"runtime": "tflite", "format": "full integer (int8 I/O)", "method": "ai-edge-quantizer static_wi8_ai8",
            "calibration_samples": int(len(calibration)), "layout": layout}


def _save(result, dst: str | os.PathLike) -> None:
    """Write ai-edge-quantizer's result to ``dst`` atomically (it writes to a path of its own choosing)."""
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "q.tflite"
        result.export_model(str(staged))
        with atomic_path(dst) as out:
            out.write_bytes(staged.read_bytes())


def plain(module, x, path: Path) -> None:
    """``bench --plain``: ``litert_torch.convert(module, (x,)).export(path)`` (NCHW, as the module takes it)."""
    litert_torch = import_litert_torch()
    with atomic_path(path) as tmp:
        litert_torch.convert(module, (x,)).export(str(tmp))

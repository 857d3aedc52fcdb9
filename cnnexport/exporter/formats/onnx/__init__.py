"""ONNX (.onnx): the file the pipeline itself exports, checks and simplifies (every other format is
checked beside it); int8 is ONNX Runtime's static QDQ quantization (``quantize_ort``); fp16 is the
same graph in half precision (``onnx_fp16``: fp32 inputs/outputs unless ``fp16_io``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import Artifact, ConvertSource, Int8Options


def convert(source: ConvertSource, dst: Path) -> Artifact:
    """The ONNX file the pipeline itself wrote, checked and simplified (``dst`` is that file)."""
    return Artifact("onnx", [Path(dst)], "onnxruntime")


def half(source: ConvertSource, fp32: Artifact, dst: Path) -> Artifact:
    """Weights and activations in fp16, the overflow-prone ops in fp32; fp32 I/O unless the ``fp16_io`` option."""
    from .onnx_fp16 import fp32_scopes, to_fp16_onnx

    info = to_fp16_onnx(fp32.files[0], dst, fp16_io=source.option("fp16_io"), scopes=fp32_scopes(source.prepared))
    return Artifact("onnx", [Path(dst)], "onnxruntime", precision="fp16", details={"fp16": info})


def quantize(src: Path, dst: Path, calibration: np.ndarray, options: Int8Options, layout: str) -> dict:
    from .quantize_ort import quantize_onnx

    return quantize_onnx(src, dst, calibration, method=options.method, per_channel=options.per_channel,
                         reduce_range=options.reduce_range, keep_float=tuple(options.keep_float),
                         min_cosine=options.min_cosine, max_drop=options.max_drop,
                         labels=options.calibration_labels)


def qat_int8(source: ConvertSource, dst: Path) -> dict:
    """A QAT model's QDQ file from its int8 twin (``source.prepared``), at the fp32 file's opset and batch axis."""
    from ....profile.graph import check
    from .qat_qdq import write_qat_onnx

    facts = check(source.onnx_path, full_check=False)
    return write_qat_onnx(source.prepared, dst, source.shape, opset=facts.opset, dynamic_batch=facts.dynamic_batch)


def describe_int8(info: dict) -> str:
    return (f"QDQ int8 ({info['method']}, {'per-channel' if info['per_channel'] else 'per-tensor'}, "
            f"reduce_range {'on' if info['reduce_range'] else 'off'}: {info['reduce_range_reason']})")


def runtime_options(artifact: Artifact, batch_shape: tuple[int, ...]) -> dict:
    return {}


def per_layer_sqnr(src: Path, dst: Path, samples: np.ndarray) -> list[dict]:
    """The ``per_layer`` extra: SQNR of every tensor of the QDQ file against the float one, worst first."""
    from .quantize_ort import per_layer_sqnr as sqnr

    return sqnr(src, dst, samples)


def plain(module, x, path: Path) -> None:
    """``bench --plain``: ``torch.onnx.export(module, x, path, opset_version=18, dynamo=False)``."""
    import torch

    from ...._atomic import atomic_path

    with atomic_path(path) as tmp, torch.no_grad():
        torch.onnx.export(module, x, str(tmp), opset_version=18, dynamo=False)

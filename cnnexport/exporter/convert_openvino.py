"""ONNX -> OpenVINO IR (.xml + .bin), fp32 weights."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ExportError, disk_full, cause_line
from ..runtimes.openvino import import_openvino


def to_openvino(onnx_path: str | os.PathLike, xml_path: str | os.PathLike) -> list[Path]:
    """Convert and write the IR pair; returns the written files (.xml, .bin).

    ``save_model`` compresses weights to fp16 by default; this keeps them fp32 so the IR computes
    what the ONNX file computes (int8 and fp16 are explicit, separate artifacts).
    """
    ov = import_openvino()
    xml_path = Path(xml_path)
    try:
        model = ov.convert_model(str(onnx_path))
        ov.save_model(model, str(xml_path), compress_to_fp16=False)
    except Exception as exc:
        first = cause_line(exc)
        raise (disk_full(exc) or ExportError(f"OpenVINO conversion failed: {first}")) from None
    return [xml_path, xml_path.with_suffix(".bin")]

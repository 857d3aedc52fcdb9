"""TFLite full-integer int8 with ai-edge-quantizer's static recipe (int8 weights and activations,
int8 input and output with their scale and zero point), calibrated on the same samples; no torch.

(litert-torch's PT2E route leaves residual additions in float; quantizing the converted .tflite
does not.)
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from .._quiet import quiet_fds
from ..errors import CalibrationError, ExportError, MissingDependencyError, disk_full, cause_line


def quantize_tflite(src: str | os.PathLike, dst: str | os.PathLike, calibration: np.ndarray, *,
                    layout: str = "NHWC") -> dict:
    """Quantize the fp32 ``src`` .tflite into the fully int8 ``dst``."""
    try:
        with quiet_fds():
            from ai_edge_quantizer import quantizer, recipe
    except ImportError:
        raise MissingDependencyError("TFLite int8 needs ai-edge-quantizer: pip install 'cnnexport[tflite]'") from None
    from ..calib.readers import representative_dataset
    from ..runtimes.tflite import import_interpreter

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
            result = qt.quantize(qt.calibrate(data))
            with tempfile.TemporaryDirectory() as tmp:
                staged = Path(tmp) / "q.tflite"
                result.export_model(str(staged))
                with atomic_path(dst) as out:
                    out.write_bytes(staged.read_bytes())
    except Exception as exc:
        raise (disk_full(exc) or ExportError(f"ai-edge-quantizer failed: {cause_line(exc)}")) from None
    return {"runtime": "tflite", "format": "full integer (int8 I/O)", "method": "ai-edge-quantizer static_wi8_ai8",
            "calibration_samples": int(len(calibration)), "layout": layout}

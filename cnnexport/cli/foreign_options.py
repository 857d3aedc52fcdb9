"""Options of the tools our users come from (Ultralytics' export and benchmark, timm's scripts, OpenVINO's
benchmark_app, ONNX Runtime's quantization tools), and what cnnexport calls them: an unknown option that one of
those tools has gets the equivalent here, where click would guess by spelling (``--half``: did you mean ``--atol``?)."""

from __future__ import annotations

import re

_FORMAT_FLAGS = "--onnx --openvino --tflite --ncnn --executorch --mnn --aoti --tensorrt"
_INPUT_SIZE = {c: "--input-size (H, HxW or C,H,W)" for c in ("export", "bench", "eval", "profile")}

#: option -> (whose it is, {command: the equivalent in that command}); every flag a hint names is an option
#: of that command (tests/test_cli.py checks).
FOREIGN_OPTIONS: dict[str, tuple[str, dict[str, str]]] = {
    "--format": ("Ultralytics'", {"export": f"each format is a flag of its own, several at once: {_FORMAT_FLAGS}"}),
    "--include": ("YOLOv5's", {"export": f"each format is a flag of its own, several at once: {_FORMAT_FLAGS}"}),
    "--imgsz": ("Ultralytics'", _INPUT_SIZE),
    "--img-size": ("timm's", _INPUT_SIZE),
    "--img": ("Ultralytics'", _INPUT_SIZE),
    "--half": ("Ultralytics'", {"export": "--fp16 (the fp16 file beside the fp32 one)", "bench": "--precision fp16"}),
    "--dynamic": ("Ultralytics'", {"export": "the batch axis is dynamic already (--batch N fixes it)"}),
    "--data": ("Ultralytics'", {"export": "--calib (int8 calibration images) and --eval (the held-out check)",
                                "quantize": "--calib (calibration images) and --eval (the held-out check)"}),
    "--quantize": ("timm's", {"export": "--int8 (calibrated with --calib)"}),
    "--checkpoint": ("timm's", {c: "--weights" for c in ("export", "eval", "profile", "bench")}),
    "--batch-size": ("timm's", {"export": "--batch (a static batch; dynamic without it)", "bench": "--batch",
                                "eval": "--batch", "profile": "--batch"}),
    "--output": ("timm's", {"export": "-o / --output-dir", "bench": "-o / --output-dir"}),
    "--niter": ("benchmark_app's", {"bench": "--runs (the least timed runs a round)"}),
    "--nthreads": ("benchmark_app's", {"bench": "--threads", "eval": "--threads", "verify": "--threads"}),
    "--calibrate-method": ("ONNX Runtime's", {"export": "--calib-method", "quantize": "--calib-method"}),
}


def foreign_option_hint(option: str, command: str) -> str | None:
    """The line for ``option`` given to ``command`` where another tool has it (``--imgsz=224`` as ``--imgsz``;
    one dash or underscores as benchmark_app and ORT spell them), else None."""
    name = "--" + re.sub(r"^-+", "", option.split("=", 1)[0]).replace("_", "-").lower()
    whose, equivalents = FOREIGN_OPTIONS.get(name, (None, {}))
    here = equivalents.get(command)
    if here is None:
        return None
    return f"no such option '{option}' ({whose} name); in cnnexport {command}: {here}"

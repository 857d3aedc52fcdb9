"""OpenVINO IR (.xml + .bin): converted from the ONNX file with fp32 weights; fp16 with the weights
compressed to fp16 (``save_model``'s default: half the .bin, decompressed when the CPU compiles it);
int8 with NNCF post-training quantization on the same calibration set. No torch.

NNCF's overflow fix (weights quantized to 7 bits where int8 multiply-adds could saturate) is
switched on for every layer on x86 CPUs without VNNI, and left to the first layer otherwise.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import numpy as np

from ...errors import CalibrationError, ExportError, MissingDependencyError, disk_full, cause_line
from ..._atomic import write_json
from ...runtimes.openvino import config_path, import_openvino
from .onnx.quantize_ort import decide_reduce_range
from . import Artifact, ConvertSource, Int8Options


def convert(source: ConvertSource, dst: Path) -> Artifact:
    return Artifact("openvino", to_openvino(source.onnx_path, dst), "openvino")


def to_openvino(onnx_path: str | os.PathLike, xml_path: str | os.PathLike) -> list[Path]:
    """Convert and write the IR pair; returns the written files (.xml, .bin).

    ``save_model`` compresses weights to fp16 by default; this keeps them fp32 so the IR computes
    what the ONNX file computes (int8 and fp16 are explicit, separate artifacts).
    """
    ov = import_openvino()
    xml_path = Path(xml_path)
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:
        raise ExportError(f"OpenVINO conversion failed: {cause_line(exc)}") from None
    return save_ir(model, xml_path)


def save_ir(model, xml_path: Path, *, precision: str = "f32", compress_to_fp16: bool = False) -> list[Path]:
    """Write the IR with the CPU inference precision it is verified at carried two ways: the config file
    beside it (``<model>.config.json``, benchmark_app's ``-load_config`` format, which cnnexport's
    adapter reads), and the model's ``runtime_options`` (which OpenVINO 2026.4's CPU plugin ignores:
    it reads only KV-cache and dynamic-quantization keys there; kept for a release that honours it)."""
    ov = import_openvino()
    model.set_rt_info(precision, ["runtime_options", "INFERENCE_PRECISION_HINT"])
    try:
        ov.save_model(model, str(xml_path), compress_to_fp16=compress_to_fp16)
        write_json(config_path(xml_path), {"CPU": {"INFERENCE_PRECISION_HINT": precision}})
    except Exception as exc:
        raise (disk_full(exc) or ExportError(f"OpenVINO could not write {xml_path.name}: {cause_line(exc)}")) from None
    return [xml_path, xml_path.with_suffix(".bin"), config_path(xml_path)]


def half(source: ConvertSource, fp32: Artifact, dst: Path) -> Artifact:
    """The fp32 IR saved again with fp16 weights; the CPU plugin computes in fp32 (the adapter's
    ``INFERENCE_PRECISION_HINT``), a GPU in fp16."""
    dst = Path(dst)
    model = _read_back(fp32)
    files = save_ir(model, dst, compress_to_fp16=True)
    return Artifact("openvino", files, "openvino", precision="fp16",
                    details={"fp16": {"weights": "fp16", "compute": "fp32 on CPU (inference precision f32), fp16 on GPU"}})


def bf16(source: ConvertSource, fp32: Artifact, dst: Path) -> Artifact:
    """The fp32 IR saved again to be compiled in bf16 (its config file and rt_info say
    ``INFERENCE_PRECISION_HINT`` bf16): fp32 weights, bf16 arithmetic with fp32 accumulation on AMX or
    AVX512-BF16 (OpenVINO's own default on such CPUs, chosen here on purpose and checked by bf16's rule)."""
    dst = Path(dst)
    model = _read_back(fp32)
    files = save_ir(model, dst, precision="bf16")
    return Artifact("openvino", files, "openvino", precision="bf16",
                    details={"bf16": {"weights": "fp32", "compute": "bf16 on CPU (inference precision bf16)"},
                             "load_as_verified": 'core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": '
                                                 '"bf16"})'})


def bf16_preflight() -> None:
    """A bf16 file is verified by computing it: refuse, before any work, on a CPU without bf16 arithmetic."""
    from ...errors import UsageError
    from ...runtimes.openvino import cpu_has_bf16

    if not cpu_has_bf16():
        raise UsageError("--bf16 needs a CPU with bf16 arithmetic (AVX512-BF16 or AMX-BF16) to compute and verify "
                         "the file, and this one has none; export on such a CPU, or leave out --bf16")


def _read_back(fp32: Artifact):
    """The fp32 IR just written, as a model to save again (compressed, or with another precision)."""
    try:
        return import_openvino().Core().read_model(str(fp32.files[0]))
    except Exception as exc:
        raise ExportError(f"OpenVINO could not read {fp32.files[0].name} back: {cause_line(exc)}") from None


def quantize(src: Path, dst: Path, calibration: np.ndarray, options: Int8Options, layout: str) -> dict:
    return quantize_openvino(src, dst, calibration)


def qat_int8(source: ConvertSource, dst: Path) -> dict:
    """A QAT model's int8 IR: its QDQ ONNX file (``source.onnx_path``) converted, each QuantizeLinear +
    DequantizeLinear pair a FakeQuantize that the CPU plugin runs as int8."""
    files = to_openvino(source.onnx_path, dst)
    ov = import_openvino()
    fq = sum(1 for op in ov.Core().read_model(str(files[0])).get_ops() if op.get_type_name() == "FakeQuantize")
    return {"runtime": "openvino", "format": "IR (FakeQuantize)", "method": "quantization-aware training (the "
            "model's own scales, from its QDQ ONNX file)", "fake_quantize_nodes": fq}


def describe_int8(info: dict) -> str:
    return f"OpenVINO int8 via NNCF (overflow fix {info['overflow_fix']}: {info['overflow_fix_reason']})"


def runtime_options(artifact: Artifact, batch_shape: tuple[int, ...]) -> dict:
    return {}


def quantize_openvino(src: str | os.PathLike, dst_xml: str | os.PathLike, calibration: np.ndarray, *,
                      isa: dict | None = None, machine: str | None = None) -> dict:
    """Quantize an IR or ONNX model with NNCF and save the int8 IR (``dst_xml`` + .bin)."""
    ov = import_openvino()
    try:
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    except ImportError:
        raise MissingDependencyError("OpenVINO int8 needs NNCF: pip install 'cnnexport[openvino]'") from None
    from ...machine import cpu_facts
    from ...calib.readers import nncf_dataset

    if len(calibration) == 0:
        raise CalibrationError("the calibration set is empty")
    facts = cpu_facts()
    saturates, reason = decide_reduce_range(facts["isa"] if isa is None else isa, machine or facts["machine"])
    overflow = OverflowFix.ENABLE if saturates else OverflowFix.FIRST_LAYER
    dst_xml = Path(dst_xml)
    logging.getLogger("nncf").setLevel(logging.ERROR)
    try:
        model = ov.Core().read_model(str(src))
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            quantized = nncf.quantize(model, nncf_dataset(calibration), subset_size=len(calibration),
                                      advanced_parameters=AdvancedQuantizationParameters(overflow_fix=overflow))
    except Exception as exc:
        first = cause_line(exc)
        raise (disk_full(exc) or ExportError(f"NNCF quantization failed: {first}")) from None
    save_ir(quantized, dst_xml)
    fq = sum(1 for op in quantized.get_ops() if op.get_type_name() == "FakeQuantize")
    return {"runtime": "openvino", "format": "IR (FakeQuantize)", "method": "nncf (min-max, fast bias correction)",
            "overflow_fix": overflow.value, "overflow_fix_reason": reason, "fake_quantize_nodes": fq,
            "calibration_samples": int(len(calibration)),
            "files": [dst_xml.name, dst_xml.with_suffix(".bin").name, config_path(dst_xml).name]}


def plain(module, x, path: Path) -> None:
    """``bench --plain``: ``ov.save_model(ov.convert_model(module, example_input=x, input=shape), path)``, its
    default fp16 weight compression included."""
    ov = import_openvino()
    model = ov.convert_model(module, example_input=x, input=[tuple(x.shape)])
    ov.save_model(model, str(path))

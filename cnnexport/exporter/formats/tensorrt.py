"""TensorRT (.engine): a serialized engine built from the verified ONNX file with the TensorRT Python
API: fp32; ``half`` with fp16 kernels allowed (``BuilderFlag.FP16``); int8 from the QDQ ONNX file the
int8 flow writes for ONNX Runtime (explicit quantization: TensorRT takes the scales in the file, so the
calibration is the same one). An optimisation profile covers the dynamic batch axis (min 1, opt the
export's batch, max the ``engine_max_batch`` option or ``DEFAULT_MAX_BATCH``); a timing cache shared by
builds on the same GPU and TensorRT version makes rebuilds fast.

An engine runs only on the GPU model it was built on: its build facts (TensorRT version, GPU, compute
capability, precision, workspace, profile) go into the report and into ``<model>.engine.json`` beside
it, which the runtime adapter checks before loading. No torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..._atomic import atomic_path, write_json
from ...errors import ExportError, UsageError, cause_line, disk_full
from ...runtimes.tensorrt import error_logger, facts_path, gpu_facts, import_tensorrt
from . import Artifact, ConvertSource, Int8Options

DEFAULT_MAX_BATCH = 64
WORKSPACE_BYTES = 4 << 30


def convert(source: ConvertSource, dst: Path) -> Artifact:
    return _artifact(build_engine(source.onnx_path, dst, source.shape, "fp32", source.option("engine_max_batch")), dst,
                     "fp32")


def half(source: ConvertSource, fp32: Artifact, dst: Path) -> Artifact:
    """fp16 kernels allowed wherever TensorRT finds them faster (fp32 I/O)."""
    return _artifact(build_engine(source.onnx_path, dst, source.shape, "fp16", source.option("engine_max_batch")), dst,
                     "fp16")


def quantize(src: ConvertSource, dst: Path, calibration: np.ndarray, options: Int8Options, layout: str) -> dict:
    """``src.onnx_path`` is the QDQ ONNX file (``Format.int8_from == "onnx_int8"``): its scales are used."""
    facts = build_engine(src.onnx_path, dst, src.shape, "int8", src.option("engine_max_batch"))
    return {"runtime": "tensorrt", "format": "engine (explicit int8 from QDQ)", "method": "the ONNX Runtime QDQ file's scales",
            "calibration_samples": int(len(calibration)), "artifact_details": {"engine": facts}}


def describe_int8(info: dict) -> str:
    return "TensorRT int8 engine from the QDQ ONNX file (explicit quantization)"


def runtime_options(artifact: Artifact, batch_shape: tuple[int, ...]) -> dict:
    return {"batch": batch_shape[0]}


def _artifact(facts: dict, dst: Path, precision: str) -> Artifact:
    return Artifact("tensorrt", [Path(dst), facts_path(dst)], "tensorrt", precision=precision,
                    details={"engine": facts})


def timing_cache_path(trt_version: str, gpu: str) -> Path:
    """One timing cache per TensorRT version and GPU, in the user's cache folder."""
    root = Path(os.environ.get("CNNEXPORT_CACHE", Path.home() / ".cache" / "cnnexport"))
    return root / "tensorrt" / f"{trt_version}-{''.join(c if c.isalnum() else '_' for c in gpu)}.timing"


def build_engine(onnx_path: Path, dst: Path, shape: tuple[int, ...], precision: str,
                 max_batch: int | None = None) -> dict:
    """Build and write ``dst`` (and its facts, ``<dst>.json``); returns the build facts."""
    trt = import_tensorrt()
    gpu = gpu_facts()
    logger = error_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch: the only mode TensorRT 10 has
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT cannot parse '{Path(onnx_path).name}': {errors[0] if errors else 'unknown error'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    config.clear_flag(trt.BuilderFlag.TF32)  # on by default: 10-bit mantissas would fail fp32's 1e-4 check
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: the Q/DQ nodes carry the scales
    inp = network.get_input(0)
    dynamic = inp.shape[0] < 0
    opt = int(shape[0])
    top = max(int(max_batch or DEFAULT_MAX_BATCH), opt) if dynamic else opt
    low = 1 if dynamic else opt
    rest = tuple(int(d) for d in shape[1:])
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (low, *rest), (opt, *rest), (top, *rest))
    config.add_optimization_profile(profile)
    cache_file = timing_cache_path(trt.__version__, gpu["gpu"])
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=True)
    try:
        serialized = builder.build_serialized_network(network, config)
    except Exception as exc:
        raise ExportError(f"TensorRT engine build failed: {cause_line(exc)}") from None
    if serialized is None:
        raise ExportError(f"TensorRT engine build failed: {logger.errors[-1] if logger.errors else 'no engine'}")
    facts = {"tensorrt": trt.__version__, **gpu, "precision": precision, "workspace_bytes": WORKSPACE_BYTES,
             "profile": {"input": inp.name, "min": [low, *rest], "opt": [opt, *rest], "max": [top, *rest]},
             "timing_cache": str(cache_file)}
    try:
        with atomic_path(Path(dst)) as tmp:
            tmp.write_bytes(bytes(serialized))
        write_json(facts_path(dst), facts)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache_file) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    except OSError as exc:
        raise (disk_full(exc) or exc) from None
    return facts


def preflight() -> None:
    """Refuse before any work when no CUDA GPU is usable here (one line, exit 2), or name the missing
    package on a GPU machine."""
    from ...errors import MissingDependencyError

    try:
        gpu_facts()
    except MissingDependencyError:
        if Path("/proc/driver/nvidia/version").is_file():
            raise
        reason = "no NVIDIA driver"
    except Exception as exc:
        reason = cause_line(exc)
    else:
        import_tensorrt()
        return
    raise UsageError(f"--tensorrt builds an engine for the NVIDIA GPU it will run on, and none is usable here "
                     f"({reason}): leave out --tensorrt, or export on that GPU machine") from None


def plain(module, x, path: Path) -> None:
    """``bench --plain``: TensorRT's builder on the plain ONNX file with its defaults (fp32, the file's static
    shape), as ``trtexec --onnx`` builds it."""
    from ..plain import plain_onnx

    build_engine(plain_onnx(module, x, path), path, tuple(x.shape), "fp32")

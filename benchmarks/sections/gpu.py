"""REPORT.md: the study on a GPU (`benchmarks/run_gpu.sh`)."""

from __future__ import annotations


from .common import _gpu
from .guidelines import guidelines_section
from .zoo import zoo_section


def gpu_section(g: dict | None, zoo: dict | None) -> list[str]:
    """The same study on a CUDA machine (measured once, when a GPU was lent; see run_gpu.sh)."""
    if not g and not zoo:
        return []
    src = g or zoo
    out = ["# On a GPU", "", f"Measured once on a lent machine: {_gpu(src)}, host CPU {src['machine']['cpu']}; PyTorch "
           "eager and the same model replayed from a CUDA graph (`torch-cudagraph`). ONNX Runtime there had no CUDA "
           "execution provider (`onnxruntime`, not `onnxruntime-gpu`), so only PyTorch rows exist. cuDNN's default "
           "lets convolutions use TF32.", ""]
    return out + guidelines_section(g) + zoo_section(zoo, "latency_vs_macs_cuda.png")

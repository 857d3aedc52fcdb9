"""CUDA facts and calls without torch: cuda-python's runtime bindings, for the TensorRT adapter's
device buffers and the GPU facts every GPU row records."""

from __future__ import annotations

from ..errors import MissingDependencyError, UsageError

#: What a GPU bench row records beside the GPU's name (None on a CPU row): the worker's facts, and the version of
#: TensorRT where its runtime ran the row.
GPU_FACTS = ("compute_capability", "cuda_driver", "cuda_runtime", "tensorrt")


def import_cudart():
    """cuda-python's runtime bindings (``cuda.bindings.runtime``; ``cuda.cudart`` before 12.6)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise MissingDependencyError("cuda-python is not installed: pip install 'cnnexport[gpu]'") from None
    return cudart


def check_cuda(result):
    """cuda-python returns (error, *values): raise on an error, return the values."""
    cudart = import_cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(err)
        raise RuntimeError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}")
    return values[0] if len(values) == 1 else values


def gpu_facts() -> dict:
    """This machine's GPU 0: name and compute capability (for the engine's build facts)."""
    cudart = import_cudart()
    count = check_cuda(cudart.cudaGetDeviceCount())
    if not count:
        raise UsageError("no CUDA GPU is visible here")
    props = check_cuda(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name.rstrip("\x00"), "compute_capability": f"{props.major}.{props.minor}"}


def row_facts() -> dict:
    """What a GPU row records about the device: name, compute capability, driver and runtime versions
    ({} where cuda-python cannot say: the measurement stands without them)."""
    try:
        return {**gpu_facts(), **versions()}
    except Exception:
        return {}


def versions() -> dict:
    """The CUDA driver and runtime versions (12040 -> "12.4"), or {} without cuda-python."""
    try:
        cudart = import_cudart()
        driver = check_cuda(cudart.cudaDriverGetVersion())
        runtime = check_cuda(cudart.cudaRuntimeGetVersion())
    except Exception:
        return {}
    as_text = lambda v: f"{v // 1000}.{v % 1000 // 10}"  # noqa: E731
    return {"cuda_driver": as_text(driver), "cuda_runtime": as_text(runtime)}

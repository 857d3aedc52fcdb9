"""One latency measurement in its own process, so runtimes never share thread pools or spin
against each other: ``python -m cnnexport.bench.worker '<job json>'`` prints one JSON object.

Job kinds (``job["kind"]``):
- ``artifact``: a model file on a runtime (``path``, ``runtime``, ``threads``, ``batch``, ``device``; on
  cuda, ONNX Runtime's ``ep``: cuda or tensorrt);
- ``torch``: a zoo model in PyTorch eager, or replayed from a CUDA graph (``model``,
  ``input_shape``, ``cuda_graph``); imports torch, the others do not;
- ``gemm``: the compute ceiling at ``precision`` (fp32, int8): the best GEMM of numpy and the runtimes;
- ``bandwidth``: the machine's memory bandwidth (a streaming add) with ``threads`` threads;
- ``memory_roofs``: the copy bandwidth at working sets that fit each cache level, with ``threads`` threads;
- ``cuda_limits``: the same two on the CUDA device (fp32, TF32, fp16 and bf16 matmuls and a device-to-device
  copy);
- ``cuda_probe``: whether PyTorch sees a CUDA device;
- ``many``: a list of jobs of one runtime run one after the other in this process.
"""

from __future__ import annotations

import json
import os
import sys

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _timing_options(job: dict) -> dict:
    return {k: job[k] for k in ("warmup", "min_runs", "min_time_s", "max_time_s") if k in job}


def _input(shape: list[int]):
    """A fixed random NCHW batch (transposed once for an NHWC model, before timing)."""
    import numpy as np

    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def run_artifact(job: dict) -> dict:
    import numpy as np

    from ..runtimes import RUNTIME_TABLE, load
    from .jobs import runtime_label
    from .latency import measure

    from ..errors import UsageError

    options: dict = {"threads": job["threads"]}
    device = job.get("device", "cpu")
    runtime = RUNTIME_TABLE[job["runtime"]]
    if device not in runtime.devices:
        on = [r.name for r in RUNTIME_TABLE.values() if device in r.devices]
        raise UsageError(f"--device {device} is supported for {', '.join(on)}, not {runtime.name}" if device != "cpu"
                         else f"{runtime.name} runs on a GPU only: add --device cuda")
    if runtime.takes_device:
        options["device"] = device  # a file compiled for another device is refused, not timed there
    if device == "cuda":
        options.update(runtime.gpu_options)  # e.g. ONNX Runtime's execution provider (CUDA or TensorRT)
        if job.get("ep"):
            options["ep"] = job["ep"]
    size = job.get("input_size")  # [C or None, H, W] from --input-size
    if runtime.fixes_batch:
        # A dynamic batch axis compiled static at the measured batch, as benchmark_app -shape does and a
        # deployment at one batch size would: left dynamic it cost 2-10% on small networks, which made
        # cnnexport's dynamic-batch files look slower than the static plain exports.
        options["batch"] = job["batch"]
    if size and runtime.input_shape == "fill":  # its dynamic dimensions compiled static (C None: the file's)
        options["input_shape"] = (job["batch"], *size)
    elif size and runtime.input_shape == "full":  # the file holds no shape at all (ncnn): C defaults to 3
        options["input_shape"] = (job["batch"], size[0] or 3, size[1], size[2])
    model = load(job["path"], job["runtime"], **options)
    spec = model.inputs[0]
    static = spec.shape[0] if spec.shape else None
    batch = job["batch"]
    if static is not None and batch % static:
        return {"skipped": f"static batch {static} does not divide batch {batch}"}
    chw = nchw_input_size(spec, size, job["path"])
    shape = [batch, *chw]
    x = _input(shape)
    if spec.layout == "NHWC" and x.ndim == 4:
        # Fed in the model's own layout, converted once outside the timed calls: a camera pipeline hands
        # an NHWC model NHWC frames (the transpose cost 2-5% of a 3 ms TFLite call).
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    timing = measure(model.timed_call(x), **_timing_options(job))
    describe = {**model.describe(), "runtime": runtime_label(job["runtime"], options.get("ep"))}
    # A static-batch file (TFLite, ncnn, a static .pte: batch 1) runs a larger batch as consecutive calls:
    # the row says so (calls_per_batch) rather than presenting it as a batch.
    return {**timing.as_dict(), **describe, "static_batch": static, "calls_per_batch": model.calls_per_batch(batch)}


def nchw_input_size(spec, size: list | None, path: str) -> list[int]:
    """C, H, W to bench ``path`` at: the file's own, with ``size`` (``--input-size``: C may be None)
    filling what the file leaves dynamic; a size that contradicts a fixed dimension is refused."""
    from pathlib import Path

    from ..errors import UsageError
    from ..runtimes.base import dims_text

    chw = spec.chw
    if size:
        want = [size[0] if size[0] is not None else (chw[0] if len(chw) == 3 and chw[0] is not None else 3),
                *size[1:]]
        if len(chw) != 3 or any(d is not None and d != w for d, w in zip(chw, want)):
            raise UsageError(f"'{Path(path).name}' takes input {dims_text(chw)} (C,H,W); --input-size "
                             f"{dims_text(want)} does not fit it")
        return want
    if len(chw) != 3 or None in chw:
        raise UsageError(f"'{Path(path).name}' does not fix its input size ({dims_text(chw) or 'no dimensions'}): "
                         "pass --input-size (H, HxW or C,H,W)")
    return chw


def run_torch(job: dict) -> dict:
    import torch

    from ..models import create_model, import_callable, is_registered, load_model
    from ..models.outputs import tensor_output
    from ..runtimes.torch_eager import TorchModel
    from .latency import measure

    kwargs, weights = job.get("model_kwargs", {}), job.get("weights", {})
    if is_registered(job["model"]):
        module = create_model(job["model"], **kwargs, **weights)
    elif kwargs:  # package.module:builder and its arguments: the study's micro-networks
        module = import_callable(job["model"])(**kwargs)
    else:  # the user's model: timm:NAME, package.module:callable or path/to/file.py:callable
        module = load_model(job["model"], **weights)
    shape = [job["batch"], *job["input_shape"][1:]]
    module = tensor_output(module, torch.zeros(1, *shape[1:]))  # a dict or tuple output: timed as exported, its first
    model = TorchModel(module, tuple(shape), device=job.get("device", "cpu"), threads=job["threads"],
                       compiled=job.get("compiled", False))
    x = _input(shape)
    fn = lambda: model.run(x)  # noqa: E731
    describe = model.describe()
    if model.device.startswith("cuda") and not job.get("cuda_graph"):
        # On a GPU, time the forward pass on a device-resident input, synchronised, as the CUDA-graph
        # row does: host-device copies would otherwise dominate small models and large feature maps.
        x_dev = torch.from_numpy(x).to(model.device)

        def fn():
            with torch.inference_mode():
                out = model.module(x_dev)
            torch.cuda.synchronize()
            return out
    if job.get("cuda_graph"):
        static_in = torch.from_numpy(x).cuda()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(3):
                model.module(static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            static_out = model.module(static_in)

        def fn():
            graph.replay()
            torch.cuda.synchronize()
            return static_out
        describe["runtime"] = "torch-cudagraph"
    if model.device.startswith("cuda"):
        major, minor = torch.cuda.get_device_capability()
        describe.update(compute_capability=f"{major}.{minor}", cuda_runtime=torch.version.cuda)
    timing = measure(fn, **_timing_options(job))
    return {**timing.as_dict(), **describe}


def run_gemm(job: dict) -> dict:
    """The compute ceiling at ``precision``: the best of every installed engine's GEMM (``bench.gemm``)."""
    from ..machine import cpu_facts
    from .gemm import isa_peak, measure_gemms, pick_ceiling, reported_mhz

    precision, threads = job.get("precision", "fp32"), job.get("threads", 1)
    measurements = measure_gemms(precision, threads, n=job.get("n"))
    return pick_ceiling(measurements, isa_peak(cpu_facts()["isa"], threads, precision, reported_mhz()))


def run_bandwidth(job: dict) -> dict:
    from .limits import stream_bandwidth

    return stream_bandwidth(job.get("threads", 1), mib=job.get("mib"))


def run_memory_roofs(job: dict) -> dict:
    """Copy bandwidth per cache level (``bench.limits.memory_roofs``; DRAM's is the bandwidth job's)."""
    from .limits import memory_roofs

    return {"roofs": memory_roofs(job.get("threads", 1))}


def run_cuda_limits(job: dict) -> dict:
    """The CUDA device's matmul GFLOP/s at each precision a GPU row computes in (``gflops``: float32 with TF32
    off, what an fp32 kernel may count on; ``gflops_tf32``: float32 inputs on TF32 tensor cores, what PyTorch's
    default convolutions use; ``gflops_fp16``, ``gflops_bf16``: the tensor cores' half types) and its device
    memory bandwidth (a copy between two 1 GiB buffers: 2 GiB moved per copy)."""
    import torch

    from .latency import measure

    dev = "cuda"
    n = job.get("n", 8192)

    def matmul_gflops(dtype, tf32: bool) -> float:
        saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            a = torch.randn(n, n, device=dev, dtype=dtype)
            b = torch.randn(n, n, device=dev, dtype=dtype)

            def mm():
                torch.matmul(a, b)
                torch.cuda.synchronize()
            timing = measure(mm, warmup=3, min_runs=10, min_time_s=0.3, max_time_s=2.0)
            del a, b
        finally:
            torch.backends.cuda.matmul.allow_tf32 = saved
        return 2 * n ** 3 / (timing.median_ms / 1e3) / 1e9

    out = {"gflops": matmul_gflops(torch.float32, False), "gflops_tf32": matmul_gflops(torch.float32, True),
           "gflops_fp16": matmul_gflops(torch.float16, False)}
    out["gflops_bf16"] = matmul_gflops(torch.bfloat16, False) if torch.cuda.is_bf16_supported() else None
    elems = job.get("mib", 1024) * (1 << 20) // 4
    src, dst = torch.ones(elems, device=dev), torch.empty(elems, device=dev)

    def copy():
        dst.copy_(src)
        torch.cuda.synchronize()
    bw = measure(copy, warmup=3, min_runs=20, min_time_s=0.5, max_time_s=3.0)
    major, minor = torch.cuda.get_device_capability()
    return {**out, "gbs": 2 * elems * 4 / (bw.median_ms / 1e3) / 1e9, "gpu": torch.cuda.get_device_name(),
            "compute_capability": f"{major}.{minor}", "torch": torch.__version__, "cuda_runtime": torch.version.cuda}


def run_cuda_probe(job: dict) -> dict:
    """Whether PyTorch sees a CUDA device, and its name."""
    try:
        import torch
    except ImportError:
        return {"cuda": False, "gpu": None}
    ok = torch.cuda.is_available()
    return {"cuda": ok, "gpu": torch.cuda.get_device_name() if ok else None}


def run_one(job: dict) -> dict:
    """One job; a failure becomes ``{"error": ...}`` so the rest of the matrix still runs."""
    from ..errors import CnnexportError, first_line

    try:
        return KINDS[job["kind"]](job)
    except CnnexportError as exc:
        return {"error": first_line(exc), "error_type": type(exc).__name__}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {first_line(exc)}", "error_type": "InternalError"}


def run_many(job: dict) -> dict:
    """Several jobs of one runtime, one after the other, in this one process."""
    return {"results": [run_one(sub) for sub in job["jobs"]]}


KINDS = {"artifact": run_artifact, "torch": run_torch, "gemm": run_gemm, "bandwidth": run_bandwidth,
         "memory_roofs": run_memory_roofs, "cuda_limits": run_cuda_limits, "cuda_probe": run_cuda_probe,
         "many": run_many}


def worker_env(threads: int) -> dict:
    """The environment for a worker limited to ``threads`` threads."""
    env = dict(os.environ)
    env.update({k: str(threads) for k in THREAD_ENV})
    return env


def main(argv: list[str]) -> int:
    result = run_one(json.loads(argv[0]))
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``profile --roofline`` below the CLI: a file's layer costs (from its fp32 ONNX graph) against this
machine's limits, measured unless given, and with ``per_layer`` each layer timed by the runtime's own
profiler. The CLI resolves the target (a file, or a model it exports to a temporary ONNX file) and
hands the graph here."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError


def file_input_shape(graph: str | Path, batch: int, given: tuple | None = None) -> tuple[int, ...]:
    """(N, C, H, W) of a file whose costs ``graph`` (its fp32 ONNX file) holds: the graph's input, with
    ``given`` (C or None, H, W: --input-size) in place of its spatial size; C None: the graph's, else 3."""
    from ..profile.graph import check

    dims = check(graph, full_check=False).inputs[0]["shape"]
    chw = tuple(d if isinstance(d, int) else None for d in dims[1:])
    if given:
        chw = (given[0] or (chw[0] if chw and chw[0] else 3), *given[1:])
    if None in chw:
        raise UsageError(f"'{Path(graph).name}' leaves its input size open ({dims}): pass --input-size")
    return (batch, *chw)


def costs_graph_of(path: str | Path) -> Path:
    """The fp32 ONNX graph that holds ``path``'s layer costs; a one-line error when there is none."""
    from ..profile.onnx_profile import costs_graph

    path = Path(path)
    graph = costs_graph(path)
    if graph is None:
        raise UsageError(f"--roofline reads the layer costs from the fp32 ONNX file beside '{path.name}' "
                         f"('{path.name.split('.')[0]}.onnx'), which is not there: export with the onnx format too")
    return graph


def check_choices(runtime: str | None, threads: int, ceiling: float | None, bandwidth: float | None) -> None:
    """The choices of a roofline run, before any work: a profiled runtime (ONNX Runtime, OpenVINO), limits
    that can be."""
    from ..runtimes.profiling import PROFILED_RUNTIMES

    if not 1 <= threads <= 4096 or (ceiling is not None and ceiling <= 0) or (bandwidth is not None and bandwidth <= 0):
        raise UsageError("--threads must be 1..4096, --ceiling and --bandwidth positive")
    if runtime and runtime not in PROFILED_RUNTIMES:
        raise UsageError(f"per-layer timings come from ONNX Runtime's or OpenVINO's profiler, not {runtime}; "
                         "choose --runtime ort or openvino")


def roofline(path: str | Path, graph: str | Path, shape: tuple[int, ...], *, runtime: str, per_layer: bool = False,
             threads: int = 1, precision: str | None = None, ceiling: float | None = None,
             bandwidth: float | None = None) -> dict:
    """Each layer group of ``path`` (costs from ``graph``) against the roofline at ``shape`` on ``threads``:
    the compute ceiling (``ceiling`` GFLOP/s, else the best measured GEMM at the file's precision) and the
    memory roofs (``bandwidth`` GB/s as the one roof, else each cache level measured); with ``per_layer``,
    ``runtime``'s profiler times every layer (ONNX Runtime or OpenVINO)."""
    from ..exporter.formats import precision_of
    from ..machine import cpu_facts
    from ..profile.roofline import memory_roofs_from
    from ..profile.roofline_profile import roofline_profile
    from ..runtimes import WINOGRAD_RUNTIMES
    from ..runtimes.profiling import PROFILED_RUNTIMES, layer_times, profiled_file
    from . import schedule

    check_choices(None, threads, ceiling, bandwidth)
    path = Path(path)
    times = None
    if per_layer:
        if runtime not in PROFILED_RUNTIMES:
            raise UsageError(f"'{path.name}' runs on {runtime}, which has no per-layer profiler here; --per-layer "
                             "times the ONNX or OpenVINO file beside it: pass it, or --runtime ort")
        times = layer_times(profiled_file(runtime, path, graph), runtime, threads=threads, input_shape=shape)
    precision = precision or precision_of(path)
    # int8: its own GEMM ceiling (VNNI, AMX); fp16 files widen to fp32 on these CPUs: the fp32 one
    measured = None if ceiling else schedule.compute_ceiling(threads, "int8" if precision == "int8" else "fp32")
    limits = {"ceiling_gflops": ceiling or measured["gflops"],
              "bandwidth_gbs": bandwidth or schedule.bandwidth(threads)["gbs"]}
    # a given bandwidth is the one roof; measured, each cache level gets its own
    roofs = () if bandwidth else memory_roofs_from(schedule.memory_roofs(threads, limits["bandwidth_gbs"]))
    result = roofline_profile(path, costs_path=graph, input_shape=shape, times=times, precision=precision,
                              roofs=roofs, winograd=runtime in WINOGRAD_RUNTIMES, **limits)
    result["limits_measured"] = {"ceiling": ceiling is None, "bandwidth": bandwidth is None, "threads": threads}
    if measured:
        result["ceiling_set_by"] = measured["set_by"]
        result["ceiling_measurements"] = measured["measurements"]
    result["machine"] = cpu_facts()
    return result

"""``cnnexport profile``: params, MACs, memory access, the roofline per layer."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UsageError
from .render import print_profile, print_roofline
from .app import cli
from .options import parse_input_size


@cli.command("profile")
@click.argument("model")
@click.option("--input-size", default=None, help="H, HxW or C,H,W (default: the model's own).")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--num-classes", type=int, default=None)
@click.option("--weights", type=click.Path(dir_okay=False), default=None)
@click.option("--per-layer", is_flag=True, help="Show every layer.")
@click.option("--against-onnx", is_flag=True, help="Also export the model and profile the ONNX file; compare.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout, nothing else.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the per-layer table as CSV on stdout.")
@click.option("--tensorboard", "tb_dir", type=click.Path(file_okay=False), default=None,
              help="Write weight histograms before/after BN folding and sample images for TensorBoard.")
@click.option("--roofline", is_flag=True, help="Each layer's roofline bound against this machine's measured compute "
              "ceiling and memory bandwidth; with --per-layer, every layer timed by the runtime's own profiler.")
@click.option("--runtime", default=None, help="--roofline --per-layer: the profiler, ort or openvino (default: "
              "the file's own; ort for a model name).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="--roofline: threads for the limits and the timings.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="--roofline: bytes per element (default: the file's precision).")
@click.option("--ceiling", type=click.FloatRange(min=0, min_open=True), default=None,
              help="--roofline: compute ceiling in GFLOP/s instead of "
              "measuring it.")
@click.option("--bandwidth", type=click.FloatRange(min=0, min_open=True), default=None,
              help="--roofline: memory bandwidth in GB/s instead of "
              "measuring it.")
def profile_cmd(model, input_size, batch, num_classes, weights, per_layer, against_onnx, as_json, as_csv, tb_dir,
                roofline, runtime, threads, precision, ceiling, bandwidth):
    """Params, MACs, memory access cost (ShuffleNetV2's MAC) and activation memory of MODEL or an .onnx file;
    with --roofline, each layer's bound from them and this machine's limits (any exported file)."""
    if as_json and as_csv:
        raise UsageError("choose one of --json and --csv")
    if not 1 <= batch <= 4096:
        raise UsageError(f"bad --batch {batch}: use 1..4096")
    if roofline:
        if against_onnx or tb_dir or as_csv:
            raise UsageError("--roofline does not combine with --against-onnx, --tensorboard or --csv")
        result = _roofline(model, input_size, batch, num_classes, weights, per_layer, runtime, threads, precision,
                           ceiling, bandwidth)
        print_roofline(result, per_layer, as_json)
        return
    if runtime or ceiling or bandwidth or precision:
        raise UsageError("--runtime, --precision, --ceiling and --bandwidth go with --roofline")
    published = None
    if model.endswith(".onnx"):
        if against_onnx or tb_dir or weights:
            raise UsageError("--against-onnx, --tensorboard and --weights need a PyTorch model, not an .onnx file")
        from ..profile.onnx_profile import profile_onnx

        shape = None
        if input_size or batch != 1:
            from ..profile.graph import check

            dims = check(model).inputs[0]["shape"]
            chw = tuple(d if isinstance(d, int) else 1 for d in dims[1:])
            if input_size:
                chw = parse_input_size(input_size, chw[0] if chw else 3)
            shape = (batch, *chw)
        result = profile_onnx(model, shape).as_dict()
    else:
        from ..exporter.formats import for_file

        if for_file(model) is not None:  # .xml, .tflite, .mnn, ...: only the roofline reads them
            raise UsageError(f"'{model}' is a {for_file(model).label} file: profile reads .onnx files and PyTorch "
                             "models; for any exported file use profile --roofline")
        from ..profile.torch_profile import profile_module
        from ..models import is_registered, load_model, model_info

        chw = model_info(model).input_size if is_registered(model) else (3, 224, 224)
        if input_size:
            chw = parse_input_size(input_size, chw[0])
        if is_registered(model):
            info = model_info(model)
            published = {"params": info.params, "macs": info.macs, "source": info.source}
        module = load_model(model, num_classes=num_classes, weights=weights)
        shape = (batch, *chw)
        try:
            prof = profile_module(module, shape)
        except RuntimeError as exc:
            raise UsageError(f"the model cannot take input shape {'x'.join(map(str, shape))} "
                             f"({str(exc).splitlines()[0][:160]}); pass --input-size") from None
        result = prof.as_dict()
        if published and input_size is None and batch == 1:
            result["published"] = published
        if against_onnx:
            result["against_onnx"] = _profile_against_onnx(module, shape, prof)
        if tb_dir:
            from ..calib import Preprocess, sample_images
            from ..exporter.tensorboard import write_tensorboard

            imgs = sample_images(Preprocess(size=(chw[1], chw[2]), channels=chw[0]))
            result["tensorboard"] = write_tensorboard(module, tb_dir, imgs)
    print_profile(model, result, per_layer, as_json, as_csv)


def _roofline(target, input_size, batch, num_classes, weights, per_layer, runtime, threads, precision, ceiling,
              bandwidth) -> dict:
    """``profile --roofline``: the graph's costs, the machine's limits (measured unless given), and with
    ``per_layer`` the runtime profiler's timings of the file."""
    import tempfile

    from ..bench import plan, schedule
    from ..exporter.formats import precision_of
    from ..profile.graph import check
    from ..profile.onnx_profile import costs_graph
    from ..profile.roofline_profile import roofline_profile
    from ..runtimes import WINOGRAD_RUNTIMES, runtime_for
    from ..runtimes.profiling import PROFILED_RUNTIMES, layer_times, profiled_file

    if not 1 <= threads <= 4096 or (ceiling is not None and ceiling <= 0) or (bandwidth is not None and bandwidth <= 0):
        raise UsageError("--threads must be 1..4096, --ceiling and --bandwidth positive")
    chosen = plan.parse_runtimes(runtime)[0] if runtime else None
    if chosen and chosen not in PROFILED_RUNTIMES:
        raise UsageError(f"per-layer timings come from ONNX Runtime's or OpenVINO's profiler, not {chosen}; "
                         "choose --runtime ort or openvino")
    with tempfile.TemporaryDirectory(prefix="cnnexport-roofline-") as tmp:
        path = Path(target)
        if path.suffix:
            from ..runtimes import check_model_file

            check_model_file(target)
            graph = costs_graph(path)
            if graph is None:
                raise UsageError(f"--roofline reads the layer costs from the fp32 ONNX file beside '{path.name}' "
                                 f"('{path.name.split('.')[0]}.onnx'), which is not there: export with the onnx "
                                 "format too")
            dims = check(graph, full_check=False).inputs[0]["shape"]
            chw = tuple(d if isinstance(d, int) else None for d in dims[1:])
            if input_size:
                chw = parse_input_size(input_size, chw[0] if chw and chw[0] else 3)
            if None in chw:
                raise UsageError(f"'{graph.name}' leaves its input size open ({dims}): pass --input-size")
            shape = (batch, *chw)
            own = runtime_for(path)
        else:
            from ..exporter.onnx_export import to_onnx
            from ..exporter.prepare import prepare
            from ..exporter.simplify import simplify
            from ..models import is_registered, load_model, model_info

            chw = model_info(target).input_size if is_registered(target) else (3, 224, 224)
            if input_size:
                chw = parse_input_size(input_size, chw[0])
            shape = (batch, *chw)
            graph = path = Path(tmp) / f"{target.replace(':', '_')}.onnx"
            to_onnx(prepare(load_model(target, num_classes=num_classes, weights=weights)), graph, (1, *chw))
            simplify(graph, graph)
            own = "onnxruntime"
        chosen = chosen or own
        times = None
        if per_layer:
            if chosen not in PROFILED_RUNTIMES:
                raise UsageError(f"'{path.name}' runs on {chosen}, which has no per-layer profiler here; --per-layer "
                                 "times the ONNX or OpenVINO file beside it: pass it, or --runtime ort")
            times = layer_times(profiled_file(chosen, path, graph), chosen, threads=threads, input_shape=shape)
        precision = precision or precision_of(path)
        # int8: its own GEMM ceiling (VNNI, AMX); fp16 files widen to fp32 on these CPUs: the fp32 one
        measured = None if ceiling else schedule.compute_ceiling(threads, "int8" if precision == "int8" else "fp32")
        limits = {"ceiling_gflops": ceiling or measured["gflops"],
                  "bandwidth_gbs": bandwidth or schedule.bandwidth(threads)["gbs"]}
        from ..profile.roofline import memory_roofs_from

        # a given --bandwidth is the one roof; measured, each cache level gets its own
        roofs = () if bandwidth else memory_roofs_from(schedule.memory_roofs(threads, limits["bandwidth_gbs"]))
        result = roofline_profile(path, costs_path=graph, input_shape=shape, times=times, precision=precision,
                                  roofs=roofs, winograd=chosen in WINOGRAD_RUNTIMES, **limits)
    result["limits_measured"] = {"ceiling": ceiling is None, "bandwidth": bandwidth is None, "threads": threads}
    if measured:
        result["ceiling_set_by"] = measured["set_by"]
        result["ceiling_measurements"] = measured["measurements"]
    from ..machine import cpu_facts

    result["machine"] = cpu_facts()
    return result


def _profile_against_onnx(module, shape, prof) -> dict:
    import tempfile

    from ..exporter.onnx_export import to_onnx
    from ..exporter.prepare import prepare
    from ..profile.onnx_profile import compare, profile_onnx
    from ..exporter.simplify import simplify

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        to_onnx(prepare(module), path, shape)
        simplify(path, path)
        return compare(prof, profile_onnx(path, shape))

"""``cnnexport profile``: params, MACs, memory access, the roofline per layer."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UsageError
from .render import print_profile, print_roofline
from .app import cli
from .options import parse_input_size, trust_pickle_option


@cli.command("profile")
@click.argument("model")
@click.option("--input-size", default=None, help="H, HxW or C,H,W (default: the model's own).")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--num-classes", type=int, default=None)
@click.option("--weights", type=click.Path(), default=None, help="MODEL's weights: a state_dict file or folder.")
@trust_pickle_option
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
def profile_cmd(model, input_size, batch, num_classes, weights, trust_pickle, per_layer, against_onnx, as_json, as_csv,
                tb_dir, roofline, runtime, threads, precision, ceiling, bandwidth):
    """Params, MACs, memory access cost (ShuffleNetV2's MAC) and activation memory of MODEL or an .onnx file;
    with --roofline, each layer's bound from them and this machine's limits (any exported file)."""
    if as_json and as_csv:
        raise UsageError("choose one of --json and --csv")
    if not 1 <= batch <= 4096:
        raise UsageError(f"bad --batch {batch}: use 1..4096")
    if roofline:
        if against_onnx or tb_dir or as_csv:
            raise UsageError("--roofline does not combine with --against-onnx, --tensorboard or --csv")
        result = _roofline(model, input_size, batch, num_classes, weights, trust_pickle, per_layer, runtime, threads,
                           precision, ceiling, bandwidth)
        print_roofline(result, per_layer, as_json)
        return
    if runtime or ceiling or bandwidth or precision:
        raise UsageError("--runtime, --precision, --ceiling and --bandwidth go with --roofline")
    published = None
    if model.endswith(".onnx"):
        if against_onnx or tb_dir or weights or trust_pickle:
            raise UsageError("--against-onnx, --tensorboard, --weights and --trust-pickle need a PyTorch model, not an "
                             ".onnx file")
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
        from ..exporter.pipeline import exportable, is_torchscript, materialize_lazy
        from ..profile.torch_profile import profile_module
        from ..models import is_registered, load_model, model_info, model_input_size

        loaded = load_model(model, num_classes=num_classes, weights=weights, trust_pickle=trust_pickle)
        chw = model_input_size(model, loaded, weights)
        if input_size:
            chw = parse_input_size(input_size, chw[0])
        if is_registered(model):
            info = model_info(model)
            published = {"params": info.params, "macs": info.macs, "source": info.source}
        module = exportable(loaded)[0]  # fp32, uncompiled
        if is_torchscript(module):
            stem = Path(model).stem
            raise UsageError(f"profile counts a model's layers with forward hooks, which a TorchScript module does "
                             f"not run: profile its ONNX file (cnnexport {model} --onnx -o out, then cnnexport "
                             f"profile out/{stem}.onnx)")
        shape = (batch, *chw)
        materialize_lazy(module, shape)
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


def _roofline(target, input_size, batch, num_classes, weights, trust_pickle, per_layer, runtime, threads, precision,
              ceiling, bandwidth) -> dict:
    """``profile --roofline``: a file's own graph, or a model exported to a temporary ONNX file, handed to
    ``bench.roofline_run``."""
    import tempfile

    from ..bench import plan, roofline_run
    from ..exporter.formats import ALWAYS, FORMATS

    from ..runtimes import runtime_for as runtime_for_file

    chosen = plan.parse_runtimes(runtime)[0] if runtime else None
    roofline_run.check_choices(chosen, threads, ceiling, bandwidth)  # before a model is loaded and exported
    given = parse_input_size(input_size, None) if input_size else None
    with tempfile.TemporaryDirectory(prefix="cnnexport-roofline-") as tmp:
        path = Path(target)
        pickled = trust_pickle and runtime_for_file(target) is None  # a whole pickled model, no exported file
        if path.suffix and ":" not in target and not path.is_dir() and not pickled:  # a file; else a model
            from ..runtimes import check_model_file, runtime_for

            check_model_file(target)
            graph = roofline_run.costs_graph_of(path)
            shape = roofline_run.file_input_shape(graph, batch, given)
            own = runtime_for(path)
        else:
            from ..exporter.pipeline import prepared_onnx
            from ..models import load_model, model_input_size

            module = load_model(target, num_classes=num_classes, weights=weights, trust_pickle=trust_pickle)
            chw = model_input_size(target, module, weights)
            chw = (given[0] or chw[0], *given[1:]) if given else chw
            shape = (batch, *chw)
            stem = Path(target.rpartition(":")[2]).name or "model"  # module:callable, or a TorchScript file
            graph = path = prepared_onnx(module, (1, *chw), Path(tmp) / f"{stem}.onnx")
            own = FORMATS[ALWAYS].runtime
        return roofline_run.roofline(path, graph, shape, runtime=chosen or own, per_layer=per_layer, threads=threads,
                                     precision=precision, ceiling=ceiling, bandwidth=bandwidth)


def _profile_against_onnx(module, shape, prof) -> dict:
    import tempfile

    from ..exporter.pipeline import prepared_onnx
    from ..profile.onnx_profile import compare, profile_onnx

    with tempfile.TemporaryDirectory() as tmp:
        return compare(prof, profile_onnx(prepared_onnx(module, shape, Path(tmp) / "model.onnx"), shape))

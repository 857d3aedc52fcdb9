"""The ``cnnexport`` commands: options, calls into the package, and the error -> exit-code mapping
(see ``cnnexport.errors.EXIT_CODES``). The only place that wires the parts together; ``render``
prints. Heavy imports stay inside commands so that ``cnnexport --help`` is fast."""

from __future__ import annotations

import difflib
import functools
import json
import os
import signal
import sys
from pathlib import Path

import click

from .. import __version__
from ..exporter.formats import (ALWAYS, FORMATS, bf16_formats, file_int8_formats, fp16_formats, int8_formats,
                                precision_of)
from ..errors import CnnexportError, ExportError, OutputError, UsageError, VerificationError
from ..listopt import parse_list
from .render import (EvalProgress, ProgressBar, StageStatus, out_console, print_bench, print_eval,
                     print_export_summary, print_fold, print_guidelines, print_models, print_profile, print_quantize,
                     print_roofline, print_verify, print_zoo)
from .signals import Terminated, first_signal, install, interrupted


_GROUP_FLAGS = ("--help", "-h", "--version")
# quantize_ort.METHODS, spelled out so that --help does not import numpy
CALIB_METHODS = ("minmax", "entropy", "percentile")


def _one_line(message: str) -> str:
    """Control characters (from a path or a model name the user typed) escaped, so one error is one line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {_one_line(message)}", err=True)
    sys.exit(code)


class DefaultExportGroup(click.Group):
    """``cnnexport resnet50 ...`` means ``cnnexport export resnet50 ...``; errors become one line."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args:  # the help, as `cnnexport --help` prints it (not an error squashed onto one line)
            click.echo(ctx.get_help())
            ctx.exit(0)
        if args[0] not in self.commands and args[0] not in _GROUP_FLAGS:
            self._refuse_mistyped_command(args[0])
            args = ["export", *args]
        return super().parse_args(ctx, args)

    def _refuse_mistyped_command(self, word: str) -> None:
        """``cnnexport verfy ...``: a word close to a command (difflib's ratio, as the registry's model
        suggestions use) that is no model is a typo."""
        if word.startswith("-") or ":" in word or Path(word).suffix:
            return
        close = difflib.get_close_matches(word.lower(), list(self.commands), n=1, cutoff=0.75)
        if not close:
            return
        command = close[0]
        from ..models import is_registered

        if not is_registered(word):
            raise UsageError(f"'{word}' is neither a command nor a model: did you mean `cnnexport {command}`? "
                             "(see cnnexport --help, cnnexport list)")

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name or "cnnexport", complete_var, standalone_mode=False, **extra)
        except SystemExit:
            raise
        except BaseException as exc:
            if first_signal():  # also when a library turned the signal's exception into its own (OpenVINO does)
                _fail(*interrupted(first_signal()))
            if os.environ.get("CNNEXPORT_DEBUG") and _is_internal(exc):
                raise
            _fail(*_failure(exc))
        if first_signal():  # the signal's exception was swallowed inside a library and the run went on
            _fail(*interrupted(first_signal()))
        sys.exit(rv if isinstance(rv, int) else 0)


def _is_internal(exc: BaseException) -> bool:
    return isinstance(exc, Exception) and not isinstance(exc, (click.ClickException, click.exceptions.Abort,
                                                               CnnexportError))


def _failure(exc: BaseException) -> tuple[str, int]:
    """The one-line message and exit code for an exception that escaped a command."""
    if isinstance(exc, click.UsageError):
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        return exc.format_message().replace("\n", " ") + hint, 2
    if isinstance(exc, click.ClickException):
        return exc.format_message().replace("\n", " "), exc.exit_code
    if isinstance(exc, (click.exceptions.Abort, KeyboardInterrupt)):
        return interrupted(signal.SIGINT)
    if isinstance(exc, Terminated):
        return interrupted(signal.SIGTERM)
    if isinstance(exc, CnnexportError):
        return str(exc).replace("\n", " "), exc.exit_code
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "torch":
        return ("this command needs PyTorch, which this install lacks (a deploy install verifies, benchmarks, "
                "profiles and evaluates exported files without it): install torch beside it (pip install torch) or run "
                "the command where cnnexport was installed with its dependencies", 6)
    return (f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
            "(a bug; rerun with CNNEXPORT_DEBUG=1 for the traceback and report it)", 1)


@click.group(cls=DefaultExportGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cnnexport")
def cli() -> None:
    """Export, verify and benchmark CNN classifiers.

    \b
    cnnexport resnet50 --fold-bn --onnx      (same as: cnnexport export resnet50 ...)
    cnnexport list
    """


MAX_INPUT_DIM = 16384


def parse_input_size(text: str, channels: int | None) -> tuple[int | None, int, int]:
    """'224' -> (C, 224, 224); '224,192' or '224x192' -> (C, 224, 192); '1,32,32' -> (1, 32, 32).
    ``channels`` None leaves C to the model file (bench on files)."""
    import re

    if not re.fullmatch(r"\s*\d+(\s*[x,]\s*\d+){0,2}\s*", text):
        raise UsageError(f"bad --input-size '{text}': give H, HxW or C,H,W with positive integers, e.g. 224 or "
                         "3,224,224")
    dims = [int(p) for p in re.split(r"[x,]", text.replace(" ", ""))]
    if any(d < 1 or d > MAX_INPUT_DIM for d in dims):
        raise UsageError(f"bad --input-size '{text}': each dimension must be 1..{MAX_INPUT_DIM}")
    if len(dims) == 1:
        return channels, dims[0], dims[0]
    if len(dims) == 2:
        return channels, dims[0], dims[1]
    return dims[0], dims[1], dims[2]


def _format_flags(command):
    """One flag per row of ``FORMATS`` (--onnx, --openvino, ...), gathered into ``formats``: ONNX first
    (always written), then the others in the table's order."""
    def gather(**kwargs):
        chosen = [ALWAYS] + [f for f in FORMATS if f != ALWAYS and kwargs.pop(f"want_{f}")]
        kwargs.pop(f"want_{ALWAYS}")
        return command(formats=chosen, **kwargs)

    gather = functools.update_wrapper(gather, command)
    for fmt in reversed(FORMATS.values()):
        gather = click.option(f"--{fmt.name}", f"want_{fmt.name}", is_flag=True, help=fmt.flag_help)(gather)
    return gather


# onnxruntime may be written ort; the runtimes table (cnnexport.runtimes) is not imported for --help: it
# would pull numpy in
_RUNTIMES = ", ".join([f.runtime for f in FORMATS.values()] + ["torch", "torch-compile"])
_INT8_HELP = ("Also write the int8 file of every format that has one (" + ", ".join(
    f"{f.file_name('<model>', 'int8')}" + ("" if f.name == ALWAYS else f" with --{f.name}") for f in int8_formats())
    + "), calibrated on --calib.")


_FP16_HELP = ("Also write the fp16 file of every format that has one (" + ", ".join(
    f"{f.file_name('<model>', 'fp16')}" + ("" if f.name == ALWAYS else f" with --{f.name}") for f in fp16_formats())
    + "), checked against PyTorch by fp16's own rule.")
_BF16_HELP = ("Also write the bf16 file of every format that has one (" + ", ".join(
    f"{f.file_name('<model>', 'bf16')} with --{f.name}" for f in bf16_formats())
    + ": computed in bf16 on CPUs with AVX512-BF16 or AMX-BF16), checked by bf16's own rule.")


def refuse_unused_options(needs: dict[str, tuple[str, bool]]) -> None:
    """Every option that only means something beside another (``needs``: parameter -> (the flag it needs,
    whether that flag is given)) and was typed without it is refused, in one line: silently ignored, the
    user would believe it applied."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    for param in ctx.command.params:
        if param.name in needs and not needs[param.name][1] and ctx.get_parameter_source(param.name) in (
                ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            flag = needs[param.name][0]
            raise UsageError(f"{param.opts[0]} applies only with {flag}: add {flag}, or leave {param.opts[0]} out")


def _keep_float(value: str) -> tuple[str, ...]:
    return tuple(parse_list(value, "--keep-float", "give node names or auto, comma-separated")) if value.strip() else ()


@cli.command("export")
@click.argument("model")
@_format_flags
@click.option("--tflite-layout", type=click.Choice(["nhwc", "nchw"]), default="nhwc", show_default=True,
              help="Input layout of the .tflite file.")
@click.option("--executorch-max-batch", type=click.IntRange(2, 4096), default=None, metavar="N",
              help="A dynamic batch 1..N for the .pte program (default: the export's batch, static).")
@click.option("--aoti-max-batch", type=click.IntRange(2, 4096), default=None, metavar="N",
              help="A dynamic batch 1..N for the .pt2 package (default: the export's batch, static).")
@click.option("--tensorrt-max-batch", "engine_max_batch", type=click.IntRange(1, 4096), default=None, metavar="N",
              help="The TensorRT engine's largest batch (optimisation profile 1..N, tuned for the export's batch; "
                   "default 64).")
@click.option("--fp16", "want_fp16", is_flag=True, help=_FP16_HELP)
@click.option("--bf16", "want_bf16", is_flag=True, help=_BF16_HELP)
@click.option("--fp16-io", is_flag=True, help="The fp16 ONNX file takes and returns fp16 too (default: fp32 I/O, "
              "so callers need not change).")
@click.option("--int8", "want_int8", is_flag=True, help=_INT8_HELP)
@click.option("--calib", default=None, help="Calibration data for --int8: samples, digits, a folder, .npy/.npz.")
@click.option("--calib-count", type=click.IntRange(min=2), default=200, show_default=True,
              help="Samples drawn from --calib.")
@click.option("--int8-min-cosine", type=click.FloatRange(-1, 1), default=0.98, show_default=True,
              help="int8 check: mean cosine with PyTorch's logits on held-out samples.")
@click.option("--eval", "eval_source", default=None,
              help="Held-out data for the int8 check (default: digits' test split for --calib digits, else half of "
                   "--calib). Labelled (a folder with class subfolders, digits, .npz with x, y): top-1 fp32 -> int8.")
@click.option("--eval-count", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Images drawn from --eval.")
@click.option("--int8-max-drop", type=click.FloatRange(0, 100), default=None, metavar="POINTS",
              help="Refuse an int8 file whose top-1 falls more than POINTS below fp32 on the labelled held-out set; "
                   "--keep-float auto then aims at it (on labelled calibration data).")
@click.option("--calib-method", type=click.Choice(CALIB_METHODS), default="minmax",
              show_default=True, help="ONNX Runtime int8 calibration method.")
@click.option("--keep-float", default="", metavar="LIST",
              help="ONNX Runtime int8: nodes left in float: first, last, node-name globs ('/layer1/*'), or auto "
                   "(the fewest modules that reach --int8-min-cosine on the calibration samples).")
@click.option("--fold-bn/--no-fold-bn", default=True, show_default=True,
              help="Fold BatchNorm into the preceding conv before export.")
@click.option("--reparameterize/--no-reparameterize", default=True, show_default=True,
              help="Apply the deploy-time conversions blocks offer (reparameterize(), switch_to_deploy(), fuse(): "
                   "RepVGG, MobileOne branches become one conv).")
@click.option("--exporter", type=click.Choice(["auto", "torchscript", "dynamo"]), default="auto", show_default=True,
              help="auto: TorchScript, and the dynamo exporter where TorchScript has no conversion for an operator "
                   "(the report's 'exporter' says which wrote the file).")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset.")
@click.option("--batch", type=int, default=None, help="Static batch size (default: dynamic batch axis).")
@click.option("--input-size", default=None, help="H, HxW or C,H,W (default: the model's own).")
@click.option("--num-classes", type=int, default=None, help="Classifier outputs (default: the model's own).")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="state_dict file: .pt/.pth (weights only) or .safetensors.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: exports/<model>/).")
@click.option("--simplify/--no-simplify", default=True, show_default=True, help="Simplify with onnxsim.")
@click.option("--atol", type=click.FloatRange(min=0), default=None,
              help="Max abs error allowed (default: 1e-4 x max |reference output|).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout, nothing else.")
def export_cmd(model, formats, tflite_layout, executorch_max_batch, aoti_max_batch, engine_max_batch, want_fp16,
               want_bf16, fp16_io, want_int8,
               calib, calib_count, int8_min_cosine, eval_source, eval_count, int8_max_drop, calib_method, keep_float,
               fold_bn, reparameterize, exporter, opset, batch, input_size, num_classes, weights, output_dir, simplify,
               atol, as_json):
    """Prepare MODEL (a registry name, timm:NAME or package.module:callable), export it and prove it matches PyTorch."""
    int8_needs = ("--int8", want_int8)
    refuse_unused_options({"tflite_layout": ("--tflite", "tflite" in formats),
                           "executorch_max_batch": ("--executorch", "executorch" in formats),
                           "aoti_max_batch": ("--aoti", "aoti" in formats),
                           "engine_max_batch": ("--tensorrt", any(FORMATS[f].needs_cuda for f in formats)),
                           "fp16_io": ("--fp16", want_fp16), "calib": int8_needs, "calib_count": int8_needs,
                           "int8_min_cosine": int8_needs, "eval_source": int8_needs, "eval_count": int8_needs,
                           "int8_max_drop": int8_needs, "calib_method": int8_needs, "keep_float": int8_needs})
    if batch is not None and not 1 <= batch <= 4096:
        raise UsageError(f"bad --batch {batch}: use 1..4096, or leave it out for a dynamic batch axis")
    if num_classes is not None and num_classes < 1:
        raise UsageError(f"bad --num-classes {num_classes}: must be at least 1")
    from rich.markup import escape

    name = model.rpartition(":")[2]  # a registry name, or the callable of package.module:callable
    with StageStatus(f"[bold]{escape(name)}[/]") as on_stage:
        on_stage("load")  # importing torch and building the model take seconds
        from ..exporter.pipeline import export
        from ..models import bundled_input_size, is_registered, load_model, model_info

        default_size = (3, 224, 224)
        if is_registered(model):
            default_size = bundled_input_size(model, weights) or model_info(model).input_size
        module = load_model(model, num_classes=num_classes, weights=weights)
        default_size = getattr(module, "cnnexport_input_size", None) or default_size  # timm's pretrained_cfg
        chw = parse_input_size(input_size, default_size[0]) if input_size else default_size
        report = export(module, (batch or 1, *chw), output_dir, name=name, fold_bn=fold_bn,
                        reparameterize=reparameterize, exporter=exporter,
                        opset=opset, dynamic_batch=batch is None, simplify=simplify, atol=atol, formats=formats,
                        tflite_layout=tflite_layout, executorch_max_batch=executorch_max_batch, fp16=want_fp16,
                        bf16=want_bf16,
                        fp16_io=fp16_io, engine_max_batch=engine_max_batch, aoti_max_batch=aoti_max_batch,
                        int8=want_int8,
                        calib=calib, calib_count=calib_count, int8_min_cosine=int8_min_cosine,
                        calib_method=calib_method, keep_float=_keep_float(keep_float), eval_source=eval_source,
                        eval_count=eval_count, int8_max_drop=int8_max_drop, on_stage=on_stage)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_export_summary(report)


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
        from ..exporter.profile_onnx import profile_onnx

        shape = None
        if input_size or batch != 1:
            from ..exporter.graph import check

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
        from ..exporter.profile_torch import profile_module
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
    from ..exporter.graph import check
    from ..exporter.profile_onnx import costs_graph
    from ..exporter.roofline_profile import roofline_profile
    from ..runtimes import runtime_for
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
        from ..roofline import memory_roofs_from

        # a given --bandwidth is the one roof; measured, each cache level gets its own
        roofs = () if bandwidth else memory_roofs_from(schedule.memory_roofs(threads, limits["bandwidth_gbs"]))
        result = roofline_profile(path, costs_path=graph, input_shape=shape, times=times, precision=precision,
                                  roofs=roofs, **limits)
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
    from ..exporter.profile_onnx import compare, profile_onnx
    from ..exporter.simplify import simplify

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        to_onnx(prepare(module), path, shape)
        simplify(path, path)
        return compare(prof, profile_onnx(path, shape))


def _int_list(text: str, option: str) -> list[int]:
    return parse_list(text, option, "give comma-separated integers 1..4096, e.g. 1,2", item=int,
                      valid=lambda v: 1 <= v <= 4096)


def _load_artifact(path: str, runtime: str | None, threads: int | None = None, batch: int | None = None):
    """``batch``: compile a dynamic batch axis static at it (ONNX Runtime, OpenVINO), as bench does."""
    from ..runtimes import FIXES_BATCH, load, runtime_for

    runtime = runtime or runtime_for(path)
    options = {"threads": threads} if threads else {}
    if batch and runtime in FIXES_BATCH:
        options["batch"] = batch
    return load(path, runtime, **options)


@cli.command("verify")
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--reference", "reference", type=click.Path(dir_okay=False), required=True,
              help="reference.npz written by the export (inputs and PyTorch's outputs).")
@click.option("--runtime", default=None,
              help=f"{', '.join(f.runtime for f in FORMATS.values())} (default: by extension).")
@click.option("--atol", type=click.FloatRange(min=0), default=None,
              help="Max abs error allowed (default: 1e-4 x max |reference|).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout, nothing else.")
def verify_cmd(artifact, reference, runtime, atol, as_json):
    """Check ARTIFACT against the reference outputs saved at export time. Needs no torch."""
    from ..runtimes import run_nchw
    from ..exporter.verify import REDUCED_RULES, TIE_MARGIN, compare, load_reference, reduced_verdict

    if not Path(reference).is_file():
        raise UsageError(f"reference file '{reference}' does not exist (the export writes reference.npz)")
    try:
        inputs, refs, meta = load_reference(reference)
    except Exception as exc:
        raise UsageError(f"'{reference}' is not a cnnexport reference.npz ({type(exc).__name__})") from None
    model = _load_artifact(artifact, runtime)
    from ..runtimes.base import dims_text

    made_for = _reference_made_for(meta)
    chw = model.inputs[0].chw
    ref_chw = list(inputs[0].batches[0].shape[1:]) if inputs else []
    if len(chw) != len(ref_chw) or any(d is not None and d != r for d, r in zip(chw, ref_chw)):
        raise UsageError(f"'{reference}' holds {'x'.join(map(str, ref_chw))} inputs{made_for} but "
                         f"'{Path(artifact).name}' takes {dims_text(chw)}: "
                         "pass the reference.npz written beside this file")
    precision = precision_of(artifact)  # fp16, bf16 and int8 files: checked by their own rule, as the export did

    def check(loaded) -> dict:
        if precision == "int8":
            return _verify_int8(artifact, reference, loaded, atol)
        rule = REDUCED_RULES.get(precision)
        checked = compare(Path(artifact).name, refs, lambda b: run_nchw(loaded, b), inputs, atol=atol,
                          rtol=rule.rtol if rule else meta.get("rtol", 1e-4), floor=meta.get("rounding_floor"),
                          tie_margin=rule.tie_margin if rule else TIE_MARGIN)
        return reduced_verdict(checked, precision) if rule else checked.as_dict()
    eq = check(model)
    eq["runtime"] = model.describe()
    eq["runtime_default"] = _runtime_default_check(model, check)
    if as_json:
        click.echo(json.dumps(eq, indent=2))
    else:
        print_verify(eq)
    if not eq["passed"]:
        name = Path(artifact).name
        other = meta.get("model") and name.split(".")[0] != meta["model"] and name not in meta.get("files", [name])
        if "failure" in eq:
            why = eq["failure"]
        elif precision == "int8":
            why = (f"{eq['artifact']} does not match the reference: int8 mean cosine {eq['cosine_mean']:.4f} "
                   f"misses {eq['tolerance']}")
        else:
            why = (f"{eq['artifact']} does not match the reference: max abs error {eq['max_abs']:.3g} > "
                   f"tolerance {eq['tolerance']:.3g}, cosine {eq['cosine']:.3f}")
        raise VerificationError(why
                                + (f"; the reference was made{made_for}, not for '{name}': pass the reference.npz "
                                   "written beside this file" if other else ""))


def _runtime_default_check(model, check) -> dict | None:
    """Where the runtime's own default on this CPU computes at another precision than the one verified
    (OpenVINO: bf16 on AMX/AVX512-BF16 CPUs), the same ``check`` on the file loaded with the defaults:
    what a user who follows the runtime's documentation gets. Reported, not enforced."""
    default = model.runtime_default()
    if default is None:
        return None
    eq = check(default.load())
    figures = {k: eq[k] for k in ("max_rel", "cosine", "cosine_mean", "top1_agreement", "passed") if k in eq}
    return {"precision": default.precision, "verified_at": default.verified, "how": default.how, **figures}


def _verify_int8(artifact: str, reference: str, model, atol: float | None) -> dict:
    """An int8 file by the export's int8 rule, on the held-out samples the export recorded."""
    from ..exporter.int8 import int8_verdict
    from ..exporter.verify import load_int8_reference
    from ..runtimes import run_nchw

    if atol is not None:
        raise UsageError("--atol does not apply to an int8 file: it is checked by the mean cosine and top-1 drop "
                         "its export recorded")
    held = load_int8_reference(reference)
    if held is None:
        raise UsageError(f"'{reference}' holds no int8 check data (its export wrote no int8 file): pass the "
                         f"reference.npz that `cnnexport export --int8` wrote beside '{Path(artifact).name}'")
    return int8_verdict(Path(artifact).name, held.outputs, [run_nchw(model, b) for b in held.batches], held.batches,
                        held.min_cosine, held.labels, held.max_drop)


def _reference_made_for(meta: dict) -> str:
    """' for model 'lenet5' (lenet5.onnx, ...)' from a reference.npz's metadata, or ''."""
    if not meta.get("model"):
        return ""
    files = meta.get("files") or []
    return f" for model '{meta['model']}'" + (f" ({', '.join(files[:4])})" if files else "")


@cli.command("bench")
@click.argument("targets", nargs=-1, required=True)
@click.option("--runtime", default=None,
              help=f"Runtimes: {_RUNTIMES} (default: a file's own; for a model: ort,torch).")
@click.option("--precision", default="fp32", show_default=True,
              help="fp32, fp16, bf16 or int8, comma-separated (fp32,fp16,int8), for a model name; a file has its "
                   "own.")
@click.option("--batch", default="1", show_default=True, help="Batch sizes, e.g. 1,8.")
@click.option("--threads", default="1", show_default=True, help="Thread counts, e.g. 1,2.")
@click.option("--input-size", default=None,
              help="H, HxW or C,H,W: a model name's export size, or the size a file leaves dynamic.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--baseline", default=None, help="Runtime the speed-up column divides by (default: torch if measured).")
@click.option("--rounds", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Rounds, interleaved across configurations.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True, help="Minimum timed runs per round.")
@click.option("--min-time", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Minimum seconds of timed runs.")
@click.option("--max-time", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop a slow configuration after this many seconds "
              "(once it has 10 runs).")
@click.option("--no-ceiling", is_flag=True, help="Skip measuring the machine's limits (compute ceilings, memory "
              "bandwidth); the roofline columns stay empty.")
@click.option("--pick", is_flag=True, help="Name the fastest artifact per precision, with the evidence.")
@click.option("--plain", is_flag=True, help="For a model name: also export it with each runtime's own converter "
              "(torch.onnx.export, ov.convert_model, litert_torch.convert, ...) and measure those files in the same "
              "rounds, ours against plain by the paired test.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default=None,
              help="For a model name: where the exported files go (default: a temporary folder).")
@click.option("--save", type=click.Path(dir_okay=False), default=None, help="Also write the JSON rows to this file.")
@click.option("--wide", is_flag=True, help="Show every column (p90, p99, min, MACs, GMAC/s, %% of the compute "
              "ceiling, roofline ms); the default set fits 100 columns.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON rows on stdout, nothing else.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV rows on stdout.")
def bench_cmd(targets, runtime, precision, batch, threads, input_size, device, baseline, rounds, warmup, runs,
              min_time, max_time, no_ceiling, pick, plain, output_dir, save, wide, as_json, as_csv):
    """Latency of a zoo MODEL (exported first) or of exported files, across runtimes, precisions, batches
    and threads. Each measurement runs in its own process; rounds are interleaved. Files need no torch."""
    import tempfile

    from ..bench import plan, rows, schedule
    from ..bench.schedule import check_device

    schedule.refuse_emulation()  # before any export
    batches, thread_counts = _int_list(batch, "--batch"), _int_list(threads, "--threads")
    precisions = plan.parse_precisions(precision)
    runtimes = plan.parse_runtimes(runtime) if runtime is not None else None
    check_device(device)
    is_model = len(targets) == 1 and not Path(targets[0]).exists() and Path(targets[0]).suffix == ""
    if plain and not is_model:
        raise UsageError("--plain exports a model name with each runtime's own converter; give a zoo model name, "
                         "not files")
    size = None
    if input_size:
        channels = None
        if is_model:
            from ..models import is_registered, model_info

            channels = model_info(targets[0]).input_size[0] if is_registered(targets[0]) else 3
        size = parse_input_size(input_size, channels)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cnnexport-bench-") as tmp:
        if is_model:
            runtimes = runtimes or ["onnxruntime", "torch"]
            out = Path(output_dir) if output_dir else Path(tmp)
            with StageStatus(f"exporting {targets[0]}") as on_stage:
                jobs, notes, _ = plan.model_jobs(targets[0], runtimes, precisions, batches, thread_counts, device,
                                                 out, export=_export_fn(), macs_of=_macs_of, on_stage=on_stage,
                                                 input_size=size, costs_of_file=_costs_of_file(),
                                                 plain_export=_plain_export() if plain else None)
        else:
            from ..exporter.profile_onnx import file_costs

            jobs = plan.artifact_jobs(list(targets), runtimes or [], batches, thread_counts, device, input_size=size,
                                      costs_of_file=file_costs)
        if not jobs:
            raise UsageError("nothing to measure: check --runtime and --precision")
        timing = {"warmup": warmup, "min_runs": runs, "min_time_s": min_time, "max_time_s": max_time}
        baseline = plan.parse_runtimes(baseline)[0] if baseline else ("torch" if any(j.runtime == "torch" for j in jobs)
                                                                     else None)
        with ProgressBar(as_json or as_csv) as (_, on_progress):
            measured = schedule.measure(jobs, rounds=rounds, timing=timing, threads=thread_counts, device=device,
                                        ceiling=not no_ceiling, baseline=baseline, on_progress=on_progress)
    schedule.raise_if_all_failed(jobs)
    from ..runtimes import default_precision_notes, not_yet_run_notes

    notes = notes + default_precision_notes({r["runtime"] for r in measured["rows"] if r["device"] == "cpu"})
    notes += not_yet_run_notes({r["runtime"] for r in measured["rows"]}, device)
    result = {"rows": measured["rows"], "ceilings_gflops": measured["ceilings_gflops"],
              "ceilings_by_precision": measured.get("ceilings_by_precision", {}),
              "memory_roofs": measured.get("memory_roofs", {}),
              "bandwidths_gbs": measured["bandwidths_gbs"], "limits": measured["limits"],
              "notes": notes + measured["failures"], "warnings": measured["limits_warnings"]}
    if pick:
        result["pick"] = rows.pick(result["rows"])
    if plain:
        result["plain"] = rows.against_plain(result["rows"])
    if save:
        _save(save, result)
    print_bench(result, as_json, as_csv, wide)
    schedule.raise_if_any_failed(jobs)


def _save(path: str, result: dict) -> None:
    """``--save``: the JSON result, written atomically."""
    from .._atomic import write_json

    try:
        write_json(Path(path), result)
    except OSError as exc:
        raise OutputError(f"cannot write '{path}': {exc.strerror or exc}; choose a writable path") from None


def _export_fn():
    """The export pipeline, which the CLI hands to bench and the study (they never import it)."""
    from ..exporter.pipeline import export

    return export


def _plain_export():
    """Each runtime's own converter on the module (``bench --plain``)."""
    from ..exporter.plain import plain_export

    return plain_export


def _costs_of_file():
    """The ONNX profiler's per-layer costs of a file (the roofline's input), handed to bench and the study."""
    from ..exporter.profile_onnx import file_costs

    return file_costs


def _costs_of_module(module, shape):
    """The PyTorch profiler's per-layer costs of a module (the roofline's input when no ONNX file exists)."""
    from ..exporter.profile_torch import profile_module
    from ..roofline import ModelCosts

    return ModelCosts.from_profile(profile_module(module, shape))


def _macs_of(module, shape) -> float:
    from ..exporter.profile_torch import profile_module

    return profile_module(module, shape).macs


@cli.command("quantize")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--calib", "calib", required=True,
              help="Calibration data: 'samples' (bundled photos), 'digits', an image folder, or a .npy/.npz file.")
@click.option("--eval", "eval_source", default=None,
              help="Evaluation data (default: the digits test split for 'digits', else held-out part of --calib). "
                   "Labelled (a folder with class subfolders, digits, .npz with x, y): top-1 fp32 -> int8.")
@click.option("--eval-count", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Images drawn from --eval.")
@click.option("--int8-max-drop", type=click.FloatRange(0, 100), default=None, metavar="POINTS",
              help="Refuse (write nothing) when top-1 falls more than POINTS below the fp32 file on labelled data.")
@click.option("--calib-count", type=click.IntRange(min=2), default=200, show_default=True,
              help="Samples drawn from --calib.")
@click.option("--runtime", type=click.Choice([f.runtime for f in file_int8_formats()]), default=None,
              help="; ".join(f.int8_help for f in file_int8_formats()) + " (default: by the input's extension).")
@click.option("--calib-method", type=click.Choice(CALIB_METHODS), default="minmax", show_default=True)
@click.option("--keep-float", default="", metavar="LIST",
              help="ONNX Runtime: nodes left in float: first, last, node-name globs ('/layer1/*'), or auto "
                   "(the fewest modules that reach --min-cosine on the calibration samples).")
@click.option("--min-cosine", type=click.FloatRange(-1, 1), default=0.99, show_default=True,
              help="Target of --keep-float auto: mean logits cosine with the float model.")
@click.option("--per-channel/--per-tensor", default=True, show_default=True)
@click.option("--reduce-range", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="7-bit weights; auto: on for x86 CPUs without VNNI.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Default: <model>.int8.onnx beside the input.")
@click.option("--per-layer", is_flag=True, help="ONNX Runtime: per-layer SQNR, worst layers first.")
@click.option("--force", is_flag=True, help="Replace an existing output file (the export's own int8 file, say).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout, nothing else.")
def quantize_cmd(model, calib, eval_source, eval_count, int8_max_drop, calib_count, runtime, calib_method, keep_float,
                 min_cosine, per_channel, reduce_range, output, per_layer, force, as_json):
    """Static int8 with calibration data; accuracy measured on data calibration never saw."""
    from ..exporter.formats import Int8Options
    from ..exporter.int8 import describe, quantize_file

    refuse_unused_options({"min_cosine": ("--keep-float auto", "auto" in _keep_float(keep_float))})
    options = Int8Options(method=calib_method, per_channel=per_channel, keep_float=_keep_float(keep_float),
                          min_cosine=min_cosine, reduce_range=None if reduce_range == "auto" else reduce_range == "on",
                          max_drop=int8_max_drop)
    result = quantize_file(model, calib, runtime=runtime, output=output, eval_source=eval_source,
                           calib_count=calib_count, options=options, per_layer=per_layer, eval_count=eval_count,
                           overwrite=force)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_quantize(result, describe(result["quantization"]))


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    k, _, n = text.partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        k = n = 0
    if not 1 <= k <= n <= 4096:
        raise UsageError(f"bad --shard '{text}': give K/N with 1 <= K <= N, e.g. 1/4 for the first of four parts")
    return k, n


def _floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if not text:
        return None
    return tuple(parse_list(text, option, "give comma-separated numbers, e.g. 0.485,0.456,0.406", item=float))


@cli.command("eval")
@click.argument("artifacts", nargs=-1)
@click.option("--data", "data", default=None,
              help="Labelled data: a folder with one subfolder per class, digits (its test split), or .npz with x, y.")
@click.option("--classes", "classes_file", type=click.Path(dir_okay=False), default=None,
              help="Class names in the model's output order, one per line (default: the folders sorted by name).")
@click.option("--model", "model_spec", default=None,
              help="The PyTorch model, for its accuracy and each file's agreement with it: a zoo name or "
                   "package.module:callable (needs torch).")
@click.option("--weights", default=None, help="Weights of --model: a state_dict file, or a shipped tag (digits).")
@click.option("--num-classes", type=int, default=None, help="Classifier outputs of --model.")
@click.option("--reference", type=click.Path(dir_okay=False), default=None,
              help="reference.npz written by the export: the model's input size and preprocessing (default: the "
                   "one beside the first file, when it was written for it).")
@click.option("--limit", type=int, default=None, help="Evaluate the first N images of the data's fixed shuffled order.")
@click.option("--batch", type=int, default=32, show_default=True, help="Images per run of each model.")
@click.option("--shard", default=None, metavar="K/N", help="Evaluate part K of N (merge the JSON results with --merge).")
@click.option("--workers", type=int, default=None,
              help="Threads decoding images (default: the cores --threads leaves free, else half the cores; 1..8).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads of each runtime (default: the cores the decoding workers leave, at least 1).")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Keep an image folder's decoded, resized crops here; later runs on the same folder (other "
                   "files, shards) skip decoding.")
@click.option("--input-size", default=None, help="H, HxW or C,H,W when neither the files nor --model fix it.")
@click.option("--mean", default=None, help="Per-channel mean of the preprocessing (default: the model's, else ImageNet's).")
@click.option("--std", default=None, help="Per-channel std of the preprocessing (default: the model's, else ImageNet's).")
@click.option("--crop-fraction", type=float, default=None,
              help="Centre crop as a fraction of the resized image (default: the model's, else 0.875; 1: no crop).")
@click.option("--merge", "merge_files", is_flag=True, help="ARTIFACTS are JSON results of --shard runs: merge them.")
@click.option("--save", type=click.Path(dir_okay=False), default=None, help="Also write the JSON result to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result on stdout, nothing else.")
def eval_cmd(artifacts, data, classes_file, model_spec, weights, num_classes, reference, limit, batch, shard, workers,
             threads, cache_dir, input_size, mean, std, crop_fraction, merge_files, save, as_json):
    """Top-1 and top-5 accuracy of model files on labelled images, beside PyTorch's with --model.
    Files alone need no torch."""
    from ..exporter import evaluate as ev

    if merge_files:
        result = ev.merge([_read_json(a) for a in artifacts])
        if save:
            _save(save, result)
        print_eval(result, as_json)
        return
    if not data:
        raise UsageError("--data is required: a folder with one subfolder per class, digits, or a .npz with x and y")
    if not artifacts and not model_spec:
        raise UsageError("nothing to evaluate: give model files, --model NAME, or both")
    if batch < 1 or batch > 4096 or (limit is not None and limit < 1) or (workers is not None and workers < 1) or \
            (threads is not None and threads < 1) or (crop_fraction is not None and not 0 < crop_fraction <= 1):
        raise UsageError("--batch must be 1..4096, --limit, --workers and --threads >= 1, --crop-fraction in (0, 1]")
    shard_kn = _parse_shard(shard)
    threads_chosen = threads is None
    workers, threads = eval_threads(workers, threads)
    models, describe = {}, {}
    for path in artifacts:
        name = Path(path).name
        if name in models:
            raise UsageError(f"'{name}' is given twice")
        # Static at --batch, the last batch padded (run_model): what bench measures at that batch.
        m = _load_artifact(path, None, threads, batch)
        models[name] = m
        describe[name] = {"path": str(path), "runtime": m.runtime, "precision": precision_of(path)}
    meta = _eval_reference(reference, artifacts)
    pre_fields = dict(meta.get("preprocess") or {})
    chw = _eval_input_size(models, meta, input_size)
    if model_spec:
        module, model_pre, model_chw = _eval_torch_model(model_spec, weights, num_classes)
        chw = chw or model_chw
        pre_fields.update(model_pre)
    if chw is None:
        raise UsageError("the input size is unknown (the files leave it dynamic): give --input-size, --model, "
                         "or --reference with the export's reference.npz")
    if model_spec:
        from ..runtimes.torch_eager import TorchModel

        models = {"pytorch": TorchModel(module, (1, *chw), threads=threads), **models}
        describe["pytorch"] = {"runtime": "torch", "precision": "fp32", "path": model_spec}
    from ..calib import Preprocess
    from ..calib.labelled import load_labelled
    from ..calib.pixel_cache import PixelCache

    cache = PixelCache(cache_dir) if cache_dir else None
    source = load_labelled(data, classes_file, size=tuple(chw[1:]), channels=chw[0], cache=cache)
    source.check_channels(chw[0])
    pre = Preprocess(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in pre_fields.items()
                        if k in ("crop_fraction", "mean", "std")}).at(chw[1:], chw[0])
    if source.preprocess is not None:  # the data's own (the digits')
        pre = source.preprocess
    overrides = {k: v for k, v in (("mean", _floats(mean, "--mean")), ("std", _floats(std, "--std")),
                                   ("crop_fraction", crop_fraction)) if v is not None}
    if overrides:
        import dataclasses

        pre = dataclasses.replace(pre, **overrides)
    source = source.select(limit, shard_kn)
    for name, m in models.items():
        describe[name]["describe"] = m.describe()
    with EvalProgress(as_json, len(source)) as on_progress:
        evaluation = ev.evaluate(models, source, pre, batch=batch, workers=workers,
                                 reference="pytorch" if model_spec else None, on_progress=on_progress)
    result = ev.report(evaluation, source, pre, batch=batch, reference="pytorch" if model_spec else None,
                       describe=describe, shard=shard_kn, limit=limit, workers=workers, cache=cache)
    result["threads"] = {"per_runtime": threads, "decoding_workers": workers, "cores": os.cpu_count(),
                         "chosen": threads_chosen}
    from ..machine import EMULATED_ENV

    result["emulated"] = os.environ.get(EMULATED_ENV) or None  # images/s are then the emulator's
    if save:
        _save(save, result)
    print_eval(result, as_json)
    if evaluation.partial:
        _fail(*interrupted(first_signal() or signal.SIGINT))


def eval_threads(workers: int | None, threads: int | None) -> tuple[int, int]:
    """Decoding workers and runtime threads that share the cores. Workers: the cores ``threads`` leaves
    free, else half the cores (1..8; on 2 cores a second decoder competing with 2 runtime threads is
    slower than one). Threads: the cores the workers leave, at least 1 (a runtime's own default takes
    every core: PyTorch ran the digits LeNet-5 at 112 images/s so, at 3,144 with one thread)."""
    cores = os.cpu_count() or 1
    workers = workers or max(1, min(8, cores - threads if threads else cores // 2))
    return workers, threads or max(1, cores - workers)


def _read_json(path: str) -> dict:
    try:
        result = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"'{path}' does not exist; give the JSON files that cnnexport eval --save wrote") from None
    except (OSError, ValueError):
        result = None
    if not isinstance(result, dict) or not {"models", "data"} <= set(result):
        raise UsageError(f"'{path}' is not a cnnexport eval JSON result (cnnexport eval --save writes one)")
    return result


def _eval_reference(reference: str | None, artifacts) -> dict:
    """The metadata of ``--reference``, or of the reference.npz beside the first file when it lists it."""
    from ..exporter.verify import load_reference

    path = Path(reference) if reference else (Path(artifacts[0]).with_name("reference.npz") if artifacts else None)
    if path is None or not path.is_file():
        if reference:
            raise UsageError(f"reference file '{reference}' does not exist (the export writes reference.npz)")
        return {}
    try:
        meta = load_reference(path)[2]
    except Exception as exc:
        raise UsageError(f"'{path}' is not a cnnexport reference.npz ({type(exc).__name__})") from None
    if not reference and Path(artifacts[0]).name not in meta.get("files", []):
        return {}
    return meta


def _eval_input_size(models: dict, meta: dict, input_size: str | None) -> tuple[int, int, int] | None:
    """C, H, W: --input-size, else the files' own (all alike), else the reference's."""
    sizes = {tuple(m.inputs[0].chw) for m in models.values()}
    if len(sizes) > 1:
        from ..runtimes.base import dims_text

        raise UsageError(f"the files take different inputs ({', '.join(dims_text(s) for s in sorted(sizes, key=str))}): "
                         "evaluate files of one model together")
    fixed = next(iter(sizes)) if sizes else None
    if input_size:
        chw = parse_input_size(input_size, fixed[0] if fixed and fixed[0] else 3)
        return (chw[0] or 3, chw[1], chw[2])
    if fixed and len(fixed) == 3 and all(fixed):
        return tuple(int(d) for d in fixed)
    pre = meta.get("preprocess")
    if pre:
        return (int(pre["channels"]), *map(int, pre["size"]))
    return None


def _eval_torch_model(spec: str, weights: str | None, num_classes: int | None):
    """The PyTorch model of --model, its preprocessing fields and its input size."""
    from ..models import bundled_input_size, is_registered, load_model, model_info

    module = load_model(spec, num_classes=num_classes, weights=weights)
    chw = None
    if is_registered(spec):
        chw = tuple(bundled_input_size(spec, weights) or model_info(spec).input_size)
    return module, dict(getattr(module, "cnnexport_preprocess", {})), chw


@cli.command("fold")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Folded file (default: <model>.folded.onnx beside the input).")
@click.option("--atol", type=float, default=None, help="Max abs error allowed (default: 1e-4 x max |output|).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout, nothing else.")
def fold_cmd(model, output, atol, as_json):
    """Fold BatchNormalization into Conv/ConvTranspose/Gemm and drop Dropout/Identity in an ONNX file."""
    from ..exporter.onnx_fold_file import fold_file

    src = Path(model)
    dst = Path(output) if output else src.with_name(src.stem + ".folded.onnx")
    if dst.resolve() == src.resolve():
        raise UsageError("-o/--output must differ from the input file")
    result = fold_file(src, dst, atol=atol).as_dict()
    result["output"] = str(dst)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_fold(result, src.name, dst.name)


@cli.group("study")
def study_group() -> None:
    """The FLOPs-vs-speed study: ShuffleNetV2's guidelines G1-G4, and the zoo's latency against MACs."""


def _study_common(fn):
    options = [
        click.option("--runtime", default="ort", show_default=True, help=f"Runtimes: {_RUNTIMES}."),
        click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True),
        click.option("--rounds", type=click.IntRange(1, 100), default=3, show_default=True,
                     help="Rounds, interleaved across runtimes."),
        click.option("--runs", type=click.IntRange(min=1), default=30, show_default=True,
                     help="Minimum timed runs per round."),
        click.option("--min-time", type=click.FloatRange(min=0), default=0.5, show_default=True),
        click.option("--max-time", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True,
                     help="Stop a slow configuration after this many seconds (once it has 10 runs)."),
        click.option("-o", "--output-dir", type=click.Path(file_okay=False), default=None,
                     help="Where the exported networks go (default: a temporary folder)."),
        click.option("--save", type=click.Path(dir_okay=False), default=None, help="Write the results as JSON here."),
        click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout, nothing else."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _check_study_args(threads, rounds, runs, min_time, max_time, device):
    from ..bench.schedule import check_device

    if not 1 <= threads <= 4096 or not 1 <= rounds <= 100 or runs < 1 or min_time < 0 or max_time <= 0:
        raise UsageError("--threads must be 1..4096, --rounds 1..100, --runs >= 1, --min-time >= 0, --max-time > 0")
    check_device(device)
    return {"warmup": 5, "min_runs": runs, "min_time_s": min_time, "max_time_s": max_time}


def _run_study(fn, output_dir, save, as_json, **kwargs) -> dict:
    """Run a study with its exports in a temporary folder, or staged in ``output_dir`` (each network's
    folder moved there once the whole study has run: an interrupted study leaves nothing)."""
    import tempfile

    from .._atomic import StagingDir
    from ..bench.schedule import refuse_emulation

    refuse_emulation()

    with tempfile.TemporaryDirectory(prefix="cnnexport-study-") as tmp, \
            ProgressBar(as_json, "exporting") as (on_stage, on_progress):
        staging = StagingDir(output_dir) if output_dir else None
        out = staging.path if staging else Path(tmp)
        try:
            result = fn(out_dir=out, on_stage=on_stage, on_progress=on_progress, **kwargs)
            if staging:
                staging.commit()
                result = json.loads(json.dumps(result).replace(json.dumps(str(out))[1:-1],
                                                               json.dumps(str(output_dir))[1:-1]))
        finally:
            if staging:
                staging.discard()  # after a commit: the emptied staging folder only
    if not result["rows"]:
        raise ExportError("nothing could be measured: " + (result["failures"][0] if result["failures"] else "no rows"))
    if save:
        _save(save, result)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    return result


@study_group.command("guidelines")
@click.option("--guidelines", "which", default="G1,G2,G3,G4", show_default=True)
@click.option("--widths", default="1,2,4", show_default=True, help="Channel width multipliers of the paper's tables.")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch size (the paper: 8 on GPU, 1 on ARM).")
@click.option("--align", default="8,16", show_default=True,
              help="Repeat G1 and G2 with channels rounded to these multiples (the alignment factor); 'none' skips.")
@_study_common
def study_guidelines_cmd(which, widths, batch, align, runtime, threads, device, rounds, runs, min_time, max_time,
                         output_dir, save, as_json):
    """G1-G4 on the paper's micro-networks (56x56, 10 blocks, the paper's channel settings), per runtime."""
    from ..bench.plan import parse_runtimes
    from ..study.run import parse_aligns, parse_guidelines, parse_widths, study_guidelines

    runtimes, selected, width_list = parse_runtimes(runtime), parse_guidelines(which), parse_widths(widths)
    aligns = parse_aligns(align)
    if not 1 <= batch <= 4096:
        raise UsageError(f"bad --batch {batch}: use 1..4096")
    timing = _check_study_args(threads, rounds, runs, min_time, max_time, device)
    result = _run_study(study_guidelines, output_dir, save, as_json, export=_export_fn(), runtimes=runtimes,
                        guidelines=selected, widths=width_list, batch=batch, threads=threads, device=device,
                        rounds=rounds, timing=timing, aligns=aligns, costs_of_file=_costs_of_file(),
                        costs_of_module=_costs_of_module)
    if not as_json:
        print_guidelines(result)


@study_group.command("zoo")
@click.option("--models", default="*", show_default=True, help="Registry wildcard(s), comma-separated.")
@click.option("--batch", default="1", show_default=True, help="Batch sizes, e.g. 1,8.")
@click.option("--plot", type=click.Path(dir_okay=False), default="latency_vs_macs.png", show_default=True,
              help="Where the log-log plot of latency against MACs goes.")
@click.option("--no-plain", is_flag=True, help="Skip measuring each runtime's own plain export beside cnnexport's "
              "files.")
@_study_common
def study_zoo_cmd(models, batch, plot, no_plain, runtime, threads, device, rounds, runs, min_time, max_time, output_dir,
                  save, as_json):
    """Every zoo model on every runtime: latency against MACs (Spearman, log-log plot, GMAC/s, Table 8)."""
    from ..bench.plan import parse_runtimes
    from ..models import list_models
    from ..study.run import study_zoo

    names = sorted({n for pattern in models.split(",") if pattern.strip() for n in list_models(pattern.strip())})
    if not names:
        raise UsageError(f"no model matches '{models}' (see cnnexport list)")
    if plot:  # before the measurements, not after
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            from ..errors import MissingDependencyError

            raise MissingDependencyError("the latency plot needs matplotlib: pip install 'cnnexport[study]'") from None
    runtimes, batches = parse_runtimes(runtime), _int_list(batch, "--batch")
    timing = _check_study_args(threads, rounds, runs, min_time, max_time, device)
    result = _run_study(study_zoo, output_dir, save, as_json, export=_export_fn(), macs_of=_macs_of, models=names,
                        runtimes=runtimes, batches=batches, threads=threads, device=device, rounds=rounds,
                        timing=timing, plot=plot, plain=not no_plain, costs_of_file=_costs_of_file(),
                        costs_of_module=_costs_of_module,
                        plain_export=None if no_plain else _plain_export())
    if not as_json:
        print_zoo(result)


@cli.command("report")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default="report", show_default=True,
              help="Where REPORT.md and its plots go.")
@click.option("--no-plots", is_flag=True, help="Markdown tables only (no matplotlib needed).")
@click.option("--json", "as_json", is_flag=True, help="Print the merged tables as JSON on stdout.")
def report_cmd(files, output_dir, no_plots, as_json):
    """Merge rows from several machines (bench --save, study --save JSON files) into one Markdown report with
    plots: G1-G4 verdicts per machine and runtime, Spearman of latency against MACs, memory access and the
    roofline bound. Incomplete rows and rows of another protocol version are named and skipped."""
    from ..study.report import merge_rows, write_report

    if not no_plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            from ..errors import MissingDependencyError

            raise MissingDependencyError("the report's plots need matplotlib: pip install 'cnnexport[study]', or "
                                         "pass --no-plots") from None
    merged = merge_rows(list(files))
    if not merged.machines:
        raise UsageError("no usable rows in " + ", ".join(Path(f).name for f in files) + ": "
                         + ("; ".join(merged.skipped[:3]) or "nothing to report"))
    try:
        result = write_report(merged, output_dir, plots=not no_plots)
    except OSError as exc:
        raise OutputError(f"cannot write the report to '{output_dir}': {exc.strerror or exc}; choose a writable "
                          "folder with -o") from None
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    console = out_console()
    console.print(f"{result['report']}: {len(result['machines'])} machine(s) ({', '.join(result['machines'])}), "
                  f"{len(result['verdicts'])} guideline verdicts, {len(result['spearman'])} Spearman rows"
                  + (f", plots {', '.join(result['plots'])}" if result["plots"] else ""))
    for line in result["skipped"]:
        console.print(f"[yellow]skipped:[/] {line}")


@cli.command("list")
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def list_cmd(pattern, as_json):
    """List registered models (PATTERN is a wildcard, e.g. 'resnet*')."""
    from ..catalog import entries

    infos = entries(pattern)  # the registry's metadata as data: no torch, no model built
    if not infos:
        raise UsageError(f"no model matches '{pattern}': run 'cnnexport list' to see them all")
    if as_json:
        keys = ("name", "family", "input_size", "num_classes", "params", "macs", "source", "paper", "arxiv",
                "torchvision_compatible")
        click.echo(json.dumps([{k: getattr(i, k) for k in keys} for i in infos], indent=2))
    else:
        print_models(infos)


def main() -> None:
    """Console-script entry point."""
    install()
    cli.main(prog_name="cnnexport")


if __name__ == "__main__":
    main()

"""``cnnexport export MODEL`` (and ``cnnexport MODEL``): prepare, export, convert, verify."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import UsageError
from .render import StageStatus, print_export_summary
from .app import cli
from .options import (BF16_HELP, CALIB_METHODS, FP16_HELP, INT8_HELP, format_flags, format_options, keep_float_list,
                      parse_input_size, refuse_exported_file, refuse_unused_format_options, refuse_unused_options,
                      trust_pickle_option)


@cli.command("export")
@click.argument("model")
@format_flags
@format_options
@click.option("--fp16", "want_fp16", is_flag=True, help=FP16_HELP)
@click.option("--bf16", "want_bf16", is_flag=True, help=BF16_HELP)
@click.option("--int8", "want_int8", is_flag=True, help=INT8_HELP)
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
              help="ONNX Runtime int8: nodes left in float: first, last, depthwise, node-name globs ('/layer1/*'), or auto "
                   "(the fewest modules that reach --int8-min-cosine on the calibration samples).")
@click.option("--fold-bn/--no-fold-bn", default=True, show_default=True,
              help="Fold BatchNorm into the preceding conv before export.")
@click.option("--reparameterize/--no-reparameterize", default=True, show_default=True,
              help="Apply the deploy-time conversions blocks offer (reparameterize(), switch_to_deploy(), fuse(): "
                   "RepVGG, MobileOne branches become one conv).")
@click.option("--exporter", type=click.Choice(["auto", "torchscript", "dynamo"]), default="auto", show_default=True,
              help="auto: TorchScript, and the dynamo exporter where TorchScript fails (an operator it has no "
                   "conversion for; the report's 'exporter' says which wrote the file).")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset.")
@click.option("--batch", type=int, default=None, help="Static batch size (default: dynamic batch axis).")
@click.option("--input-size", default=None, help="H, HxW or C,H,W (default: the model's own).")
@click.option("--num-classes", type=int, default=None, help="Classifier outputs (default: the model's own).")
@click.option("--weights", type=click.Path(), default=None,
              help="state_dict file: .pt/.pth (weights only) or .safetensors, or a folder holding one (a Hugging "
                   "Face Hub snapshot: its model.safetensors).")
@click.option("--use-ema", is_flag=True, help="The checkpoint's EMA weights (timm's state_dict_ema, model_ema).")
@trust_pickle_option
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: exports/<model>/).")
@click.option("--simplify/--no-simplify", default=True, show_default=True, help="Simplify with onnxsim.")
@click.option("--atol", type=click.FloatRange(min=0), default=None,
              help="Max abs error allowed (default: 1e-4 x max |reference output|).")
@click.option("--keep-going", is_flag=True, help="Write the files that convert and pass their check even when "
              "another format's do not; those left out are named (report.json's 'failed'), and the exit code is the "
              "first one's. The ONNX file is never left out: every other file starts from it.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout, nothing else.")
def export_cmd(model, formats, format_options, want_fp16, want_bf16, want_int8, calib, calib_count, int8_min_cosine, eval_source, eval_count, int8_max_drop, calib_method, keep_float,
               fold_bn, reparameterize, exporter, opset, batch, input_size, num_classes, weights, use_ema, trust_pickle,
               output_dir, simplify, atol, keep_going, as_json):
    """Prepare MODEL (a registry name, timm:NAME, package.module:callable or path/to/net.py:callable), export it
    and prove it matches PyTorch."""
    int8_needs = ("--int8", want_int8)
    refuse_unused_format_options(format_options, formats, {"fp16": want_fp16, "bf16": want_bf16, "int8": want_int8})
    refuse_unused_options({"calib": int8_needs, "calib_count": int8_needs,
                           "int8_min_cosine": int8_needs, "eval_source": int8_needs, "eval_count": int8_needs,
                           "int8_max_drop": int8_needs, "calib_method": int8_needs, "keep_float": int8_needs})
    if batch is not None and not 1 <= batch <= 4096:
        raise UsageError(f"bad --batch {batch}: use 1..4096, or leave it out for a dynamic batch axis")
    if num_classes is not None and num_classes < 1:
        raise UsageError(f"bad --num-classes {num_classes}: must be at least 1")
    from rich.markup import escape

    # a registry name, the callable of package.module:callable, or a TorchScript file's name without .pt
    name = Path(model).stem if Path(model).is_file() else model.rpartition(":")[2]
    with StageStatus(f"[bold]{escape(name)}[/]") as on_stage:
        on_stage("load")  # importing torch and building the model take seconds
        from ..exporter.pipeline import export
        from ..models import load_model, model_input_size

        refuse_exported_file(model)
        module = load_model(model, num_classes=num_classes, weights=weights, use_ema=use_ema, trust_pickle=trust_pickle)
        if Path(model).is_dir():  # a timm model folder: named after its architecture
            name = module.cnnexport_name
        default_size = model_input_size(model, module, weights)
        chw = parse_input_size(input_size, default_size[0]) if input_size else default_size
        report = export(module, (batch or 1, *chw), output_dir, name=name, fold_bn=fold_bn,
                        reparameterize=reparameterize, exporter=exporter,
                        opset=opset, dynamic_batch=batch is None, simplify=simplify, atol=atol, formats=formats,
                        fp16=want_fp16, bf16=want_bf16, int8=want_int8, **format_options,
                        calib=calib, calib_count=calib_count, int8_min_cosine=int8_min_cosine,
                        calib_method=calib_method, keep_float=keep_float_list(keep_float), eval_source=eval_source,
                        eval_count=eval_count, int8_max_drop=int8_max_drop, keep_going=keep_going,
                        on_stage=on_stage)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_export_summary(report)
    raise_if_left_out(report)


def raise_if_left_out(report: dict) -> None:
    """After the written files are shown: a file ``--keep-going`` left out makes the run fail as its own error
    class (an ExportError's exit code, a VerificationError's), so a script sees it."""
    from .. import errors

    failed = report.get("failed") or []
    if failed:
        first = failed[0]
        cls = getattr(errors, first["error_type"], errors.ExportError)
        raise cls(f"{len(failed)} file(s) left out (the others are written), first {first['file']}: {first['error']}")

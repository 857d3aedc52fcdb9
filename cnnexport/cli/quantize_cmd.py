"""``cnnexport quantize``: static int8 of a file with calibration data."""

from __future__ import annotations

import json

import click

from ..exporter.formats import file_int8_formats
from .render import print_quantize
from .app import cli
from .options import CALIB_METHODS, keep_float_list, refuse_unused_options


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
              help="ONNX Runtime: nodes left in float: first, last, depthwise, node-name globs ('/layer1/*'), or auto "
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

    refuse_unused_options({"min_cosine": ("--keep-float auto", "auto" in keep_float_list(keep_float))})
    options = Int8Options(method=calib_method, per_channel=per_channel, keep_float=keep_float_list(keep_float),
                          min_cosine=min_cosine, reduce_range=None if reduce_range == "auto" else reduce_range == "on",
                          max_drop=int8_max_drop)
    result = quantize_file(model, calib, runtime=runtime, output=output, eval_source=eval_source,
                           calib_count=calib_count, options=options, per_layer=per_layer, eval_count=eval_count,
                           overwrite=force)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_quantize(result, describe(result["quantization"]))

"""``cnnexport fold``: BatchNormalization folded into the convolutions of an ONNX file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import UsageError
from .render import print_fold
from .app import cli


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

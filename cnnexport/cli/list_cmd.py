"""``cnnexport list``: the registry."""

from __future__ import annotations

import json

import click

from ..errors import UsageError
from .render import print_models, print_timm_models
from .app import cli


@cli.command("list")
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def list_cmd(pattern, as_json):
    """List registered models (PATTERN is a wildcard, e.g. 'resnet*'); 'timm:PATTERN' lists timm's
    architectures (e.g. 'timm:*mobilenetv4*'), each usable as timm:NAME."""
    if pattern.startswith("timm:"):
        from ..models.timm_source import timm_catalog

        rows = timm_catalog(pattern[len("timm:"):] or "*")
        if not rows:
            raise UsageError(f"no timm architecture matches '{pattern}': timm's names are lower case, e.g. "
                             "'timm:*resnet*'")
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        else:
            print_timm_models(rows, pattern)
        return
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

"""``cnnexport list``: the registry."""

from __future__ import annotations

import json

import click

from ..errors import UsageError
from .render import print_models
from .app import cli


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

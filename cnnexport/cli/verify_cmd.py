"""``cnnexport verify ARTIFACT [--reference]``: the file against the outputs saved at export."""

from __future__ import annotations

import json

import click

from ..exporter.formats import FORMATS
from ..errors import VerificationError
from .render import print_verify
from .app import cli
from .options import load_artifact


@cli.command("verify")
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--reference", "reference", type=click.Path(dir_okay=False), default=None,
              help="reference.npz written by the export (inputs and PyTorch's outputs); default: the one "
                   "beside ARTIFACT.")
@click.option("--runtime", default=None,
              help=f"{', '.join(f.runtime for f in FORMATS.values())} (default: by extension).")
@click.option("--atol", type=click.FloatRange(min=0), default=None,
              help="Max abs error allowed (default: 1e-4 x max |reference|).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout, nothing else.")
def verify_cmd(artifact, reference, runtime, atol, as_json):
    """Check ARTIFACT against the reference outputs saved at export time. Needs no torch."""
    from ..exporter.verify_file import check_file, failure_reason, read_reference, reference_beside

    if reference is None:
        reference = reference_beside(artifact)
    loaded = read_reference(reference)  # a missing or foreign reference is named before the file is loaded
    eq = check_file(artifact, reference, loaded, load_artifact(artifact, runtime), atol)
    if as_json:
        from ..machine import cpu_facts

        click.echo(json.dumps({**eq, "machine": cpu_facts()}, indent=2))  # arch, ISA features, emulated
    else:
        print_verify(eq)
    if not eq["passed"]:
        raise VerificationError(failure_reason(eq, artifact, loaded[2]))

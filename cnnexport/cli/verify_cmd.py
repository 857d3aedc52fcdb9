"""``cnnexport verify ARTIFACT... [--reference]``: each file against the outputs saved at export."""

from __future__ import annotations

import json

import click

from ..exporter.formats import FORMATS
from ..errors import VerificationError
from .render import print_locate, print_verify
from .app import cli
from .options import files_of_folders, load_artifact


@cli.command("verify")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(), metavar="ARTIFACT...")
@click.option("--reference", "reference", type=click.Path(dir_okay=False), default=None,
              help="reference.npz written by the export (inputs and PyTorch's outputs); default: the one "
                   "beside each ARTIFACT.")
@click.option("--runtime", default=None,
              help=f"{', '.join(f.runtime for f in FORMATS.values())} (default: by extension).")
@click.option("--atol", type=click.FloatRange(min=0), default=None,
              help="Max abs error allowed (default: 1e-4 x max |reference|).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads of each runtime (default: the runtime's own, usually every core).")
@click.option("--runtime-default/--no-runtime-default", "runtime_default", default=True, show_default=True,
              help="Where the runtime's own default computes at another precision on this CPU (OpenVINO: bf16 "
                   "on AMX or AVX512-BF16, f16 on ARM), also check the file as the defaults load it (reported, not enforced); "
                   "--no-runtime-default names that precision without the second run (a slow board).")
@click.option("--locate", is_flag=True,
              help="Also find where each file first departs from the ONNX file it was converted from, on the "
                   "reference input it gets most wrong: the first operator whose output, run alone by ONNX Runtime "
                   "on the file's own inputs, still differs by over 1e-4 of its scale (MNN and OpenVINO files, "
                   "which keep the ONNX tensor names).")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None,
              help="With --locate: the ONNX file the ARTIFACTs were converted from (default: <model>.onnx beside each).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the figures as JSON on stdout, nothing else (several files: {\"files\": [...]}).")
def verify_cmd(artifacts, reference, runtime, atol, threads, runtime_default, locate, onnx_path, as_json):
    """Check each ARTIFACT (a file, or an export's folder: its files) against the reference outputs saved at
    export time. Needs no torch.

    Several files are checked in one run (one line each; exit 5 if any fails, naming each), which
    saves a process start per file where that is slow (an emulated ARM board)."""
    from ..exporter.verify_file import check_file, failure_reason, read_reference, reference_beside

    artifacts = files_of_folders(artifacts)
    references = {}  # path -> what read_reference returned: one read per reference.npz
    results, failures = [], []
    for artifact in artifacts:
        ref = reference if reference is not None else reference_beside(artifact)
        if ref not in references:  # a missing or foreign reference is named before the file is loaded
            references[ref] = read_reference(ref)
        model = load_artifact(artifact, runtime, threads)
        eq = check_file(artifact, ref, references[ref], model, atol, runtime_default)
        if locate:
            eq["locate"] = _locate(artifact, model, references[ref], onnx_path)
        results.append(eq)
        if not as_json:
            print_verify(eq)
            if locate:
                print_locate(eq["locate"], eq["artifact"])
        if not eq["passed"]:
            failures.append(failure_reason(eq, artifact, references[ref][2]))
    if as_json:
        from ..machine import cpu_facts

        body = {**results[0]} if len(results) == 1 else {"files": results}
        click.echo(json.dumps({**body, "machine": cpu_facts()}, indent=2))  # arch, ISA features, emulated
    if len(failures) == 1 and len(artifacts) == 1:
        raise VerificationError(failures[0])
    if failures:
        raise VerificationError(f"{len(failures)} of {len(artifacts)} files failed: " + "; ".join(failures))


def _locate(artifact: str, model, loaded_reference: tuple, onnx_path: str | None) -> dict:
    """``verify --locate`` of one file: :func:`exporter.locate.locate` on the reference input it gets most wrong."""
    from ..exporter.locate import locate, onnx_beside, worst_input

    inputs, refs, meta = loaded_reference
    x, name = worst_input(model, inputs, refs)
    return locate(onnx_path or onnx_beside(artifact, meta), model, x) | {"input": name}

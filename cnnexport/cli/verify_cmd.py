"""``cnnexport verify ARTIFACT --reference``: the file against the outputs saved at export."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..exporter.formats import FORMATS, precision_of
from ..errors import UsageError, VerificationError
from .render import print_verify
from .app import cli
from .options import load_artifact


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
    model = load_artifact(artifact, runtime)
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

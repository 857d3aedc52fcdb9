"""``cnnexport verify``'s checks, torch-free: an exported file, loaded by its runtime, against the
reference.npz its export wrote (inputs, PyTorch's outputs, the rules the export applied): the file's
own precision rule (fp32's tolerance, fp16's and bf16's, int8's mean cosine), what the runtime's
defaults on this CPU would give, and why a file that fails failed."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .formats import precision_of


def read_reference(reference: str) -> tuple[list, list, dict]:
    """(inputs, reference outputs, metadata) of a reference.npz, or UsageError naming what it is not."""
    from .verify import load_reference

    if not Path(reference).is_file():
        raise UsageError(f"reference file '{reference}' does not exist (the export writes reference.npz)")
    try:
        return load_reference(reference)
    except Exception as exc:
        raise UsageError(f"'{reference}' is not a cnnexport reference.npz ({type(exc).__name__})") from None


def reference_beside(artifact: str) -> str:
    """The reference.npz the export wrote beside ``artifact``, or UsageError saying to name one."""
    from .verify import reference_path

    path = reference_path(artifact)
    if not path.is_file():
        raise UsageError(f"no reference.npz beside '{artifact}' (the export writes one beside its files); pass the "
                         "export's reference.npz with --reference")
    return str(path)


def made_for(meta: dict) -> str:
    """' for model 'lenet5' (lenet5.onnx, ...)' from a reference.npz's metadata, or ''."""
    if not meta.get("model"):
        return ""
    files = meta.get("files") or []
    return f" for model '{meta['model']}'" + (f" ({', '.join(files[:4])})" if files else "")


def check_file(artifact: str, reference: str, loaded_reference: tuple, model, atol: float | None,
               runtime_default: bool = True) -> dict:
    """The figures of ``artifact`` (loaded as ``model``, a runtime adapter) against ``reference``
    (``loaded_reference``: what ``read_reference`` returned for it), by the rule of the file's precision,
    with ``runtime`` (the adapter's description) and ``runtime_default`` (the same check with the
    runtime's own defaults, where they compute at another precision; named but not run when
    ``runtime_default`` is False)."""
    from ..runtimes import run_nchw
    from ..runtimes.base import dims_text
    from .verify import REDUCED_RULES, TIE_MARGIN, compare, floor_for, reduced_verdict

    inputs, refs, meta = loaded_reference
    chw = model.inputs[0].chw
    ref_chw = list(inputs[0].batches[0].shape[1:]) if inputs else []
    if len(chw) != len(ref_chw) or any(d is not None and d != r for d, r in zip(chw, ref_chw)):
        raise UsageError(f"'{reference}' holds {'x'.join(map(str, ref_chw))} inputs{made_for(meta)} but "
                         f"'{Path(artifact).name}' takes {dims_text(chw)}: "
                         "pass the reference.npz written beside this file")
    precision = precision_of(artifact)  # fp16, bf16 and int8 files: checked by their own rule, as the export did

    def check(loaded) -> dict:
        if precision == "int8":
            entry = _check_int8(artifact, reference, loaded, atol)
            if meta.get("int8_scales"):  # a QAT model's trained scales: checked against that model, as exported
                entry["scales"] = meta["int8_scales"]
            return entry
        rule = REDUCED_RULES.get(precision)
        floor, floor_name = floor_for(meta.get("rounding_floor"), meta.get("approximation_floors"), loaded.runtime)
        checked = compare(Path(artifact).name, refs, lambda b: run_nchw(loaded, b), inputs, atol=atol,
                          rtol=rule.rtol if rule else meta.get("rtol", 1e-4), floor=floor,
                          tie_margin=rule.tie_margin if rule else TIE_MARGIN, floor_name=floor_name)
        return reduced_verdict(checked, precision) if rule else checked.as_dict()

    eq = check(model)
    eq["runtime"] = model.describe()
    eq["runtime_default"] = _runtime_default_check(model, check, runtime_default)
    return eq


def failure_reason(eq: dict, artifact: str, meta: dict) -> str:
    """Why a file that failed ``check_file`` failed, in one line; with a hint where the reference
    (``meta``: its metadata) was made for another model's files."""
    name = Path(artifact).name
    other = meta.get("model") and name.split(".")[0] != meta["model"] and name not in meta.get("files", [name])
    if "failure" in eq:
        why = eq["failure"]
    elif precision_of(artifact) == "int8":
        why = (f"{eq['artifact']} does not match the reference: int8 mean cosine {eq['cosine_mean']:.4f} "
               f"misses {eq['tolerance']}")
    else:
        why = (f"{eq['artifact']} does not match the reference: max abs error {eq['max_abs']:.3g} > "
               f"tolerance {eq['tolerance']:.3g}, cosine {eq['cosine']:.3f}")
    return why + (f"; the reference was made{made_for(meta)}, not for '{name}': pass the reference.npz "
                  "written beside this file" if other else "")


def _runtime_default_check(model, check, run: bool) -> dict | None:
    """Where the runtime's own default on this CPU computes at another precision than the one verified
    (OpenVINO: bf16 on AMX/AVX512-BF16 CPUs, f16 on ARM), the same ``check`` on the file loaded with the
    defaults: what a user who follows the runtime's documentation gets. Reported, not enforced; with
    ``run`` False only named (``checked``: false)."""
    default = model.runtime_default()
    if default is None:
        return None
    named = {"precision": default.precision, "verified_at": default.verified, "how": default.how}
    if not run:
        return {**named, "checked": False}
    eq = check(default.load())
    figures = {k: eq[k] for k in ("max_rel", "cosine", "cosine_mean", "top1_agreement", "passed") if k in eq}
    return {**named, "checked": True, **figures}


def _check_int8(artifact: str, reference: str, model, atol: float | None) -> dict:
    """An int8 file by the export's int8 rule, on the held-out samples the export recorded."""
    from ..runtimes import run_nchw
    from .int8 import int8_verdict
    from .verify import load_int8_reference

    if atol is not None:
        raise UsageError("--atol does not apply to an int8 file: it is checked by the mean cosine and top-1 drop "
                         "its export recorded")
    held = load_int8_reference(reference)
    if held is None:
        raise UsageError(f"'{reference}' holds no int8 check data (its export wrote no int8 file): pass the "
                         f"reference.npz that `cnnexport export --int8` wrote beside '{Path(artifact).name}'")
    return int8_verdict(Path(artifact).name, held.outputs, [run_nchw(model, b) for b in held.batches], held.batches,
                        held.min_cosine, held.labels, held.max_drop)

"""One export run: prepare -> ONNX -> check -> simplify -> check -> verify -> commit files.

Every file is first written into a staging folder inside the output folder and moved to its
final name only after every artifact has passed verification; a failure or an interrupt
leaves nothing new behind and never touches files of an earlier run.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from .._atomic import StagingDir, write_json
from .._onnx_safety import load_structure
from ..errors import OutputError, UsageError, VerificationError, disk_full, first_line
from ..profile import graph as graph_mod
from ..runtimes import NOT_YET_RUN_ON_GPU, run_nchw
from .formats import ALWAYS, FORMATS, Artifact, ConvertSource, Int8Options
from .int8 import check_drop, check_int8, heldout_batches, load_artifact, quantize_artifacts, split_data
from .onnx_fold import count_affine_after_conv
from .onnx_export import AUTO, DEFAULT_OPSET, EXPORTERS, to_onnx_auto
from .prepare import prepare_with_summary
from .report_fields import ONNX_GRAPH_FOLD, new_report
from .simplify import simplify as simplify_onnx
from .prepare_check import FLOOR_WARN_RELATIVE, check_prepared, rounding_floor
from .verify import (DEFAULT_RTOL, FLOOR_FACTOR, REDUCED_RULES, TIE_MARGIN, Int8Reference, compare, diagnosis,
                     make_inputs, near_zero_warning, reduced_verdict, reference_outputs, save_reference, tolerance)

StageCallback = Callable[[str], None]


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Temporarily put every submodule in eval mode, restoring each one's mode afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def first_tensor(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict) and out:
        return next(iter(out.values()))
    raise UsageError(f"the model returned {type(out).__name__}; cnnexport exports models that return a tensor")


def _check_shape(input_shape: Iterable[int]) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise UsageError(f"input shape {input_shape!r} must be a sequence of positive integers") from None
    if len(shape) < 2 or any(d <= 0 for d in shape) or any(d > 65536 for d in shape):
        raise UsageError(f"input shape {shape} must have a batch and at least one more dimension, each 1..65536")
    return shape


PROTOBUF_LIMIT = 2 ** 31  # one ONNX protobuf file cannot exceed 2 GiB


def _check_protobuf_limit(module: nn.Module) -> None:
    """Refuse, before writing anything, a model whose weights cannot fit one ONNX file (external-data
    ONNX is not written by cnnexport yet). Reads sizes only, so it also works on meta tensors."""
    size = sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
    if size >= PROTOBUF_LIMIT:
        raise UsageError(f"the model's weights take {size / 2 ** 30:.1f} GiB, over ONNX's 2 GiB single-file limit; "
                         "cnnexport does not write external-data ONNX yet: export it with "
                         "torch.onnx.export(..., external_data=True), or shrink it (fp16, pruning)")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"


def export(
    module: nn.Module,
    input_shape: Iterable[int] = (1, 3, 224, 224),
    output_dir: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    fold_bn: bool = True,
    reparameterize: bool = True,
    formats: Iterable[str] = ("onnx",),
    exporter: str = AUTO,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    simplify: bool = True,
    atol: float | None = None,
    rtol: float = DEFAULT_RTOL,
    photos: bool = True,
    tflite_layout: str = "nhwc",
    executorch_max_batch: int | None = None,
    fp16: bool = False,
    fp16_io: bool = False,
    bf16: bool = False,
    engine_max_batch: int | None = None,
    aoti_max_batch: int | None = None,
    int8: bool = False,
    calib: str | np.ndarray | None = None,
    calib_count: int = 200,
    int8_min_cosine: float = 0.98,
    calib_method: str = "minmax",
    keep_float: tuple[str, ...] = (),
    eval_source: str | None = None,
    eval_count: int | None = 1000,
    int8_max_drop: float | None = None,
    on_stage: StageCallback | None = None,
) -> dict:
    """Export any ``nn.Module``; return the report (also written as ``report.json``).

    ``formats``: any names of ``exporter.formats.FORMATS`` (onnx, openvino, tflite, ncnn, executorch;
    ONNX is always written: the others start from it or are checked beside it). ``input_shape``
    includes the batch; with ``dynamic_batch`` the ONNX/OpenVINO batch axis is dynamic whatever that
    batch is (TFLite, ncnn and ExecuTorch take the given batch). ``int8`` adds the int8 file of every
    requested format that has one (``<name>.int8.onnx`` with ONNX Runtime QDQ, ``.int8.xml`` with
    NNCF, ``.int8.tflite`` full integer, ``.int8.pte`` with PT2E), calibrated on ``calib``
    ('samples', 'digits', a folder, an array file or an NCHW array) and checked on held-out samples
    (mean cosine >= ``int8_min_cosine`` with PyTorch). ``calib_method`` (minmax, entropy, percentile)
    calibrates the ONNX Runtime int8 file; ``keep_float`` leaves nodes of the ONNX Runtime int8 file
    in float (see ``quantize_onnx``; with ``auto``, the fewest modules that reach ``int8_min_cosine``
    on the calibration samples). ``executorch_max_batch`` gives the .pte program a dynamic batch
    1..N (default: the shape's batch, static), ``aoti_max_batch`` the .pt2 package; ``engine_max_batch``
    is the largest batch of a TensorRT engine's optimisation profile (default 64; the engine needs a CUDA
    GPU). ``fp16`` adds the fp16 file
    of every requested format that has one (``<name>.fp16.onnx``, ``.fp16.xml``, ``.fp16.tflite``,
    ``.fp16.mnn``, ``.fp16.engine``; ``fp16_io``: the ONNX file takes and gives fp16 too), verified by
    fp16's own rule (``verify.fp16_verdict``). ``bf16`` adds the bf16 file of every requested format that
    has one (``<name>.bf16.xml``: OpenVINO computing in bf16 on purpose), verified by bf16's rule; it needs
    a CPU with bf16 arithmetic.
    ``eval_source`` is the int8 check's held-out data (its
    first ``eval_count`` samples; default: the digits test split for 'digits', else half of ``calib``);
    when it is labelled (digits, a folder with class subfolders, an .npz with ``y``) the check measures
    top-1 fp32 -> int8, and ``int8_max_drop`` refuses a larger drop in points. Raises a ``cnnexport.errors.CnnexportError`` subclass on bad input
    or when an artifact does not match PyTorch (then nothing is written).
    """
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UsageError(f"unknown format(s) {', '.join(unknown) or '(none)'}; available: {', '.join(FORMATS)}")
    if exporter not in (AUTO, *EXPORTERS):
        raise UsageError(f"unknown exporter '{exporter}'; choose one of {AUTO}, {', '.join(EXPORTERS)}")
    if atol is not None and not (atol >= 0 and np.isfinite(atol)):
        raise UsageError(f"--atol must be a finite number >= 0, got {atol}")
    shape = _check_shape(input_shape)
    if int8 and calib is None:
        raise UsageError("--int8 needs calibration data: --calib samples, digits, an image folder or a .npy/.npz file")
    if keep_float and not int8:
        raise UsageError("--keep-float applies to int8 files: add --int8 --calib ...")
    if executorch_max_batch is not None and not (2 <= executorch_max_batch <= 4096 and "executorch" in formats):
        raise UsageError("--executorch-max-batch takes 2..4096 and applies to --executorch")
    if aoti_max_batch is not None and not (2 <= aoti_max_batch <= 4096 and "aoti" in formats):
        raise UsageError("--aoti-max-batch takes 2..4096 and applies to --aoti")
    if fp16_io and not fp16:
        raise UsageError("--fp16-io applies to the fp16 ONNX file: add --fp16")
    if bf16:
        with_bf16 = [FORMATS[f] for f in formats if FORMATS[f].bf16]
        if not with_bf16:
            raise UsageError("--bf16 applies to " + ", ".join(f"--{f.name}" for f in FORMATS.values() if f.bf16))
        for fmt in with_bf16:
            fmt.module().bf16_preflight()
    if engine_max_batch is not None and not (1 <= engine_max_batch <= 4096 and any(FORMATS[f].needs_cuda
                                                                                   for f in formats)):
        raise UsageError("--tensorrt-max-batch takes 1..4096 and applies to --tensorrt")
    for fmt in (FORMATS[f] for f in formats if FORMATS[f].needs_cuda):
        fmt.module().preflight()  # before any work: an engine is built for this machine's GPU
    if (eval_source or int8_max_drop is not None) and not int8:
        raise UsageError("--eval and --int8-max-drop apply to int8 files: add --int8 --calib ...")
    if eval_count is not None and eval_count < 1:
        raise UsageError(f"--eval-count must be at least 1, got {eval_count}")
    if int8_max_drop is not None and not 0 <= int8_max_drop <= 100:
        raise UsageError(f"--int8-max-drop takes points of top-1 accuracy, 0..100, got {int8_max_drop}")
    if calib_method != "minmax" and not int8:
        raise UsageError("--calib-method applies to int8 files: add --int8 --calib ...")
    name = _safe_name(name or getattr(module, "cnnexport_name", None) or type(module).__name__.lower())
    stage = on_stage or (lambda _s: None)
    report = new_report(name, sum(p.numel() for p in module.parameters()), shape)
    report.update(dynamic_batch=dynamic_batch, exporter=exporter, opset=opset, fold_bn=fold_bn,
                  reparameterize=reparameterize)
    report["warnings"] += [NOT_YET_RUN_ON_GPU[FORMATS[f].runtime] for f in formats
                           if FORMATS[f].needs_cuda and FORMATS[f].runtime in NOT_YET_RUN_ON_GPU]
    preprocess = model_preprocess(module, shape)
    if preprocess is not None:
        report["preprocess"] = preprocess.as_dict()
    timings = report["timings_s"]

    stage("prepare")
    t0 = time.perf_counter()
    _check_protobuf_limit(module)
    prepared, summary = prepare_with_summary(module, fold_bn=fold_bn, reparameterize=reparameterize)
    report["prepare"] = summary.as_dict()
    report["params"] -= summary.aux_params  # the deployed model's parameters
    report["warnings"].extend(summary.warnings)
    with torch.no_grad():
        try:
            first_tensor(prepared(torch.zeros(shape)))
        except UsageError:
            raise
        except Exception as exc:
            msg = first_line(exc, 200)
            raise UsageError(f"the model cannot take input shape {'x'.join(map(str, shape))} ({msg}); "
                             "pass the size it expects with --input-size") from None
    inputs = make_inputs(shape, dynamic_batch=dynamic_batch, photos=photos)
    with eval_mode(module), torch.no_grad():
        refs = reference_outputs(lambda b: first_tensor(module(torch.from_numpy(b))).numpy(), inputs)
        floor = rounding_floor(module, inputs, refs, _forward)
    scale = float(max(np.abs(r).max() for r in refs))
    if floor is not None and floor > FLOOR_WARN_RELATIVE * (scale or 1.0):
        report["warnings"].append(
            f"the model's fp32 outputs are {floor / scale:.1%} of their scale away from float64's on the same inputs: "
            "fp32 cannot represent this model well (untrained weights or extreme BatchNorm statistics?); the "
            "tolerance follows that floor")
    report["rounding_floor"] = {"max_abs": floor, "relative": floor / scale if floor is not None and scale else None,
                                "factor": FLOOR_FACTOR, "how": "PyTorch fp32 against the same model in float64, "
                                                               "on the verification inputs"}
    report["prepare"]["check"] = check_prepared(
        prepared, refs, inputs, tolerance(rtol, scale, floor)[0], _forward,
        lambda k: prepare_with_summary(module, fold_bn=fold_bn, reparameterize=reparameterize, limit=k)[0],
        summary.changes, floor)
    timings["prepare"] = round(time.perf_counter() - t0, 3)

    staging = StagingDir(output_dir if output_dir is not None else Path("exports") / name)
    try:
        onnx_path = _export_onnx(prepared, summary, staging.file(FORMATS[ALWAYS].file_name(name)), shape, report,
                                 stage, exporter=exporter, opset=opset, dynamic_batch=dynamic_batch,
                                 simplify=simplify, fold_bn=fold_bn)
        source = ConvertSource(prepared, onnx_path, shape, tflite_layout, executorch_max_batch, fp16_io,
                               engine_max_batch, aoti_max_batch)
        artifacts = []
        for fmt in (ALWAYS, *(f for f in formats if f != ALWAYS)):  # every other format is checked beside ONNX
            converts = fmt != ALWAYS or fp16  # ONNX's fp32 file is the export itself
            if converts:
                stage(f"convert {fmt}")
            t0 = time.perf_counter()
            writer = FORMATS[fmt].module()
            fp32 = writer.convert(source, onnx_path if fmt == ALWAYS else staging.file(FORMATS[fmt].file_name(name)))
            artifacts.append(fp32)
            if fp16 and FORMATS[fmt].fp16:
                artifacts.append(writer.half(source, fp32, staging.file(FORMATS[fmt].file_name(name, "fp16"))))
            if bf16 and FORMATS[fmt].bf16:
                artifacts.append(writer.bf16(source, fp32, staging.file(FORMATS[fmt].file_name(name, "bf16"))))
            if converts:
                timings[f"convert_{fmt}"] = round(time.perf_counter() - t0, 3)

        int8_artifacts, heldout, labels = [], None, None
        if int8:
            stage("quantize")
            t0 = time.perf_counter()
            options = Int8Options(method=calib_method, keep_float=tuple(keep_float), min_cosine=int8_min_cosine,
                                  max_drop=int8_max_drop)
            int8_artifacts, heldout, labels = _quantize(staging, name, shape, artifacts, source, calib, calib_count,
                                                        report, options, eval_source, eval_count)
            timings["quantize"] = round(time.perf_counter() - t0, 3)

        stage("verify")
        t0 = time.perf_counter()
        if photos and not any(s.name == "photos" for s in inputs):
            report["warnings"].append(
                f"verified on random inputs only: the sample photographs do not fit input {'x'.join(map(str, shape))}"
                if len(shape) == 4 else "verified on random inputs only: the input is not an image (N, C, H, W)")
        with eval_mode(module), torch.no_grad():
            held_refs = reference_outputs(lambda b: first_tensor(module(torch.from_numpy(b))).numpy(),
                                          heldout) if heldout else None
        report["equivalence"] = [checked_entry(a, refs, inputs, atol, rtol, floor) for a in artifacts]
        if report["equivalence"] and (warning := near_zero_warning(report["equivalence"][0]["output_scale"])):
            report["warnings"].append(warning)
        report["equivalence"] += [check_int8(a, held_refs[0], heldout[0].batches, int8_min_cosine, labels,
                                             int8_max_drop) for a in int8_artifacts]
        artifacts += int8_artifacts
        timings["verify"] = round(time.perf_counter() - t0, 3)
        failed = [e for e in report["equivalence"] if not e["passed"]]
        if failed:
            raise VerificationError(
                "; ".join(_failure_line(e, floor) for e in failed)
                + "; nothing was written",
                report=report,
            )
        stage("write")
        save_reference(staging.file("reference.npz"), inputs, refs,
                       {"model": name, "input_layout": "NCHW", "rtol": rtol, "atol": atol, "rounding_floor": floor,
                        "files": [f.name for a in artifacts for f in a.files],
                        **({"preprocess": report["preprocess"]} if "preprocess" in report else {})},
                       Int8Reference(heldout[0].batches, held_refs[0], labels, int8_min_cosine, int8_max_drop)
                       if int8_artifacts else None)
        final_dir = staging.output_dir
        report["artifacts"] = [a.entry(final_dir) for a in artifacts]
        written = [f.name for a in artifacts for f in a.files] + ["reference.npz", "report.json"]
        report["removed_earlier_files"] = earlier_export_files(final_dir, name, keep=written)
        write_json(staging.file("report.json"), report)
        staging.commit(written, remove=report["removed_earlier_files"])
    except OSError as exc:
        staging.discard()
        raise (disk_full(exc) or OutputError(f"cannot write to '{staging.output_dir}': "
                                             f"{exc.strerror or first_line(exc)}; choose a writable folder")) from None
    except BaseException:
        staging.discard()
        raise
    return report


def earlier_export_files(folder: Path, name: str, keep: list[str]) -> list[str]:
    """Files an earlier export of model ``name`` wrote into ``folder`` (as its report.json lists them) that
    this export does not write again: beside the new reference.npz they would fail its check. Files the
    earlier report does not list are never named."""
    import json

    try:
        earlier = json.loads((folder / "report.json").read_text())
        listed = [f for a in earlier["artifacts"] for f in a["files"]] if earlier.get("model") == name else []
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return []  # no earlier export here, or not one cnnexport wrote
    return [f for f in dict.fromkeys(listed)
            if isinstance(f, str) and Path(f).name == f and f.startswith(f"{name}.") and f not in keep
            and (folder / f).is_file()]


def _export_onnx(prepared, summary, onnx_path: Path, shape, report, stage, *, exporter, opset, dynamic_batch,
                 simplify, fold_bn) -> Path:
    """Write, check and simplify the ONNX file; its graph facts go into the report."""
    timings = report["timings_s"]
    stage("export")
    t0 = time.perf_counter()
    used, warns = to_onnx_auto(prepared, onnx_path, shape, exporter=exporter, opset=opset,
                               dynamic_batch=dynamic_batch, keep_batchnorm=not fold_bn)
    report["warnings"].extend(warns)
    report.update(exporter=used, exporter_requested=exporter)
    onnx_folded, onnx_removed = _fold_onnx(onnx_path) if fold_bn else ([], {})
    timings["export"] = round(time.perf_counter() - t0, 3)
    facts = graph_mod.check(onnx_path)
    nodes_before = facts.nodes
    stage("simplify")
    t0 = time.perf_counter()
    simplifier, simplified = "none", None
    if simplify:
        simplifier, warns, simplified = simplify_onnx(onnx_path, onnx_path, keep_batchnorm=not fold_bn)
        report["warnings"].extend(warns)
        facts = graph_mod.check(onnx_path, model=simplified)
    timings["simplify"] = round(time.perf_counter() - t0, 3)
    report["graph"] = {
        "op_counts": facts.op_counts,
        "batchnorm_nodes": facts.batchnorm_nodes,
        "dropout_nodes": facts.dropout_nodes,
        "nodes_before_simplify": nodes_before,
        "nodes_after_simplify": facts.nodes,
        "simplifier": simplifier,
        "folded": summary.folded_counts() + _onnx_fold_counts(onnx_folded),
        "precomputed_constant_nodes": onnx_removed.get("constant", 0),
        "foldable_affine_after_conv": count_affine_after_conv(
            simplified if simplified is not None else load_structure(onnx_path)),
        "kept_normalizations": summary.kept_normalizations,
        "opset": facts.opset,
        "inputs": facts.inputs,
        "outputs": facts.outputs,
    }
    return onnx_path


def _fold_onnx(path: Path) -> tuple[list[dict], dict[str, int]]:
    """The last line of defence behind ``prepare``: fold what is left in the written file (a
    BatchNormalization, a per-channel Mul/Add after a Conv, e.g. behind a conv fx could not trace;
    weights computed from weights at run time). Returns the folds and the removed nodes' counts."""
    import onnx

    from .._atomic import atomic_path
    from .onnx_fold import fold_model

    model = onnx.load(str(path))
    _, folded, removed = fold_model(model)
    if folded or removed:
        with atomic_path(path) as tmp:
            onnx.save(model, str(tmp))
    return folded, removed


def _onnx_fold_counts(folded: list[dict]) -> list[dict]:
    from collections import Counter

    rows = Counter(f.get("what", "BatchNormalization") for f in folded)
    return [{"what": what, "into": "Conv", "kind": "previous", "level": ONNX_GRAPH_FOLD, "count": n}
            for what, n in sorted(rows.items())]


def _quantize(staging, name, shape, artifacts, source, calib, calib_count, report, options: Int8Options,
              eval_source: str | None, eval_count: int | None) -> tuple[list[Artifact], list, np.ndarray | None]:
    """int8 files for every artifact whose format has a quantizer, the held-out inputs and their labels
    when the calibration source has them (digits)."""
    from .verify import InputSet

    if len(shape) != 4:
        raise UsageError("--int8 supports image models (N, C, H, W inputs)")
    data = split_data(calib, shape, calib_count, eval_source, model_preprocess(source.prepared, shape), eval_count)
    check_drop(options, data)
    report["warnings"].extend(data.warnings)
    out, report["quantization"], warnings = quantize_artifacts(
        artifacts, source, data, options, lambda fmt: staging.file(fmt.file_name(name, "int8")))
    report["warnings"].extend(warnings)
    batches, labels = heldout_batches(data.evaluation, data.labels, shape[0])
    return out, [InputSet("heldout", batches)], labels


def model_preprocess(module, shape: tuple[int, ...]):
    """How images become this model's inputs: the normalisation its weights were trained with
    (``cnnexport_preprocess``, set for shipped weights), else ImageNet's, at the input's size. None
    for a model whose input is not an image (N, C, H, W)."""
    from ..calib import Preprocess

    if len(shape) != 4:
        return None
    return Preprocess(**getattr(module, "cnnexport_preprocess", {})).at(shape[2:], shape[1])


def verify_artifact(artifact: Artifact, refs: list[np.ndarray], inputs: list, atol: float | None, rtol: float,
                    floor: float | None = None, tie_margin: float = TIE_MARGIN):
    """``artifact`` run on ``inputs`` (InputSets) through its runtime, compared with PyTorch's ``refs``
    (``floor``: the model's rounding floor, which the default tolerance respects)."""
    first = inputs[0].batches
    model = load_artifact(artifact, (sum(len(b) for b in first), *first[0].shape[1:]))  # ncnn's whole first set
    return compare(artifact.files[0].name, refs, lambda b: run_nchw(model, b), inputs, atol=atol, rtol=rtol,
                   floor=floor, tie_margin=tie_margin)


def checked_entry(artifact: Artifact, refs: list[np.ndarray], inputs: list, atol: float | None, rtol: float,
                  floor: float | None = None) -> dict:
    """An fp32 artifact's report entry by the fp32 rule; an fp16 or bf16 one's by its precision's rule."""
    rule = REDUCED_RULES.get(artifact.precision)
    if rule is None:
        return verify_artifact(artifact, refs, inputs, atol, rtol, floor).as_dict()
    return reduced_verdict(verify_artifact(artifact, refs, inputs, atol, rule.rtol, floor, rule.tie_margin),
                           rule.precision)


def _failure_line(e: dict, floor: float | None) -> str:
    """One artifact's failure, with what it means: rounding or wrong (fp32), or the int8 gate it missed."""
    if "failure" in e:
        return f"{e['artifact']}: {e['failure']}"
    if e.get("precision") == "int8":
        return (f"{e['artifact']} does not match PyTorch: int8 mean cosine {e['cosine_mean']:.4f} misses "
                f"{e['tolerance']} (lower "
                "--int8-min-cosine, or calibrate on more or better samples, if this is expected)")
    return (f"{e['artifact']} does not match PyTorch: max abs error {e['max_abs']:.3g} vs tolerance "
            f"{e['tolerance']:.3g} (max rel {e['max_rel']:.3g}): "
            f"{diagnosis(e['max_abs'], e['cosine'], e['top1_agreement'], floor)}")


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return first_tensor(model(x))

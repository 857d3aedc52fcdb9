"""One export run: prepare -> ONNX -> check -> simplify -> check -> verify -> commit files.

Every file is first written into a staging folder inside the output folder and moved to its
final name only after every artifact has passed verification; a failure or an interrupt
leaves nothing new behind and never touches files of an earlier run.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from .._atomic import StagingDir, write_json
from .._onnx_safety import load_structure
from ..errors import OutputError, ParameterError, UsageError, VerificationError, cause_line, disk_full, first_line
from ..profile import graph as graph_mod
from ..models.outputs import FirstOutput, first_tensor
from ..runtimes import NOT_YET_RUN_ON_GPU, RUNTIME_TABLE, run_nchw
from .failures import Failures
from .formats import ALWAYS, FORMATS, Artifact, ConvertSource, Int8Options
from .int8 import (check_drop, check_int8, heldout_batches, load_artifact, qat_artifacts, quantize_artifacts,
                   split_data)
from .onnx_fold import count_affine_after_conv
from .onnx_export import to_onnx, to_onnx_auto
from .options import ExportOptions
from .prepare import PrepareSummary, prepare, prepare_with_summary
from .report_fields import ONNX_GRAPH_FOLD, QAT_SCALES, new_report
from .simplify import simplify as simplify_onnx
from .prepare_check import approximation_floors, check_prepared, rounding_floor
from .qat import QAT_HELDOUT, QatTwins, is_qat, qat_twins
from .verify import (DEFAULT_RTOL, FLOOR_FACTOR, FLOOR_NAME, INCONCLUSIVE_FLOOR, REDUCED_RULES, REFERENCE_FILE,
                     TIE_MARGIN, Int8Reference, compare, diagnosis, floor_for, make_inputs, near_zero_warning,
                     reduced_verdict, reference_outputs, save_reference, tolerance)

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


def materialize_lazy(module: nn.Module, shape: tuple[int, ...]) -> list[str]:
    """Make the module's lazy layers (``nn.LazyConv2d``, ``nn.LazyLinear``, ...) the stock layers they stand
    for by one forward of zeros at ``shape`` in eval mode, as PyTorch asks before they are used; return the
    lazy classes whose parameters had no shape until then (none when a checkpoint's loading gave them theirs)."""
    from torch.nn.modules.lazy import LazyModuleMixin

    lazies = [m for m in module.modules() if isinstance(m, LazyModuleMixin)]
    lazy = sorted({type(m).__name__ for m in lazies if m.has_uninitialized_params()})
    if lazies:  # loaded ones too: the forward makes each the stock layer it stands for, which torch.fx traces
        with torch.no_grad(), eval_mode(module):
            try:
                module(torch.zeros(shape))
            except Exception as exc:
                raise shape_error(shape, exc) from None
    return lazy


def shape_error(shape: tuple[int, ...], exc: Exception) -> ParameterError:
    """The one line for a model whose forward fails at ``shape``."""
    return ParameterError(f"the model cannot take input shape {'x'.join(map(str, shape))} "
                          f"({ParameterError.literal(cause_line(exc, 200))}); pass the size it expects as "
                          "{input_shape}")


def describe_outputs(out) -> tuple[str, str]:
    """What a model that returns several tensors returned, and which one ``first_tensor`` keeps."""
    if isinstance(out, dict):
        names = list(out)
        return f"a dict of {len(names)} outputs ({', '.join(map(str, names[:5]))})", repr(names[0])
    return f"a {type(out).__name__} of {len(out)} outputs", "#0"


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


#: What an export of a TorchScript module says it did differently.
TORCHSCRIPT_NOTE = ("a TorchScript module has no Python forward to prepare: it was exported as it is, its BatchNorms "
                    "folded in the ONNX graph, and only the formats converted from ONNX are written from it")


def is_torchscript(module: nn.Module) -> bool:
    """A ``torch.jit.script``/``trace`` module (or ``torch.jit.load``'s): exported as it is, not prepared."""
    return isinstance(module, torch.jit.ScriptModule)


def exportable(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """The module cnnexport prepares, and what was done to get it: torch.compile's and (Distributed)DataParallel's
    wrappers taken off, and an fp32 copy of a model held in another float type (fp16, bf16, float64: the
    reference is fp32). A TorchScript module is taken as it is (``TORCHSCRIPT_NOTE``)."""
    from ..models import refuse_exported_program

    notes = [TORCHSCRIPT_NOTE] if is_torchscript(module) else []
    refuse_exported_program(module)
    while True:  # wrappers in any order, e.g. torch.compile(DataParallel(net))
        inner = getattr(module, "_orig_mod", None)
        if type(module).__name__ == "OptimizedModule" and isinstance(inner, nn.Module):
            module = inner
            notes.append("the model came wrapped by torch.compile: the module it compiles was exported")
        elif isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            notes.append(f"the model came wrapped by {type(module).__name__}: the module it wraps "
                         "(its .module) was exported")
            module = module.module
        else:
            break
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in (*module.parameters(), *module.buffers())
                     if t.is_floating_point() and t.dtype != torch.float32})
    if dtypes:
        module = copy.deepcopy(module).float()
        notes.append(f"the model's weights are {'/'.join(dtypes)}: it was exported from an fp32 copy (the files are "
                     "fp32; --fp16 or --bf16 add reduced-precision files, each checked by its rule)")
    return module, notes


def _check_torchscript_choices(opts: ExportOptions) -> None:
    """A TorchScript module goes through ONNX only: formats converted from the Python module, and the dynamo
    exporter (which traces Python), are refused before any work."""
    module_formats = [f for f in opts.formats if FORMATS[f].source != "onnx"]
    if module_formats:
        flags = ", ".join(f"--{f}" for f in module_formats)
        raise UsageError(f"{flags} convert{'s' if len(module_formats) == 1 else ''} the Python module, which a "
                         f"TorchScript file does not hold: leave out {flags} (from TorchScript cnnexport writes "
                         f"{', '.join(f.label for f in FORMATS.values() if f.source == 'onnx')}), or export the "
                         "model's code with its weights (MODEL package.module:callable --weights)")
    if opts.exporter == "dynamo":
        raise UsageError("the dynamo exporter traces Python code, which a TorchScript module does not hold: use "
                         "--exporter torchscript (or auto)")


def _refuse_several_inputs(module: nn.Module) -> None:
    """A forward that needs more than the image (``forward(self, x, y)``) is refused with its arguments named:
    no --input-size can fit it."""
    import inspect

    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):  # no Python signature (a TorchScript module): the trial call says
        return
    needed = [p.name for p in params if p.default is p.empty
              and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if len(needed) > 1:
        raise UsageError(f"the model's forward needs {len(needed)} inputs ({', '.join(needed)}); cnnexport exports "
                         "models that take one image batch: wrap it in a module whose forward(x) supplies the "
                         "others, and export that")


def _refuse_torch_quantization(module: nn.Module) -> None:
    """A model quantized by ``torch.ao.quantization`` (its quantized modules: quantize_dynamic, or convert after
    calibration or QAT) is refused naming what it holds: the exporters cannot write it. (A QAT model before
    convert is exported from its twins: ``exporter.qat``; FloatFunctional computes in float.)"""
    quantized = [type(m).__name__ for m in module.modules() if ".quantized" in type(m).__module__
                 and type(m).__name__ != "FloatFunctional"]
    if not quantized:  # torch.ao.nn.intrinsic's float fused modules (fuse_modules) export as they are
        return
    raise UsageError(f"the model holds torch.ao's quantized modules ({quantized[0]}: quantize_dynamic or convert), "
                     "which the exporters cannot write: export the float model (the same architecture without "
                     "torch.ao's modules, your trained weights loaded) with --int8 --calib and your images, or the "
                     "QAT model before convert, whose int8 files keep its trained scales")


def _qat_choices(options: ExportOptions | None, choices: dict) -> dict:
    """A QAT model's int8 files keep its trained scales, so its --int8 needs no calibration data: without any,
    the int8 check's held-out images are the bundled photographs."""
    int8 = choices.get("int8", options.int8 if options else False)
    calib = choices.get("calib", options.calib if options else None)
    return {**choices, "calib": QAT_HELDOUT} if int8 and calib is None else choices


def _qat_note(qat: QatTwins, opts: ExportOptions) -> str:
    layers = f"{qat.summary['layers']} quantized layers, {qat.summary['activations']} quantized activations"
    widened = (f"; activations trained on {', '.join(qat.summary['widened_ranges'])} are written on ONNX's full "
               "range at the same scale" if qat.summary["widened_ranges"] and opts.int8 else "")
    if not opts.int8:
        return (f"the model was trained with quantization (QAT: {layers}): the files hold its float weights with "
                "BatchNorm folded, without the quantization it was trained for; --int8 writes int8 files from its "
                "trained scales")
    return (f"the model was trained with quantization (QAT: {layers}): its int8 files keep its trained scales (no "
            f"calibration; --calib only draws the int8 check's held-out images){widened}; its fp32 files hold its "
            "float weights with BatchNorm folded")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"


def export(module: nn.Module, input_shape: Iterable[int] = (1, 3, 224, 224),
           output_dir: str | os.PathLike | None = None, *, options: ExportOptions | None = None,
           on_stage: StageCallback | None = None, **choices) -> dict:
    """Export any ``nn.Module``; return the report (also written as ``report.json``). The choices come as
    ``options`` (an ``ExportOptions``) and/or keyword arguments that replace its fields; they are checked
    once, before any work, and a bad one raises ``ParameterError`` naming the parameter.

    ``formats``: any names of ``exporter.formats.FORMATS`` (ONNX is always written: the others start
    from it or are checked beside it). ``input_shape`` includes the batch; with ``dynamic_batch`` the
    batch axis of the formats that can carry one is dynamic whatever that batch is. ``int8`` adds the
    int8 file of every requested format that has one (its row's ``int8_from``), calibrated on ``calib``
    ('samples', 'digits', a folder, an array file or an NCHW array) and checked on held-out samples
    (mean cosine >= ``int8_min_cosine`` with PyTorch). ``calib_method`` (minmax, entropy, percentile)
    and ``keep_float`` apply to the quantizers that have them (a row's ``int8_extras``; ``keep_float``:
    see ``quantize_onnx``; with ``auto``, the fewest modules that reach ``int8_min_cosine`` on the
    calibration samples). ``fp16`` adds the fp16 file of every requested format that has one, verified
    by fp16's own rule (``verify.fp16_verdict``); ``bf16`` the bf16 file (computed in bf16 on purpose),
    verified by bf16's rule; it needs a CPU with bf16 arithmetic. A format's own options (its row's
    ``options``: ``FORMAT_OPTIONS``, e.g. ``tflite_layout``, a dynamic batch 1..N for a static-batch
    format) are keywords too; each applies only with its format.
    ``eval_source`` is the int8 check's held-out data (its
    first ``eval_count`` samples; default: the digits test split for 'digits', else half of ``calib``);
    when it is labelled (digits, a folder with class subfolders, an .npz with ``y``) the check measures
    top-1 fp32 -> int8, and ``int8_max_drop`` refuses a larger drop in points. Raises a ``cnnexport.errors.CnnexportError`` subclass on bad input
    or when an artifact does not match PyTorch (then nothing is written). ``keep_going``: a format whose file
    cannot be made or does not match is left out instead, named in the report's ``failed`` entries, and the other
    files are written (the ONNX fp32 file still raises: every other file starts from it).
    """
    qat = is_qat(module)
    opts = ExportOptions.of(options, **(_qat_choices(options, choices) if qat else choices))
    shape = _check_shape(input_shape)
    loaded_notes = list(getattr(module, "cnnexport_notes", ()))  # what loading its weights noted (EMA weights)
    module, notes = exportable(module)
    if qat:  # the float twin goes through prepare and every fp32 file; the int8 twin makes the int8 files
        if opts.keep_float or opts.calib_method != "minmax":
            raise ParameterError("{keep_float} and {calib_method} choose how int8 is calibrated; a QAT model's int8 "
                                 "files keep the scales it trained: leave them out")
        qat = qat_twins(module)
        module = qat.float
        notes.append(_qat_note(qat, opts))
    scripted = is_torchscript(module)
    if scripted:
        _check_torchscript_choices(opts)
    default = (getattr(module, "original_name", None) if scripted else None) or type(module).__name__
    name = _safe_name(opts.name or getattr(module, "cnnexport_name", None) or default.lower())
    stage = on_stage or (lambda _s: None)
    lazy = materialize_lazy(module, shape)
    if lazy:
        notes.append(f"the model's lazy layers ({', '.join(lazy)}) took their shapes from one forward at "
                     f"{'x'.join(map(str, shape))}, with fresh random weights: pass --weights for trained ones")
    report = _start_report(module, shape, name, opts)
    failures = Failures(opts.keep_going, name)
    report["warnings"] += loaded_notes + notes
    if qat:
        report["qat"] = qat.summary
    prepared, summary, reference = _prepare_stage(module, shape, opts, report, stage)
    staging = StagingDir(output_dir if output_dir is not None else Path("exports") / name)
    try:
        onnx_path = _export_onnx(prepared, summary, staging.file(FORMATS[ALWAYS].file_name(name)), shape, report,
                                 stage, opts)
        source = opts.convert_source(prepared, onnx_path, shape)
        artifacts = _convert_stage(source, staging, name, opts, report, stage, failures)
        int8_artifacts, heldout, labels = [], None, None
        if opts.int8:
            stage("quantize")
            t0 = time.perf_counter()
            options = Int8Options(method=opts.calib_method, keep_float=opts.keep_float,
                                  min_cosine=opts.int8_min_cosine, max_drop=opts.int8_max_drop)
            int8_artifacts, heldout, labels = _quantize(staging, name, shape, artifacts, source, opts.calib,
                                                        opts.calib_count, report, options, opts.eval_source,
                                                        opts.eval_count, opts.dynamic_batch, failures, opts.formats,
                                                        qat.int8 if qat else None)
            report["timings_s"]["quantize"] = round(time.perf_counter() - t0, 3)
        held, artifacts, int8_artifacts = _verify_stage(module, artifacts, int8_artifacts, heldout, labels, reference,
                                                        shape, opts, report, stage, failures,
                                                        qat.reference if qat else module)
        report["failed"] = failures.entries
        _write_stage(staging, name, artifacts + int8_artifacts, reference, held if int8_artifacts else None, labels,
                     opts, report, stage)
    except OSError as exc:
        staging.discard()
        raise (disk_full(exc) or OutputError(f"cannot write to '{staging.output_dir}': "
                                             f"{exc.strerror or first_line(exc)}; choose a writable folder")) from None
    except BaseException:
        staging.discard()
        raise
    return report


@dataclass
class Reference:
    """What every file is checked against: the verification inputs, PyTorch fp32's outputs on them, and
    the model's fp32 rounding floor (its outputs against float64's; None when not measured)."""

    inputs: list
    outputs: list[np.ndarray]
    floor: float | None = None
    # per runtime whose approximate functions the model calls: what they move its outputs by (prepare_check)
    approximation_floors: dict[str, float] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        """max |output|: the default tolerance is a fraction of it."""
        return float(max(np.abs(r).max() for r in self.outputs))

    def floor_for(self, runtime: str) -> tuple[float | None, str]:
        """The floor a file on ``runtime`` is held to, and its name in the tolerance rule."""
        return floor_for(self.floor, self.approximation_floors, runtime)


def prepared_onnx(module: nn.Module, shape: tuple[int, ...], path: str | os.PathLike) -> Path:
    """The prepared (folded) module's simplified ONNX graph written to ``path``, unverified: the layer costs
    ``profile --roofline`` and ``--against-onnx`` read for a model given by name."""
    module = exportable(module)[0]
    materialize_lazy(module, shape)
    to_onnx(prepare(module), path, shape)
    simplify_onnx(path, path)
    return Path(path)


def reference_of(module: nn.Module, shape: tuple[int, ...], *, dynamic_batch: bool = True, photos: bool = True,
                 floor: bool = True, runtimes: Iterable[str] | None = None) -> Reference:
    """PyTorch's outputs of ``module`` on the verification inputs for ``shape`` (random batches, and the
    sample photographs where they fit), with the rounding floor unless ``floor`` is False, and the floors
    of the approximate functions of ``runtimes`` (default: every runtime that declares some)."""
    inputs = make_inputs(shape, dynamic_batch=dynamic_batch, photos=photos)
    with eval_mode(module), torch.no_grad():
        refs = reference_outputs(lambda b: first_tensor(module(torch.from_numpy(b))).numpy(), inputs)
        measured = rounding_floor(module, inputs, refs, _forward) if floor else None
        declared = {r.name: dict(r.approximate_ops) for r in RUNTIME_TABLE.values() if r.approximate_ops
                    and (runtimes is None or r.name in runtimes)}
        approximated = (approximation_floors(module, inputs, _forward, declared) if measured is not None and declared
                        else {})
    return Reference(inputs, refs, measured, approximated)


@dataclass
class Checked:
    """One converted file and its equivalence entry; ``fp32``: the fp32 file an fp16 or bf16 one was made from."""

    artifact: Artifact
    entry: dict
    fp32: Artifact | None = None


def convert_and_verify(source: ConvertSource, reference: Reference, folder: str | os.PathLike, name: str,
                       formats: Iterable[str], *, precision: str = "fp32", atol: float | None = None,
                       rtol: float = DEFAULT_RTOL) -> list[Checked]:
    """Each of ``formats`` written from ``source`` into ``folder`` (at ``precision``: fp32, or the fp16 or
    bf16 file made from the fp32 one, as the export does) and checked against ``reference`` by its
    precision's rule. A converter's failure raises; a file that does not match is returned with
    ``entry["passed"]`` False. The export's own convert and verify steps."""
    folder = Path(folder)
    out = []
    for fmt in formats:
        writer = FORMATS[fmt].module()
        target = source.onnx_path if fmt == ALWAYS else folder / FORMATS[fmt].file_name(name)
        fp32 = writer.convert(source, target)
        artifact = fp32 if precision == "fp32" else getattr(writer, {"fp16": "half", "bf16": "bf16"}[precision])(
            source, fp32, folder / FORMATS[fmt].file_name(name, precision))
        out.append(Checked(artifact, checked_entry(artifact, reference.outputs, reference.inputs, atol, rtol,
                                                   *reference.floor_for(artifact.runtime)),
                           fp32 if artifact is not fp32 else None))
    return out


def _start_report(module: nn.Module, shape: tuple[int, ...], name: str, opts: ExportOptions) -> dict:
    report = new_report(name, sum(p.numel() for p in module.parameters()), shape)
    report.update(dynamic_batch=opts.dynamic_batch, exporter=opts.exporter, opset=opts.opset, fold_bn=opts.fold_bn,
                  reparameterize=opts.reparameterize)
    report["warnings"] += [NOT_YET_RUN_ON_GPU[FORMATS[f].runtime] for f in opts.formats
                           if FORMATS[f].on_cuda(opts.format_options) and FORMATS[f].runtime in NOT_YET_RUN_ON_GPU]
    preprocess = model_preprocess(module, shape)
    if preprocess is not None:
        report["preprocess"] = preprocess.as_dict()
    if getattr(module, "cnnexport_classes", None):  # its class names in output order (a timm folder's label_names)
        report["classes"] = list(module.cnnexport_classes)
    return report


def _prepare_stage(module: nn.Module, shape: tuple[int, ...], opts: ExportOptions, report: dict,
                   stage: StageCallback) -> tuple[nn.Module, PrepareSummary, Reference]:
    """The prepared (folded) copy and what preparing did, PyTorch's reference outputs and rounding floor,
    and the check that the prepared copy still computes what the module does."""
    stage("prepare")
    t0 = time.perf_counter()
    _check_protobuf_limit(module)
    _refuse_several_inputs(module)  # before preparing: neither is a model prepare could make exportable
    _refuse_torch_quantization(module)
    scripted = is_torchscript(module)
    prepared, summary = (module, PrepareSummary()) if scripted else \
        prepare_with_summary(module, fold_bn=opts.fold_bn, reparameterize=opts.reparameterize)
    report["prepare"] = {**summary.as_dict(), "torchscript": scripted}
    report["params"] -= summary.aux_params  # the deployed model's parameters
    report["warnings"].extend(summary.warnings)
    with torch.no_grad():
        try:
            out = prepared(torch.zeros(shape))
            first_tensor(out)
        except UsageError:
            raise
        except Exception as exc:
            raise shape_error(shape, exc) from None
    logits = first_tensor(out)
    width = logits.shape[-1] if logits.dim() else None
    if report.get("classes") and width != len(report["classes"]):
        report["warnings"].append(f"the model names {len(report['classes'])} classes (label_names) but gives {width} "
                                  "outputs: the names are left out; eval takes the classes from --classes")
        del report["classes"]
    if not isinstance(out, torch.Tensor):
        returned, kept = describe_outputs(out)
        prepared = FirstOutput(prepared)
        report["prepare"]["outputs"] = {"returned": returned, "kept": kept}
        report["warnings"].append(f"the model returns {returned}; the files hold its first output, {kept}, the one "
                                  "cnnexport verifies")
    reference = reference_of(module, shape, dynamic_batch=opts.dynamic_batch, photos=opts.photos,
                             runtimes={FORMATS[f].runtime for f in opts.formats})
    scale, floor = reference.scale, reference.floor
    if floor is not None and floor > INCONCLUSIVE_FLOOR * (scale or 1.0):
        report["warnings"].append(
            f"the model's fp32 outputs are {floor / scale:.1%} of their scale away from float64's on the same inputs: "
            "fp32 cannot represent this model well (untrained weights or extreme BatchNorm statistics?); the "
            "tolerance follows that floor, so the files' checks are inconclusive (a wrong file could pass): "
            "export trained weights (--weights) for a conclusive check")
    report["rounding_floor"] = {"max_abs": floor, "relative": floor / scale if floor is not None and scale else None,
                                "factor": FLOOR_FACTOR, "how": "PyTorch fp32 against the same model in float64, "
                                                               "on the verification inputs"}
    if reference.approximation_floors:
        report["approximation_floors"] = {
            runtime: {"max_abs": v, "how": "float64, with the functions this runtime approximates moved by up to "
                                          "their error (runtimes' approximate_ops)"}
            for runtime, v in reference.approximation_floors.items()}
    if scripted:
        report["prepare"]["check"] = {"passed": None, "skipped": "a TorchScript module is exported unchanged"}
    else:
        report["prepare"]["check"] = check_prepared(
            prepared, reference.outputs, reference.inputs, tolerance(opts.rtol, scale, floor)[0], _forward,
            lambda k: prepare_with_summary(module, fold_bn=opts.fold_bn, reparameterize=opts.reparameterize,
                                           limit=k)[0],
            summary.changes, floor)
    report["timings_s"]["prepare"] = round(time.perf_counter() - t0, 3)
    return prepared, summary, reference


def _convert_stage(source: ConvertSource, staging: StagingDir, name: str, opts: ExportOptions, report: dict,
                   stage: StageCallback, failures: Failures) -> list[Artifact]:
    """Every requested format's fp32 file (ONNX's is the export itself), and its fp16 and bf16 files; with
    ``keep_going``, those that cannot be made are left out (``failures``)."""
    artifacts = []
    for fmt in (ALWAYS, *(f for f in opts.formats if f != ALWAYS)):  # every other format is checked beside ONNX
        converts = fmt != ALWAYS or opts.fp16  # ONNX's fp32 file is the export itself
        if converts:
            stage(f"convert {fmt}")
        t0 = time.perf_counter()
        writer = FORMATS[fmt].module()
        fp32 = failures.attempt(fmt, "fp32", "convert", lambda: writer.convert(
            source, source.onnx_path if fmt == ALWAYS else staging.file(FORMATS[fmt].file_name(name))))
        artifacts += [fp32] if fp32 is not None else []
        for precision, writes in (("fp16", "half"), ("bf16", "bf16")):
            if not (getattr(opts, precision) and getattr(FORMATS[fmt], precision)):
                continue
            if fp32 is None:
                failures.without_source(fmt, precision, FORMATS[fmt].file_name(name))
                continue
            reduced = failures.attempt(fmt, precision, "convert", lambda: getattr(writer, writes)(
                source, fp32, staging.file(FORMATS[fmt].file_name(name, precision))))
            artifacts += [reduced] if reduced is not None else []
        if converts:
            report["timings_s"][f"convert_{fmt}"] = round(time.perf_counter() - t0, 3)
    return artifacts


def _verify_stage(module, artifacts, int8_artifacts, heldout, labels, reference: Reference, shape, opts: ExportOptions,
                  report: dict, stage: StageCallback, failures: Failures, int8_reference: nn.Module):
    """Every file against PyTorch; raises ``VerificationError`` (nothing written) when one fails, or with
    ``keep_going`` leaves it out (``failures``) unless it is the ONNX fp32 file. Returns PyTorch's outputs on the
    int8 check's held-out samples (None without int8), and the fp32/fp16/bf16 and int8 files that passed. The int8
    files are checked against ``int8_reference`` (the module, or a QAT model's own computation)."""
    stage("verify")
    t0 = time.perf_counter()
    if opts.photos and not any(s.name == "photos" for s in reference.inputs):
        report["warnings"].append(
            f"verified on random inputs only: the sample photographs do not fit input {'x'.join(map(str, shape))}"
            if len(shape) == 4 else "verified on random inputs only: the input is not an image (N, C, H, W)")
    with eval_mode(int8_reference), torch.no_grad():  # the module, or a QAT model itself (its observers off)
        held_refs = reference_outputs(lambda b: first_tensor(int8_reference(torch.from_numpy(b))).numpy(),
                                      heldout) if heldout else None
    checked = []
    for a in artifacts:
        entry = failures.attempt(a.format, a.precision, "verify", lambda: checked_entry(
            a, reference.outputs, reference.inputs, opts.atol, opts.rtol, *reference.floor_for(a.runtime)))
        checked += [(a, entry)] if entry is not None else []
    if checked and (warning := near_zero_warning(checked[0][1]["output_scale"])):
        report["warnings"].append(warning)
    for a in int8_artifacts:
        entry = failures.attempt(a.format, a.precision, "verify", lambda: check_int8(
            a, held_refs[0], heldout[0].batches, opts.int8_min_cosine, labels, opts.int8_max_drop))
        if entry is not None and int8_reference is not module:  # against a QAT model: its trained scales
            entry["scales"] = QAT_SCALES
        checked += [(a, entry)] if entry is not None else []
    report["equivalence"] = [e for _, e in checked]
    report["timings_s"]["verify"] = round(time.perf_counter() - t0, 3)
    failed = [(a, e) for a, e in checked if not e["passed"]]
    if failed:
        _locate_failures([e for _, e in failed], artifacts, reference)
        lines = {id(e): _failure_line(e, reference.floor_for(a.runtime)[0]) for a, e in failed}
        if not all(failures.skips(a.format, a.precision) for a, _ in failed):
            raise VerificationError("; ".join(lines.values()) + "; nothing was written", report=report)
        for a, e in failed:
            failures.add(a.format, a.precision, "verify", lines[id(e)], "VerificationError", check=e)
        report["equivalence"] = [e for _, e in checked if e["passed"]]
    passed = {id(a) for a, e in checked if e["passed"]}  # a file whose check could not run is not among them
    return ((heldout[0].batches, held_refs[0]) if heldout else None,
            [a for a in artifacts if id(a) in passed], [a for a in int8_artifacts if id(a) in passed])


def _write_stage(staging: StagingDir, name: str, artifacts: list[Artifact], reference: Reference, held, labels,
                 opts: ExportOptions, report: dict, stage: StageCallback) -> None:
    """reference.npz and report.json beside the files, then every staged file moved to its final name."""
    stage("write")
    save_reference(staging.file(REFERENCE_FILE), reference.inputs, reference.outputs,
                   {"model": name, "input_layout": "NCHW", "rtol": opts.rtol, "atol": opts.atol,
                    "rounding_floor": reference.floor, "approximation_floors": reference.approximation_floors,
                    "files": [f.name for a in artifacts for f in a.files],
                    **({"preprocess": report["preprocess"]} if "preprocess" in report else {}),
                    **({"classes": report["classes"]} if "classes" in report else {}),
                    **({"int8_scales": QAT_SCALES} if "qat" in report and held else {})},
                   Int8Reference(held[0], held[1], labels, opts.int8_min_cosine, opts.int8_max_drop) if held else None)
    final_dir = staging.output_dir
    report["artifacts"] = [a.entry(final_dir) for a in artifacts]
    written = [f.name for a in artifacts for f in a.files] + [REFERENCE_FILE, "report.json"]
    report["removed_earlier_files"] = earlier_export_files(final_dir, name, keep=written)
    write_json(staging.file("report.json"), report)
    staging.commit(written, remove=report["removed_earlier_files"])


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


def _export_onnx(prepared, summary, onnx_path: Path, shape, report, stage, opts: ExportOptions) -> Path:
    """Write, check and simplify the ONNX file; its graph facts go into the report."""
    timings = report["timings_s"]
    stage("export")
    t0 = time.perf_counter()
    used, warns = to_onnx_auto(prepared, onnx_path, shape, exporter=opts.exporter, opset=opts.opset,
                               dynamic_batch=opts.dynamic_batch, keep_batchnorm=not opts.fold_bn)
    report["warnings"].extend(warns)
    report.update(exporter=used, exporter_requested=opts.exporter)
    onnx_folded, onnx_removed = fold_onnx(onnx_path) if opts.fold_bn else ([], {})
    timings["export"] = round(time.perf_counter() - t0, 3)
    facts = graph_mod.check(onnx_path)
    nodes_before = facts.nodes
    stage("simplify")
    t0 = time.perf_counter()
    simplifier, simplified = "none", None
    if opts.simplify:
        simplifier, warns, simplified = simplify_onnx(onnx_path, onnx_path, keep_batchnorm=not opts.fold_bn)
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


def fold_onnx(path: Path) -> tuple[list[dict], dict[str, int]]:
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

    rows = Counter((f.get("what", "BatchNormalization"), f.get("into_type", "Conv"), f.get("kind", "previous"))
                   for f in folded)
    return [{"what": what, "into": into, "kind": kind, "level": ONNX_GRAPH_FOLD, "count": n}
            for (what, into, kind), n in sorted(rows.items())]


def _quantize(staging, name, shape, artifacts, source, calib, calib_count, report, options: Int8Options,
              eval_source: str | None, eval_count: int | None, dynamic_batch: bool,
              failures: Failures, formats: Iterable[str],
              qat_twin: nn.Module | None = None) -> tuple[list[Artifact], list, np.ndarray | None]:
    """int8 files for every artifact whose format has a quantizer (those that cannot be made left out with
    ``keep_going``: ``failures``), the held-out inputs and their labels when the calibration source has them
    (digits)."""
    from .verify import InputSet

    if len(shape) != 4:
        raise UsageError("--int8 supports image models (N, C, H, W inputs)")
    data = split_data(calib, shape, calib_count, eval_source, model_preprocess(source.prepared, shape), eval_count,
                      report.get("classes"))
    check_drop(options, data)
    report["warnings"].extend(data.warnings)
    dst_of = lambda fmt: staging.file(fmt.file_name(name, "int8"))  # noqa: E731
    if qat_twin is not None:  # a QAT model's trained scales: the calibration half of ``data`` is not used
        out, report["quantization"], warnings = qat_artifacts(artifacts, source, qat_twin, dst_of, failures, formats)
    else:
        out, report["quantization"], warnings = quantize_artifacts(artifacts, source, data, options, dst_of, failures,
                                                                   formats)
    report["warnings"].extend(warnings)
    batches, labels = heldout_batches(data.evaluation, data.labels, None if dynamic_batch else shape[0])
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
                    floor: float | None = None, tie_margin: float = TIE_MARGIN, floor_name: str = FLOOR_NAME):
    """``artifact`` run on ``inputs`` (InputSets) through its runtime, compared with PyTorch's ``refs``
    (``floor``: the rounding floor, which the default tolerance respects; ``floor_name`` names it)."""
    model = _load_for(artifact, inputs)
    return compare(artifact.files[0].name, refs, lambda b: run_nchw(model, b), inputs, atol=atol, rtol=rtol,
                   floor=floor, tie_margin=tie_margin, floor_name=floor_name)


def _load_for(artifact: Artifact, inputs: list):
    """``artifact`` loaded to run ``inputs`` (ncnn's adapter is sized for the whole first set)."""
    first = inputs[0].batches
    return load_artifact(artifact, (sum(len(b) for b in first), *first[0].shape[1:]))


def checked_entry(artifact: Artifact, refs: list[np.ndarray], inputs: list, atol: float | None, rtol: float,
                  floor: float | None = None, floor_name: str = FLOOR_NAME) -> dict:
    """An fp32 artifact's report entry by the fp32 rule; an fp16 or bf16 one's by its precision's rule."""
    rule = REDUCED_RULES.get(artifact.precision)
    if rule is None:
        return verify_artifact(artifact, refs, inputs, atol, rtol, floor, floor_name=floor_name).as_dict()
    return reduced_verdict(verify_artifact(artifact, refs, inputs, atol, rule.rtol, floor, rule.tie_margin,
                                           floor_name), rule.precision)


def _locate_failures(failed: list[dict], artifacts: list[Artifact], reference: Reference) -> None:
    """Each failed fp32 file made from the ONNX file, on a runtime that keeps the ONNX names (MNN, OpenVINO),
    given ``locate``: where it first departs from the ONNX file (``verify --locate``, which cannot run on a
    file the failed export did not write)."""
    from .locate import located

    by_name = {a.files[0].name: a for a in artifacts}
    onnx = next((a.files[0] for a in artifacts if a.format == ALWAYS), None)
    for e in failed:
        artifact = by_name.get(e["artifact"])
        if onnx is None or artifact is None or artifact.precision != "fp32" or FORMATS[artifact.format].source != "onnx":
            continue
        try:
            model = _load_for(artifact, reference.inputs)
        except Exception:  # the check loaded it; a diagnosis must never hide the failure it explains
            continue
        found = located(model, onnx, reference.inputs, reference.outputs)
        if found is not None:
            e["locate"] = found


def _failure_line(e: dict, floor: float | None) -> str:
    """One artifact's failure, with what it means: rounding or wrong (fp32), or the int8 gate it missed; and where
    it departs from the ONNX file, where that was located."""
    from .locate import departure_text

    where = f"; {departure_text(e['locate'])}" if e.get("locate") else ""
    if "failure" in e:
        return f"{e['artifact']}: {e['failure']}{where}"
    if e.get("precision") == "int8" and e.get("scales") == QAT_SCALES:
        return (f"{e['artifact']} does not match the QAT model: int8 mean cosine {e['cosine_mean']:.4f} misses "
                f"{e['tolerance']} (its trained scales, checked on images unlike its training data? give --eval with "
                "images like them, or lower --int8-min-cosine)")
    if e.get("precision") == "int8":
        return (f"{e['artifact']} does not match PyTorch: int8 mean cosine {e['cosine_mean']:.4f} misses "
                f"{e['tolerance']} (lower "
                "--int8-min-cosine, or calibrate on more or better samples, if this is expected)")
    return (f"{e['artifact']} does not match PyTorch: max abs error {e['max_abs']:.3g} vs tolerance "
            f"{e['tolerance']:.3g} (max rel {e['max_rel']:.3g}): "
            f"{diagnosis(e['max_abs'], e['cosine'], e['top1_agreement'], floor)}{where}")


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return first_tensor(model(x))

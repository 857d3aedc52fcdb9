"""The int8 flow, one copy for ``export --int8`` and ``cnnexport quantize``: calibration and evaluation
data split apart, each format's quantizer called through ``formats.FORMATS``, and the int8 check
(held-out cosine, SQNR, top-1 agreement, accuracy with labels). No torch: the reference logits come
from the caller (PyTorch in the export, the fp32 file in ``quantize``)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from .._atomic import StagingDir, check_output_file
from ..errors import UsageError, VerificationError
from .failures import Failures
from .formats import (ALWAYS, FORMATS, Artifact, Format, Int8Options, by_runtime, file_int8_formats, for_file,
                      int8_formats)
from .verify import compare, int8_figures


@dataclass
class Int8Data:
    """Samples the quantizer calibrates on, and held-out samples the int8 check evaluates on."""
    calibration: np.ndarray
    evaluation: np.ndarray
    labels: np.ndarray | None = None  # of ``evaluation``, when its source has them
    warnings: list[str] = field(default_factory=list)
    calibration_labels: np.ndarray | None = None  # of ``calibration``, when its source has them


def split_data(calib: str | np.ndarray, shape: tuple[int, ...], calib_count: int | None = 200,
               eval_source: str | None = None, preprocess=None, eval_count: int | None = None,
               classes: list[str] | None = None) -> Int8Data:
    """Calibration samples from ``calib`` ('samples', 'digits', a folder, an array file, or an NCHW
    array), and evaluation samples calibration never saw: ``eval_source`` (its first ``eval_count``),
    else the digits test split for 'digits', else the held-out half of the pool. Labelled sources (the
    digits, a folder with class subfolders, an .npz with ``y``) keep their labels, and the int8 check
    then measures accuracy. ``preprocess``: the model's (default: ImageNet's at the input's size);
    ``classes``: the model's class names in output order, which a folder's subfolders are matched to."""
    from ..calib import Preprocess, check_disjoint, check_fits
    from ..calib.labelled import UnknownClassesError
    from ..calib.sources import RECOMMENDED_MIN, load_labelled_samples, split_order

    pre = preprocess or (Preprocess(size=(shape[2], shape[3]), channels=shape[1]) if len(shape) == 4 else Preprocess())
    skipped = {"calibration": [], "evaluation": []}
    if isinstance(calib, np.ndarray):
        pool, pool_labels = calib, None
    else:
        try:
            pool, pool_labels = load_labelled_samples(calib, pre, calib_count, skipped=skipped["calibration"],
                                                      model_classes=classes)
        except UnknownClassesError:  # calibration needs no labels: the folder's images still calibrate
            skipped["calibration"].clear()
            pool, _ = load_labelled_samples(calib, pre, calib_count, skipped=skipped["calibration"])
            pool_labels = None
    check_fits(pool, shape)
    calibration_labels = pool_labels
    if eval_source:
        calibration = pool
        if eval_source == "digits":  # the test split, as everywhere else
            from ..calib.digits import load_digits

            test = load_digits(size=shape[2], channels=shape[1])
            evaluation, labels = test.x_test[:eval_count], test.y_test[:eval_count]
        else:
            evaluation, labels = load_labelled_samples(eval_source, pre, eval_count, skipped=skipped["evaluation"],
                                                       model_classes=classes)
        check_fits(evaluation, shape, "evaluation")
    elif isinstance(calib, str) and calib == "digits":
        from ..calib.digits import load_digits

        test = load_digits(size=shape[2], channels=shape[1])
        calibration, evaluation, labels = pool, test.x_test, test.y_test
    else:
        calibration_part, evaluation_part = split_order(len(pool))
        calibration, evaluation = pool[calibration_part], pool[evaluation_part]
        labels = None
        if pool_labels is not None:
            calibration_labels, labels = pool_labels[calibration_part], pool_labels[evaluation_part]
    check_disjoint(calibration, evaluation)
    warnings = [f"{len(bad)} {what} image(s) could not be read and were left out: {', '.join(bad[:3])}"
                f"{' ...' if len(bad) > 3 else ''}" for what, bad in skipped.items() if bad]
    if len(calibration) < RECOMMENDED_MIN:
        warnings.append(f"only {len(calibration)} calibration samples (fewer than {RECOMMENDED_MIN}): int8 ranges "
                        "may not cover real inputs; NNCF and Ultralytics recommend 300")
    return Int8Data(calibration, evaluation, labels, warnings, calibration_labels)


def with_labels(options: Int8Options, data: Int8Data) -> Int8Options:
    """``options`` carrying the calibration samples' labels, which ``--keep-float auto`` aims with when
    ``max_drop`` is set."""
    import dataclasses

    return dataclasses.replace(options, calibration_labels=data.calibration_labels)


def check_drop(options: Int8Options, data: Int8Data) -> None:
    """``--int8-max-drop`` needs labelled held-out data."""
    if options.max_drop is not None and data.labels is None:
        raise UsageError("--int8-max-drop needs labelled evaluation data: --eval digits, a folder with one "
                         "subfolder per class, or an .npz with x and y (or --calib digits)")


def drop_gate(figures: dict, max_drop: float | None) -> tuple[bool, str | None]:
    """Whether an int8 file's top-1 drop (points, against fp32 on the held-out labelled set) is within
    ``max_drop``, and the reason when not."""
    if max_drop is None or "accuracy_drop_points" not in figures:
        return True, None
    drop = figures["accuracy_drop_points"]
    if drop <= max_drop:
        return True, None
    return False, (f"top-1 falls {drop:.2f} points (fp32 {figures['accuracy_fp32']:.2%} -> int8 "
                   f"{figures['accuracy_int8']:.2%}) on {figures['samples']} held-out labelled images, more than "
                   f"--int8-max-drop {max_drop}")


def int8_files(fmt: Format, main: Path) -> list[Path]:
    """Every file of an int8 artifact whose loaded file is ``main`` (``m.int8.xml`` -> + ``m.int8.bin``)."""
    base = main.name[:-len(fmt.suffixes[0])]
    return [main] + [main.with_name(base + s) for s in fmt.suffixes[1:]]


def quantize_artifacts(fp32: list[Artifact], source, data: Int8Data, options: Int8Options,
                       dst_of, failures: Failures | None = None,
                       wanted: Iterable[str] = ()) -> tuple[list[Artifact], list[dict], list[str]]:
    """int8 artifacts for every fp32 artifact whose format has a quantizer (in ``FORMATS`` order), each
    written to ``dst_of(format)``; with what each quantizer did and its warnings. Each quantizer starts
    from what its row's ``int8_from`` says: the ONNX file, its own fp32 file, ``source`` (the
    ``ConvertSource`` with the prepared module) or ``source`` with the int8 ONNX file. ``failures`` (an
    export's, with ``keep_going``) leaves out a quantizer that fails, and names the int8 files of ``wanted``
    formats that were not made because their fp32 file was left out."""
    onnx_file = source.onnx_path
    failures = failures or Failures(keep_going=False, name="")
    out, infos, warnings = [], [], []
    for fmt in int8_formats():
        art = _fp32_of(fmt, fp32, failures, wanted)
        if art is None:
            continue
        if fmt.int8_from == "onnx_int8":
            src = _with_int8_onnx(source, fmt, out, failures)
            if src is None:
                continue
        else:
            src = {"onnx": onnx_file, "self": art.files[0], "module": source}[fmt.int8_from]
        dst = dst_of(fmt)
        info = failures.attempt(fmt.name, "int8", "quantize", lambda: fmt.module().quantize(
            src, dst, data.calibration, with_labels(options, data), art.layout))
        if info is None:
            continue
        infos.append(info)
        if warning := keep_float_warning(info):
            warnings.append(warning)
        details = info.pop("artifact_details", {})  # what the quantizer adds to the file's report entry
        out.append(Artifact(fmt.name, int8_files(fmt, dst), fmt.runtime, precision="int8", layout=art.layout,
                            graph_changes=details.pop("graph_changes", []), details=details))
    return out, infos, warnings


def _fp32_of(fmt: Format, fp32: list[Artifact], failures: Failures, wanted: Iterable[str]) -> Artifact | None:
    """The fp32 file ``fmt``'s int8 file starts from; None without one (named as not made where ``wanted``)."""
    art = next((a for a in fp32 if a.format == fmt.name and a.precision == "fp32"), None)
    if art is None and fmt.name in wanted:
        failures.without_source(fmt.name, "int8", fmt.file_name(failures.name))
    return art


def _with_int8_onnx(source, fmt: Format, made: list[Artifact], failures: Failures):
    """``source`` with the int8 ONNX file written just before (ONNX comes first) in place of the fp32 one; None
    without it (``fmt``'s int8 file named as not made)."""
    qdq = next((a.files[0] for a in made if a.format == ALWAYS), None)
    if qdq is None:
        failures.without_source(fmt.name, "int8", FORMATS[ALWAYS].file_name(failures.name, "int8"))
        return None
    return dataclasses.replace(source, onnx_path=qdq)


def qat_artifacts(fp32: list[Artifact], source, int8_twin, dst_of, failures: Failures,
                  wanted: Iterable[str] = ()) -> tuple[list[Artifact], list[dict], list[str]]:
    """A QAT model's int8 files, from its trained scales (``exporter.qat``): each format with a ``qat_int8``
    writer (in ``FORMATS`` order: ONNX's QDQ file from ``int8_twin`` first, the formats that convert that file
    after it), each written to ``dst_of(format)``; what each did, and a warning naming the formats of ``wanted``
    whose quantizers would calibrate scales of their own instead."""
    out, infos = [], []
    calibrating = []
    for fmt in int8_formats():
        art = _fp32_of(fmt, fp32, failures, wanted)
        if art is None:
            continue
        if fmt.qat_int8 is None:
            calibrating.append(fmt.label)
            continue
        src = (_with_int8_onnx(source, fmt, out, failures) if fmt.qat_int8 == "onnx_int8"
               else dataclasses.replace(source, prepared=int8_twin))
        if src is None:
            continue
        dst = dst_of(fmt)
        info = failures.attempt(fmt.name, "int8", "quantize", lambda: fmt.module().qat_int8(src, dst))
        if info is not None:
            infos.append(info)
            out.append(Artifact(fmt.name, int8_files(fmt, dst), fmt.runtime, precision="int8", layout=art.layout))
    made = " and ".join(a.files[0].name for a in out)
    warnings = [f"no int8 file for {', '.join(calibrating)}: a QAT model's trained scales go to "
                f"{made or 'the ONNX Runtime and OpenVINO files'}; their quantizers would calibrate scales of "
                "their own (export the float model with --int8 --calib for those)"] if calibrating else []
    return out, infos, warnings


def load_artifact(artifact: Artifact, batch_shape: tuple[int, ...]):
    """The artifact loaded with its runtime and the options its format asks for."""
    from ..runtimes import load

    fmt = FORMATS[artifact.format]
    return load(artifact.files[0], artifact.runtime, **fmt.module().runtime_options(artifact, batch_shape))


def check_int8(artifact: Artifact, reference: np.ndarray, batches: list[np.ndarray], min_cosine: float,
               labels: np.ndarray | None = None, max_drop: float | None = None) -> dict:
    """The int8 check: mean per-sample cosine with the reference logits on held-out ``batches``
    (>= ``min_cosine`` passes), SQNR, top-1 agreement, and both accuracies when labels are given (a
    top-1 drop over ``max_drop`` points fails)."""
    from ..runtimes import run_nchw

    model = load_artifact(artifact, batches[0].shape)
    outs = [run_nchw(model, b) for b in batches]
    return int8_verdict(artifact.files[0].name, reference, outs, batches, min_cosine, labels, max_drop)


def int8_verdict(name: str, reference: np.ndarray, outs: list[np.ndarray], batches: list[np.ndarray],
                 min_cosine: float, labels: np.ndarray | None = None, max_drop: float | None = None) -> dict:
    """The int8 rule on outputs already computed (``outs``, one per batch): the export's check and
    ``cnnexport verify`` of an int8 file against the held-out data its export recorded."""
    from .verify import InputSet

    fig = int8_figures(reference, np.concatenate(outs), labels)
    ran = iter(outs)
    eq = compare(name, [reference], lambda _b: next(ran), [InputSet("heldout", batches)],
                 atol=float("inf")).as_dict()
    within, why = drop_gate(fig, max_drop)
    eq.update(passed=fig["cosine_mean"] >= min_cosine and within,
              tolerance=f"mean cosine >= {min_cosine}" + (f", top-1 drop <= {max_drop} points" if max_drop is not None
                                                          and labels is not None else ""),
              cosine_mean=fig["cosine_mean"], cosine_min=fig["cosine_min"], sqnr_db=fig["sqnr_db"], precision="int8",
              **{k: fig[k] for k in ("accuracy_fp32", "accuracy_int8", "accuracy_drop_points") if k in fig})
    if why:
        eq["failure"] = why
    return eq


#: The held-out samples' batch where the files take any: one call per sample cost most of an int8 check
#: (OpenVINO under ARM emulation: 88 ms a call for LeNet-5), and the rule is per sample.
HELDOUT_BATCH = 16


def heldout_batches(evaluation: np.ndarray, labels: np.ndarray | None,
                    batch: int | None) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The evaluation samples cut into whole batches of ``batch`` (a static-batch file takes no other);
    ``batch`` None (a dynamic batch axis): all of them, in batches of ``HELDOUT_BATCH`` (the last one shorter)."""
    if batch is None:
        return [evaluation[i:i + HELDOUT_BATCH] for i in range(0, len(evaluation), HELDOUT_BATCH)], labels
    usable = len(evaluation) - len(evaluation) % batch
    return ([evaluation[i:i + batch] for i in range(0, usable, batch)],
            labels[:usable] if labels is not None else None)


def quantize_file(src: str | os.PathLike, calib: str, *, runtime: str | None = None,
                  output: str | os.PathLike | None = None, eval_source: str | None = None,
                  calib_count: int = 200, options: Int8Options = Int8Options(), per_layer: bool = False,
                  eval_count: int | None = None, overwrite: bool = False) -> dict:
    """``cnnexport quantize``: the int8 file for ``runtime`` (default: the input's own format) from an
    fp32 file, evaluated against that fp32 file on samples calibration never saw (accuracy too, on a
    labelled set; ``options.max_drop`` refuses a larger top-1 drop, and then nothing is written). The
    preprocessing is the one the export recorded in the reference.npz beside ``src``, else ImageNet's.
    An existing output (an export's own int8 file, say) is replaced only with ``overwrite``; the new
    file is staged beside it and moved into place once it passed, so a failure leaves the old one."""
    from ..runtimes import load, run_nchw

    if calib_count < 2:
        raise UsageError("--calib-count must be at least 2")
    src = Path(src)
    fmt = by_runtime(runtime) if runtime else for_file(src)
    if fmt is None or not fmt.int8_inputs:
        how = (f"; export its int8 file with cnnexport MODEL --{fmt.name} --int8 --calib ..."
               if fmt is not None and fmt.int8_from else "")
        raise UsageError(f"no int8 quantizer for '{src.name}' files; give a {', '.join(_inputs())} file "
                         f"(or --runtime {', '.join(f.runtime for f in file_int8_formats())}){how}")
    if not src.name.lower().endswith(fmt.int8_inputs):
        maker = for_file(fmt.int8_inputs[0]) or fmt
        raise UsageError(f"{fmt.label} int8 starts from an fp32 {' or '.join(fmt.int8_inputs)} file "
                         f"(cnnexport MODEL --{maker.name} makes one)")
    dst = Path(output) if output else src.with_name(_stem(src) + fmt.file_name("", "int8"))
    if dst.resolve() == src.resolve():
        raise UsageError("-o/--output must differ from the input file")
    if not dst.name.lower().endswith(fmt.suffixes[0]):
        raise UsageError(f"a {fmt.label} int8 output must end in {fmt.suffixes[0]}")
    if options.keep_float and "keep_float" not in fmt.int8_extras:
        takes = [f"{f.runtime_label} int8 files ({'/'.join(f.int8_inputs)} input)" for f in file_int8_formats()
                 if "keep_float" in f.int8_extras]
        raise UsageError(f"--keep-float applies to {' and '.join(takes)}")
    check_output_file(dst)
    existing = [f.name for f in int8_files(fmt, dst) if f.exists()]
    if existing and not overwrite:
        raise UsageError(f"'{dst}' already exists (an export's int8 file?); pass --force to replace it, or -o to "
                         "write another file")
    fp32 = load(src)
    spec = fp32.inputs[0]
    shape = (1, *(d or 1 for d in spec.chw))
    meta = _recorded_meta(src)
    data = split_data(calib, shape, calib_count, eval_source, recorded_preprocess(meta, shape), eval_count,
                      meta.get("classes"))
    check_drop(options, data)
    staging = StagingDir(dst.parent)
    try:
        staged = staging.file(dst.name)
        info = fmt.module().quantize(src, staged, data.calibration, with_labels(options, data), spec.layout)
        int8 = Artifact(fmt.name, int8_files(fmt, staged), fmt.runtime, precision="int8", layout=spec.layout)
        figures = int8_figures(run_nchw(fp32, data.evaluation),
                               run_nchw(load_artifact(int8, (1, *shape[1:])), data.evaluation), data.labels)
        within, why = drop_gate(figures, options.max_drop)
        if not within:
            raise VerificationError(f"{dst.name}: {why}; nothing was written (keep layers in float with "
                                    "--keep-float, calibrate on more or other samples, or raise --int8-max-drop)")
        per_layer_sqnr = (fmt.module().per_layer_sqnr(src, staged, data.evaluation[:32])
                          if per_layer and "per_layer" in fmt.int8_extras else None)
        int8_bytes = sum(f.stat().st_size for f in int8.files)
        staging.commit([f.name for f in int8.files])
    finally:
        staging.discard(remove_created=False)
    warnings = data.warnings + ([w] if (w := keep_float_warning(info)) else [])
    result = {"input": str(src), "output": str(dst), "quantization": info, "evaluation": figures,
              "sizes_bytes": {"fp32": src.stat().st_size, "int8": int8_bytes}, "warnings": warnings,
              "replaced": existing}
    if per_layer_sqnr is not None:
        result["per_layer_sqnr"] = per_layer_sqnr
    return result


def recorded_preprocess(meta: dict, shape: tuple[int, ...]):
    """The preprocessing the export recorded (``meta``: ``_recorded_meta``'s) at ``shape``'s size; None where
    it recorded none."""
    from ..calib import Preprocess

    if len(shape) != 4 or "preprocess" not in meta:
        return None
    return Preprocess.from_dict(meta["preprocess"]).at(shape[2:], shape[1])


def _recorded_meta(src: Path) -> dict:
    """The metadata of the reference.npz beside ``src`` when it lists ``src`` (its preprocessing, its class
    names), else {}."""
    from .evaluate import reference_meta

    try:
        return reference_meta(None, [src])
    except UsageError:  # not a reference.npz of ours: the file is quantized without it
        return {}


def describe(info: dict) -> str:
    """One line on how an int8 file was made, from its quantizer's record."""
    return by_runtime(info["runtime"]).module().describe_int8(info)


def keep_float_warning(info: dict) -> str | None:
    """A warning when ``--keep-float auto`` could not reach its target, or kept most of the network in float."""
    search = info.get("keep_float_search")
    if not search:
        return None
    if search["reached"]:
        if info["float_compute_nodes"] * 2 <= info["compute_nodes"]:
            return None
        return (f"--keep-float auto kept {info['float_compute_nodes']} of {info['compute_nodes']} compute nodes in "
                "float to reach its target: this int8 file will be little faster than fp32 (use the fp32 file, a "
                f"{'higher --int8-max-drop' if search.get('metric') == 'top1_drop_points' else 'lower --int8-min-cosine'}"
                ", or quantization-aware training)")
    if search.get("metric") == "top1_drop_points":
        return (f"--keep-float auto reached a top-1 drop of {search['drop_points']:.2f} points on the calibration "
                f"samples, short of its aim {search['aim']:.2f}, with every module in float; try --calib-method "
                "percentile or more calibration samples")
    return (f"--keep-float auto reached cosine {search['cosine']:.4f} on calibration samples, short of its aim "
            f"{search['aim']:.4f}, with every module in float; try --calib-method percentile or more calibration "
            "samples")


def _inputs() -> list[str]:
    return list(dict.fromkeys(s for f in file_int8_formats() for s in f.int8_inputs))


def _stem(path: Path) -> str:
    """``m.onnx`` -> ``m``; ``m.ncnn.param`` -> ``m`` (the format's whole suffix)."""
    fmt = for_file(path)
    return path.name[:-len(fmt.suffixes[0])] if fmt else path.stem

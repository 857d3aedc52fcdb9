"""The int8 flow, one copy for ``export --int8`` and ``cnnexport quantize``: calibration and evaluation
data split apart, each format's quantizer called through ``formats.FORMATS``, and the int8 check
(held-out cosine, SQNR, top-1 agreement, accuracy with labels). No torch: the reference logits come
from the caller (PyTorch in the export, the fp32 file in ``quantize``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .formats import FORMATS, Artifact, Format, Int8Options, by_runtime, file_int8_formats, for_file, int8_formats
from .verify import compare, int8_figures


@dataclass
class Int8Data:
    """Samples the quantizer calibrates on, and held-out samples the int8 check evaluates on."""
    calibration: np.ndarray
    evaluation: np.ndarray
    labels: np.ndarray | None = None  # of ``evaluation``, when the source has them (digits)
    warnings: list[str] = field(default_factory=list)


def split_data(calib: str | np.ndarray, shape: tuple[int, ...], calib_count: int | None = 200,
               eval_source: str | None = None) -> Int8Data:
    """Calibration samples from ``calib`` ('samples', 'digits', a folder, an array file, or an NCHW
    array), and evaluation samples calibration never saw: ``eval_source``, else the digits test
    split for 'digits', else the held-out half of the pool."""
    from ..calib import Preprocess, check_disjoint, check_fits, load_samples, split
    from ..calib.sources import RECOMMENDED_MIN

    pre = Preprocess(size=(shape[2], shape[3]), channels=shape[1]) if len(shape) == 4 else Preprocess()
    pool = calib if isinstance(calib, np.ndarray) else load_samples(calib, pre, calib_count)
    check_fits(pool, shape)
    labels = None
    if eval_source:
        calibration, evaluation = pool, load_samples(eval_source, pre, None)
        check_fits(evaluation, shape, "evaluation")
    elif isinstance(calib, str) and calib == "digits":
        from ..calib.digits import load_digits

        test = load_digits(size=shape[2], channels=shape[1])
        calibration, evaluation, labels = pool, test.x_test, test.y_test
    else:
        calibration, evaluation = split(pool)
    check_disjoint(calibration, evaluation)
    warnings = []
    if len(calibration) < RECOMMENDED_MIN:
        warnings.append(f"only {len(calibration)} calibration samples (fewer than {RECOMMENDED_MIN}): int8 ranges "
                        "may not cover real inputs; NNCF and Ultralytics recommend 300")
    return Int8Data(calibration, evaluation, labels, warnings)


def int8_files(fmt: Format, main: Path) -> list[Path]:
    """Every file of an int8 artifact whose loaded file is ``main`` (``m.int8.xml`` -> + ``m.int8.bin``)."""
    base = main.name[:-len(fmt.suffixes[0])]
    return [main] + [main.with_name(base + s) for s in fmt.suffixes[1:]]


def quantize_artifacts(fp32: list[Artifact], source, data: Int8Data, options: Int8Options,
                       dst_of) -> tuple[list[Artifact], list[dict], list[str]]:
    """int8 artifacts for every fp32 artifact whose format has a quantizer (in ``FORMATS`` order), each
    written to ``dst_of(format)``; with what each quantizer did and its warnings. Each quantizer starts
    from what its row's ``int8_from`` says: the ONNX file, its own fp32 file or ``source`` (the
    ``ConvertSource`` with the prepared module)."""
    onnx_file = source.onnx_path
    out, infos, warnings = [], [], []
    for fmt in int8_formats():
        art = next((a for a in fp32 if a.format == fmt.name), None)
        if art is None:
            continue
        src = {"onnx": onnx_file, "self": art.files[0], "module": source}[fmt.int8_from]
        dst = dst_of(fmt)
        info = fmt.module().quantize(src, dst, data.calibration, options, art.layout)
        infos.append(info)
        if warning := keep_float_warning(info):
            warnings.append(warning)
        details = info.pop("artifact_details", {})  # what the quantizer adds to the file's report entry
        out.append(Artifact(fmt.name, int8_files(fmt, dst), fmt.runtime, precision="int8", layout=art.layout,
                            graph_changes=details.pop("graph_changes", []), details=details))
    return out, infos, warnings


def load_artifact(artifact: Artifact, batch_shape: tuple[int, ...]):
    """The artifact loaded with its runtime and the options its format asks for."""
    from ..runtimes import load

    fmt = FORMATS[artifact.format]
    return load(artifact.files[0], artifact.runtime, **fmt.module().runtime_options(artifact, batch_shape))


def check_int8(artifact: Artifact, reference: np.ndarray, batches: list[np.ndarray], min_cosine: float,
               labels: np.ndarray | None = None) -> dict:
    """The int8 check: mean per-sample cosine with the reference logits on held-out ``batches``
    (>= ``min_cosine`` passes), SQNR, top-1 agreement, and both accuracies when labels are given."""
    from ..runtimes import run_nchw
    from .verify import InputSet

    model = load_artifact(artifact, batches[0].shape)
    outs = [run_nchw(model, b) for b in batches]  # run once; compare() reads these back
    fig = int8_figures(reference, np.concatenate(outs), labels)
    ran = iter(outs)
    eq = compare(artifact.files[0].name, [reference], lambda _b: next(ran), [InputSet("heldout", batches)],
                 atol=float("inf")).as_dict()
    eq.update(passed=fig["cosine_mean"] >= min_cosine, tolerance=f"mean cosine >= {min_cosine}",
              cosine_mean=fig["cosine_mean"], cosine_min=fig["cosine_min"], sqnr_db=fig["sqnr_db"], precision="int8",
              **{k: fig[k] for k in ("accuracy_fp32", "accuracy_int8", "accuracy_drop_points") if k in fig})
    return eq


def heldout_batches(evaluation: np.ndarray, labels: np.ndarray | None,
                    batch: int) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The evaluation samples cut into whole batches of ``batch`` (a static-batch file takes no other)."""
    usable = len(evaluation) - len(evaluation) % batch
    return ([evaluation[i:i + batch] for i in range(0, usable, batch)],
            labels[:usable] if labels is not None else None)


def quantize_file(src: str | os.PathLike, calib: str, *, runtime: str | None = None,
                  output: str | os.PathLike | None = None, eval_source: str | None = None,
                  calib_count: int = 200, options: Int8Options = Int8Options(), per_layer: bool = False) -> dict:
    """``cnnexport quantize``: the int8 file for ``runtime`` (default: the input's own format) from an
    fp32 file, evaluated against that fp32 file on samples calibration never saw."""
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
    fp32 = load(src)
    spec = fp32.inputs[0]
    shape = (1, *(d or 1 for d in spec.chw))
    data = split_data(calib, shape, calib_count, eval_source)
    info = fmt.module().quantize(src, dst, data.calibration, options, spec.layout)
    warnings = data.warnings + ([w] if (w := keep_float_warning(info)) else [])
    int8 = Artifact(fmt.name, int8_files(fmt, dst), fmt.runtime, precision="int8", layout=spec.layout)
    figures = int8_figures(run_nchw(fp32, data.evaluation),
                           run_nchw(load_artifact(int8, (1, *shape[1:])), data.evaluation), data.labels)
    result = {"input": str(src), "output": str(dst), "quantization": info, "evaluation": figures,
              "sizes_bytes": {"fp32": src.stat().st_size, "int8": sum(f.stat().st_size for f in int8.files)},
              "warnings": warnings}
    if per_layer and "per_layer" in fmt.int8_extras:
        result["per_layer_sqnr"] = fmt.module().per_layer_sqnr(src, dst, data.evaluation[:32])
    return result


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
                "lower --int8-min-cosine, or quantization-aware training)")
    return (f"--keep-float auto reached cosine {search['cosine']:.4f} on calibration samples, short of its aim "
            f"{search['aim']:.4f}, with every module in float; try --calib-method percentile or more calibration "
            "samples")


def _inputs() -> list[str]:
    return list(dict.fromkeys(s for f in file_int8_formats() for s in f.int8_inputs))


def _stem(path: Path) -> str:
    """``m.onnx`` -> ``m``; ``m.ncnn.param`` -> ``m`` (the format's whole suffix)."""
    fmt = for_file(path)
    return path.name[:-len(fmt.suffixes[0])] if fmt else path.stem

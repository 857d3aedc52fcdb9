"""Which zoo model converts and verifies on which runtime: one ONNX export per model, then each
converter and each runtime's equivalence check on its own, failures recorded with the error.

    python benchmarks/coverage.py [--models 'resnet*'] [--formats onnx,openvino,...]   (default: every format;
                                                                   TensorRT only on a machine with a CUDA GPU)
    python benchmarks/coverage.py --precision fp16      (each format's fp16 file: results/coverage_fp16.json)
    python benchmarks/coverage.py --source timm         (TIMM_MODELS, random weights, BatchNorm statistics
                                                          from random batches, small input: results/coverage_timm.json)

A timm model's ONNX row is the export itself (``cnnexport.export``: prepare, its check, the rounding
floor, the ONNX-level fold), run with and without onnxsim; the row records what the saved files hold
(BatchNormalization nodes, per-channel Mul/Add a conv could absorb) and what prepare did.

Appends to benchmarks/results/coverage.json (resumable: models already there are skipped unless
--redo); scripts/coverage_table.py turns it into the README's table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import traceback
from pathlib import Path

import torch

from cnnexport.exporter.formats import ALWAYS, FORMATS, ConvertSource
from cnnexport.exporter.onnx_export import to_onnx_auto
from cnnexport.exporter.pipeline import convert_and_verify, fold_onnx, reference_of
from cnnexport.exporter.prepare import prepare
from cnnexport.exporter.simplify import simplify
from cnnexport.exporter.verify import diagnosis
from cnnexport.exporter.report_fields import versions
from cnnexport.models import create_model, list_models, model_info

RESULTS = Path(__file__).parent / "results" / "coverage.json"
RESULTS_TIMM = RESULTS.with_name("coverage_timm.json")

# timm architectures: CNNs of every family timm has (BatchNormAct2d, conv-norm-act blocks, reparameterisable
# blocks, mixed kernels, dense and dual-path blocks, attention inside CNNs), then transformer hybrids.
TIMM_CNNS = (
    "resnet18", "resnet50d", "resnext26ts", "seresnet33ts", "ecaresnet26t", "skresnet18", "res2net50_26w_4s",
    "resnest14d", "regnetx_002", "regnety_002", "regnetz_b16", "dla34", "dpn48b", "densenet121", "hrnet_w18_small",
    "cspresnet50", "cspdarknet53", "darknet17", "ese_vovnet19b_dw", "selecsls42b", "gernet_s", "repvgg_a0",
    "mobileone_s0", "efficientnet_b0", "efficientnet_lite0", "tf_efficientnet_b0", "efficientnetv2_rw_t",
    "tf_efficientnetv2_b0", "mobilenetv2_100", "mobilenetv3_large_100", "tf_mobilenetv3_small_100",
    "mobilenetv4_conv_small", "mnasnet_100", "fbnetc_100", "mixnet_s", "tinynet_e", "lcnet_050", "ghostnet_100",
    "ghostnetv2_100", "repghostnet_050", "rexnet_100", "hardcorenas_a", "inception_v3", "xception41", "vgg11_bn",
    "nf_resnet26", "gcresnet33ts", "convnext_atto",
)
TIMM_HYBRIDS = ("mobilevit_xxs", "mobilevitv2_050", "fastvit_t8", "efficientvit_m0", "levit_128s", "edgenext_xx_small",
                "botnet26t_256")
TIMM_MODELS = TIMM_CNNS + TIMM_HYBRIDS
TIMM_SIZE = 96  # small input; a model that takes only its own size is run at that


def randomize_bn_stats(model, shape, seed: int = 0):
    """Every BatchNorm given random affine parameters and the running statistics a short training run
    would leave: the means and variances of its own inputs, collected over a few random batches. Random
    statistics that do not match the activations make a deep net chaotic (fp32 10% away from float64)."""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None]
    with torch.no_grad():
        for m in norms:
            if m.weight is not None:
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
            m.train()
        for _ in range(4):
            model(torch.randn(8, *shape[1:], generator=g))
    for m in norms:
        m.momentum = 0.1
        m.eval()
    return model


def timm_model(name: str):
    """(model, input shape): timm's ``name`` with random weights (seed 0) and randomised BN statistics,
    at TIMM_SIZE where it runs there, else at its own input size."""
    from cnnexport.models.timm_source import create_timm_model

    torch.manual_seed(0)
    model = create_timm_model(f"timm:{name}", num_classes=100)
    for size in (TIMM_SIZE, model.cnnexport_input_size[1]):
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, size, size))
        except Exception:
            continue
        return randomize_bn_stats(model, (1, 3, size, size)), (1, 3, size, size)
    raise RuntimeError(f"{name} does not run at {TIMM_SIZE} or its own size")


def export_row(name: str, model, shape) -> dict:
    """The export itself, with and without onnxsim: what prepare did and what the saved files hold."""
    import onnx

    import cnnexport
    from cnnexport.exporter.onnx_fold import count_affine_after_conv

    row = {"model": name, "format": ALWAYS, "input": list(shape), "converts": False, "verifies": False}
    for simplified in (True, False):
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                report = cnnexport.export(model, shape, tmp, name=name, simplify=simplified)
            except Exception as exc:
                row.setdefault("error", _error(exc))
                continue
            graph = onnx.load(str(Path(tmp) / f"{name}.onnx"))
        key = "" if simplified else "no_simplify_"
        eq, prep = report["equivalence"][0], report["prepare"]
        row.update({f"{key}bn_nodes": sum(n.op_type == "BatchNormalization" for n in graph.graph.node),
                    f"{key}foldable_affine": count_affine_after_conv(graph), f"{key}verifies": eq["passed"]})
        if simplified:
            row.update(converts=True, verifies=eq["passed"], max_rel=eq["max_rel"], cosine=eq["cosine"],
                       top1_agreement=eq["top1_agreement"], tolerance_rule=eq["tolerance_rule"],
                       conclusive=eq.get("conclusive", True),
                       convert_s=round(time.perf_counter() - t0, 2),
                       rounding_floor_rel=report["rounding_floor"]["relative"],
                       folded={lv: sum(f["count"] for f in report["graph"]["folded"]
                                       if f.get("level") == lv and f["kind"] != "scale_shift")
                               for lv in ("module", "graph", "onnx")},
                       scale_shift=len(prep["scale_shift"]), reparameterized=len(prep["reparameterized"]),
                       kept_norms=report["graph"]["kept_normalizations"],
                       warnings=[w for w in report["warnings"] if "could not trace" in w])
    return row


def _error(exc: BaseException) -> str:
    return next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)[:300]


def cover(name: str, formats: list[str], precision: str = "fp32", model=None, shape=None) -> list[dict]:
    """Each format's file of ``name`` (random weights, seed 0; or ``model`` at ``shape``) converted and
    checked against PyTorch: fp32 at the export's default tolerance (1e-4 x max |output|, or 4 x the
    model's rounding floor where that is larger), or with ``precision="fp16"`` the fp16 file (made from
    the fp32 one, as --fp16 does) by fp16's own rule."""
    if model is None:
        shape = (1, *model_info(name).input_size)
        torch.manual_seed(0)
        model = create_model(name)
    prepared = prepare(model)
    reference = reference_of(model, shape, floor=precision == "fp32")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        onnx_path = d / FORMATS[ALWAYS].file_name(name)
        t0 = time.perf_counter()
        onnx_error = None
        try:
            to_onnx_auto(prepared, onnx_path, shape)
            fold_onnx(onnx_path)
            simplify(onnx_path, onnx_path)
        except Exception as exc:  # the formats made from the module still run
            onnx_error = _error(exc)
        onnx_s = time.perf_counter() - t0
        source = ConvertSource(prepared, onnx_path, shape)
        for fmt in formats:
            row = {"model": name, "format": fmt, "converts": False, "verifies": False}
            if onnx_error and (fmt == ALWAYS or FORMATS[fmt].source == "onnx"):
                rows.append({**row, "error": f"made from the ONNX file, which could not be exported: {onnx_error}"})
                continue
            t0 = time.perf_counter()
            try:  # the export's own convert and verify steps, one format at a time
                (checked,) = convert_and_verify(source, reference, d, name, [fmt], precision=precision)
                if checked.fp32 is not None:
                    row["size_ratio"] = (sum(f.stat().st_size for f in checked.artifact.files)
                                         / sum(f.stat().st_size for f in checked.fp32.files))
                row["converts"] = True
                row["convert_s"] = round(onnx_s + time.perf_counter() - t0 if fmt == ALWAYS  # ONNX: the export itself
                                         else time.perf_counter() - t0, 2)  # conversion and its check
                eq = checked.entry
                row.update(verifies=eq["passed"], max_rel=eq["max_rel"], cosine=eq["cosine"],
                           top1_agreement=eq["top1_agreement"], conclusive=eq.get("conclusive", True))
                if checked.artifact.graph_changes:  # what a converter needed rewritten (or a runtime's kernels)
                    row["graph_changes"] = checked.artifact.graph_changes
                if precision == "fp16":
                    row["fp16_check"] = eq["fp16_check"]
                if not eq["passed"]:  # rounding or wrong, as the export's own failure line says
                    row["error"] = eq.get("failure") or (
                        f"max rel error {eq['max_rel']:.2e} over tolerance: "
                        + diagnosis(eq["max_abs"], eq["cosine"], eq["top1_agreement"], reference.floor))
            except Exception as exc:  # recorded, not raised: the table lists failures with the error
                row["error"] = _error(exc)
                row["trace_tail"] = traceback.format_exc().splitlines()[-1][:300]
            rows.append(row)
    return rows


def _gpu_here(fmt: str) -> bool:
    """Whether this machine can write ``fmt`` (a format that needs a CUDA GPU is left out otherwise)."""
    try:
        FORMATS[fmt].module().preflight()
    except Exception:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="*")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--redo", action="store_true")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                        help="fp16: each fp16 file, into results/coverage_fp16.json")
    parser.add_argument("--source", choices=("zoo", "timm"), default="zoo",
                        help="timm: TIMM_MODELS (or --models names), into results/coverage_timm.json")
    args = parser.parse_args()
    results = RESULTS if args.precision == "fp32" else RESULTS.with_name("coverage_fp16.json")
    if args.source == "timm":
        results = RESULTS_TIMM
    formats = [f for f in args.formats.split(",") if not FORMATS[f].needs_cuda or _gpu_here(f)]
    if args.precision == "fp16":
        formats = [f for f in formats if FORMATS[f].fp16]
    data = json.loads(results.read_text()) if results.is_file() else {"rows": []}
    done = {(r["model"], r["format"]) for r in data["rows"]}
    names = list_models(args.models) if args.source == "zoo" else (
        TIMM_MODELS if args.models == "*" else args.models.split(","))
    for name in names:
        todo = [f for f in formats if args.redo or (name, f) not in done]
        if not todo:
            continue
        if args.source == "timm":
            try:
                model, shape = timm_model(name)
            except Exception as exc:
                new = [{"model": name, "format": f, "converts": False, "verifies": False, "error": _error(exc)}
                       for f in todo]
            else:
                new = ([export_row(name, model, shape)] if ALWAYS in todo else []) + (
                    cover(name, [f for f in todo if f != ALWAYS], model=model, shape=shape)
                    if any(f != ALWAYS for f in todo) else [])
        else:
            new = cover(name, todo, args.precision)
        data["rows"] = [r for r in data["rows"] if not (r["model"] == name and r["format"] in todo)] + new
        data["versions"] = versions(*(("timm", "torchvision") if args.source == "timm" else ()), "openvino", "ai-edge-litert", "litert-torch", "ncnn", "pnnx", "executorch", "mnn",
                                    *(("onnxconverter-common", "ai-edge-quantizer") if args.precision == "fp16" else ()))
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(data, indent=1) + "\n")
        print(name, " ".join(f"{r['format']}:{'ok' if r['verifies'] else 'FAIL'}" for r in new), flush=True)


if __name__ == "__main__":
    main()

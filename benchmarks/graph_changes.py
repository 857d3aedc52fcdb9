"""Graph-level changes, each measured against the graph without it (interleaved rounds, one process
per runtime per round, same artifacts otherwise).

    python benchmarks/graph_changes.py [--rounds 5] [--threads 2]

1. TFLite: padded max-pool after a ReLU as zero PAD + MAX_POOL_2D instead of PADV2(-inf) +
   MAX_POOL_2D (XNNPACK does not take PADV2): resnet50, shufflenet_v2_x1_0. Not applied by the export
   since the 2026-12-06 run on an Intel Xeon (a tie and 3% slower).
2. ShuffleNetV2's concat + channel shuffle as one interleave (stack + reshape), instead of
   cat + reshape/transpose/reshape: TFLite and ONNX Runtime. Applied in the model.
3. The same shuffle written channels-last (no transpose left in the .tflite at all). Rejected if slower.
4. The shuffle forms of 2 on OpenVINO (the runtime `bench --pick` chose for shufflenet_v2_x1_0's fp32 file)
   and ncnn.
5. NHWC end to end for XNNPACK: the .tflite with an NHWC input (the export's default) against the same model
   with an NCHW input (a transpose at the graph's edge, which the converter then carries inward), for the
   three target models.
6. Threads: each target's picked fp32 runtime at 1 thread against 2 (what `bench --threads 1,2 --pick`
   chooses between).

Writes benchmarks/results/graph_changes.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
from pathlib import Path

import torch

from cnnexport.machine import cpu_facts
from cnnexport.bench.jobs import artifact_job
from cnnexport.bench.rows import paired, rows_from
from cnnexport.bench.schedule import run_jobs
from cnnexport.exporter.formats.ncnn import to_ncnn
from cnnexport.exporter.formats.openvino import to_openvino
from cnnexport.exporter.formats.tflite import to_tflite
from cnnexport.exporter.onnx_export import to_onnx
from cnnexport.exporter.prepare import prepare
from cnnexport.exporter.report_fields import versions
from cnnexport.exporter.formats.xnnpack_rewrites import zero_pad_maxpool_after_relu
from cnnexport.models import create_model, shufflenet
from cnnexport.models.layers import channel_shuffle

RESULTS = Path(__file__).parent / "results" / "graph_changes.json"
SHAPE = (1, 3, 224, 224)
TARGETS = ("resnet50", "mobilenet_v2", "shufflenet_v2_x1_0")
#: each target's fp32 pick in the committed targets_*.json (bench --pick, 2 threads)
PICKED = {"resnet50": "openvino", "mobilenet_v2": "tflite", "shufflenet_v2_x1_0": "openvino"}
RUNTIME_OF = {".tflite": "tflite", ".onnx": "onnxruntime", ".xml": "openvino", ".param": "ncnn"}


def _cat_then_shuffle(a, b):
    return channel_shuffle(torch.cat((a, b), 1), 2)


def _channels_last(a, b):
    _, c, h, w = a.shape
    pair = torch.stack((a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)), -1)
    return pair.reshape(-1, h, w, 2 * c).permute(0, 3, 1, 2)


@contextlib.contextmanager
def shuffle_as(fn):
    original = shufflenet.concat_shuffle
    shufflenet.concat_shuffle = fn
    try:
        yield
    finally:
        shufflenet.concat_shuffle = original


def variants(tmp: Path) -> list[tuple[str, str, str, Path]]:
    """(change, model, before/after, file)."""
    out = []
    for name in ("resnet50", "shufflenet_v2_x1_0"):
        model = prepare(create_model(name))
        before = to_tflite(model, tmp / f"{name}.padv2.tflite", SHAPE)
        after = to_tflite(zero_pad_maxpool_after_relu(model)[0], tmp / f"{name}.zeropad.tflite", SHAPE)
        out += [("max-pool padding as zero PAD (TFLite)", name, "before", before),
                ("max-pool padding as zero PAD (TFLite)", name, "after", after)]
    model = zero_pad_maxpool_after_relu(prepare(create_model("shufflenet_v2_x1_0")))[0]
    for tag, fn in (("cat_shuffle", _cat_then_shuffle), ("stack_shuffle", shufflenet.concat_shuffle),
                    ("channels_last_shuffle", _channels_last)):
        with shuffle_as(fn):
            out.append((tag, "shufflenet_v2_x1_0", "tflite", to_tflite(model, tmp / f"snv2.{tag}.tflite", SHAPE)))
            if tag != "channels_last_shuffle":
                path = tmp / f"snv2.{tag}.onnx"
                to_onnx(model, path, SHAPE)
                out.append((tag, "shufflenet_v2_x1_0", "onnx", path))
                xml = tmp / f"snv2.{tag}.xml"
                to_openvino(path, xml)
                out.append((tag, "shufflenet_v2_x1_0", "xml", xml))
                plain = prepare(create_model("shufflenet_v2_x1_0"))
                out.append((tag, "shufflenet_v2_x1_0", "param", to_ncnn(plain, tmp / f"snv2.{tag}.ncnn.param",
                                                                          SHAPE)[0]))
    for name in TARGETS:
        model = prepare(create_model(name))
        for layout in ("nhwc", "nchw"):
            out.append((f"layout_{layout}", name, "tflite",
                        to_tflite(model, tmp / f"{name}.{layout}.tflite", SHAPE, layout=layout)))
        onnx_path = tmp / f"{name}.onnx"
        to_onnx(model, onnx_path, SHAPE)
        to_openvino(onnx_path, tmp / f"{name}.xml")
    return out


def thread_jobs(tmp: Path, threads: int) -> list[tuple[str, int, object]]:
    """(model, threads, job): each target's picked fp32 file at 1 thread and at ``threads``."""
    out = []
    for name, runtime in PICKED.items():
        path = tmp / (f"{name}.xml" if runtime == "openvino" else f"{name}.nhwc.tflite")
        out += [(name, t, artifact_job(path, runtime, 1, t)) for t in sorted({1, threads})]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        made = variants(Path(tmp))
        jobs = [artifact_job(path, RUNTIME_OF[Path(path).suffix], 1, args.threads,
                             input_size=SHAPE[1:] if Path(path).suffix == ".param" else None) for *_, path in made]
        by_threads = thread_jobs(Path(tmp), args.threads)
        run_jobs(jobs + [j for *_, j in by_threads], rounds=args.rounds,
                 timing={"warmup": 10, "min_runs": 50, "min_time_s": 1.0})
    rows = rows_from(jobs, machine=cpu_facts())
    by_file = {r["artifact"]: r for r in rows}
    summary = lambda path: {k: by_file[Path(path).name][k] for k in ("median_ms", "round_medians_ms", "spread")}  # noqa: E731
    files = {(c, m, w): p for c, m, w, p in made}
    changes = []
    for name in ("resnet50", "shufflenet_v2_x1_0"):
        key = "max-pool padding as zero PAD (TFLite)"
        b, a = summary(files[(key, name, "before")]), summary(files[(key, name, "after")])
        changes.append({"change": key, "model": name, "runtime": "tflite", "before": b, "after": a})
    for runtime, ext in (("tflite", "tflite"), ("onnxruntime", "onnx"), ("openvino", "xml"), ("ncnn", "param")):
        base = summary(files[("cat_shuffle", "shufflenet_v2_x1_0", ext)])
        for tag in ("stack_shuffle", "channels_last_shuffle"):
            if (tag, "shufflenet_v2_x1_0", ext) in files:
                changes.append({"change": f"{tag.replace('_', ' ')} instead of cat + reshape/transpose/reshape",
                                "model": "shufflenet_v2_x1_0", "runtime": runtime, "before": base,
                                "after": summary(files[(tag, "shufflenet_v2_x1_0", ext)])})
    for name in TARGETS:
        changes.append({"change": "NHWC input end to end instead of NCHW (TFLite, XNNPACK)", "model": name,
                        "runtime": "tflite", "before": summary(files[("layout_nchw", name, "tflite")]),
                        "after": summary(files[("layout_nhwc", name, "tflite")])})
    thread_rows = rows_from([j for *_, j in by_threads], machine=cpu_facts())
    for name, runtime in PICKED.items():
        at = {r["threads"]: r for r in thread_rows if r["model"] == name}
        if len(at) == 2:
            one, many = (at[t] for t in sorted(at))
            changes.append({"change": f"{many['threads']} threads instead of 1 (the pick's runtime)", "model": name,
                            "runtime": runtime,
                            "before": {k: one[k] for k in ("median_ms", "round_medians_ms", "spread")},
                            "after": {k: many[k] for k in ("median_ms", "round_medians_ms", "spread")}})
    for c in changes:
        c["speedup"] = c["before"]["median_ms"] / c["after"]["median_ms"]
        before, after = c["before"]["round_medians_ms"], c["after"]["round_medians_ms"]
        c["paired"] = paired(after, before)  # after / before, round by round
        c["beyond_spread"] = c["paired"]["call"] is not None
        print(f"{c['change']}, {c['model']} on {c['runtime']}: {c['speedup']:.2f}x "
              f"({c['paired']['call'] or 'a tie'} by the paired test)", flush=True)
    out = {"benchmark": "graph_changes", "machine": cpu_facts(), "threads": args.threads, "rounds": args.rounds,
           "versions": versions("ai-edge-litert", "litert-torch", "onnxruntime", "openvino", "ncnn"), "changes": changes,
           "median_of_medians_ms": {r["artifact"]: statistics.median(r["round_medians_ms"]) for r in rows}}
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

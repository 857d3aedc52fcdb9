"""OpenVINO's precisions on a bf16 CPU: what runs by default, what was verified, and bf16 on purpose.

    python benchmarks/openvino_bf16.py [--threads 2] [--rounds 5] [--models resnet50,mobilenet_v2,...]

The three target models (random weights, seed 0; BatchNorm statistics re-estimated on the bundled
photographs) exported with --openvino --int8 (calibrated on the photographs), and each one's bf16 file
made as --bf16 makes it and checked by bf16's rule, recorded rather than enforced: with random weights
the logits of different classes lie close together and bf16 may change the top class of a photograph
(as fp16 may, see fp16_cpu.py; a trained network's margins are far larger). For each IR:

- its error against PyTorch fp32 on the photographs as a user compiles it: with OpenVINO's plain
  defaults (``core.compile_model(path, "CPU")``), and with the file's config (``<model>.config.json``,
  what cnnexport verifies and what ``benchmark_app -load_config`` reads);
- the latency of the fp32, bf16 and int8 files as cnnexport runs them (each at its config's precision),
  paired round by round against fp32 (batch 1, ``--threads`` threads, the `cnnexport bench` protocol).

Needs a CPU with bf16 arithmetic (AMX-BF16 or AVX512-BF16). Writes benchmarks/results/openvino_bf16.json.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

import cnnexport
import torch
from cnnexport.bench.jobs import artifact_job
from cnnexport.bench.rows import paired
from cnnexport.bench.schedule import measure
from cnnexport.calib import Preprocess, sample_photos
from cnnexport.exporter.formats import FORMATS, Artifact, ConvertSource
from cnnexport.exporter.pipeline import checked_entry
from cnnexport.exporter.prepare import prepare
from cnnexport.profile.torch_profile import profile_module
from cnnexport.exporter.report_fields import versions
from cnnexport.exporter.verify import load_reference
from cnnexport.models import create_model, model_info
from cnnexport.runtimes.openvino import config_path, cpu_default_precision, cpu_has_bf16

from _common import reestimate_bn
from executorch_bench import parse_args

RESULTS = Path(__file__).parent / "results" / "openvino_bf16.json"


def errors(xml: Path, reference: Path) -> dict:
    """Max relative error and lowest per-image cosine on the photographs, compiled with OpenVINO's plain
    defaults and with the file's config."""
    import openvino as ov

    inputs, refs, _ = load_reference(reference)
    index = next(i for i, s in enumerate(inputs) if s.name == "photos")
    x, want = np.concatenate(inputs[index].batches), refs[index].reshape(len(refs[index]), -1)
    core, out = ov.Core(), {}
    config = json.loads(config_path(xml).read_text())["CPU"]
    for how, settings in (("defaults", {}), ("config", config)):
        compiled = core.compile_model(str(xml), "CPU", settings)
        got = np.concatenate([np.asarray(compiled(x[i:i + 1])[compiled.outputs[0]]).reshape(1, -1)
                              for i in range(len(x))])
        cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
        out[how] = {"precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
                    "max_rel": float(np.abs(got - want).max() / np.abs(want).max()),
                    "min_cosine": float(cos.min()), "top1_agreement": float((got.argmax(1) == want.argmax(1)).mean())}
    out["config_file"] = config
    return out


def main() -> None:
    args = parse_args()
    if not cpu_has_bf16():
        raise SystemExit("this CPU has no bf16 arithmetic (AMX-BF16 or AVX512-BF16): nothing to measure")
    out = {"benchmark": "openvino_bf16", "threads": args.threads, "rounds": args.rounds,
           "openvino_cpu_default": cpu_default_precision(), "versions": versions("openvino", "nncf"), "models": {}}
    jobs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            folder = Path(tmp) / name
            torch.manual_seed(0)
            model = create_model(name)
            reestimate_bn(model, sample_photos(Preprocess(), 64, seed=1))
            shape = (1, *model_info(name).input_size)
            report = cnnexport.export(model, shape, folder, name=name, formats=("openvino",), int8=True,
                                      calib="samples", int8_min_cosine=0.0)
            keys = ("passed", "precision", "max_rel", "cosine", "cosine_mean", "bf16_check", "tolerance_rule")
            checks = {e["artifact"]: {k: e.get(k) for k in keys} for e in report["equivalence"]}
            files = [folder / Path(a["path"]).name for a in report["artifacts"] if a["format"] == "openvino"]
            fp32 = Artifact("openvino", [folder / f for f in next(a["files"] for a in report["artifacts"]
                                                                  if a["path"].endswith(f"{name}.xml"))], "openvino")
            source = ConvertSource(prepare(model), folder / f"{name}.onnx", shape)
            bf16 = FORMATS["openvino"].module().bf16(source, fp32, folder / f"{name}.bf16.xml")
            inputs, refs, meta = load_reference(folder / "reference.npz")
            entry = checked_entry(bf16, refs, inputs, None, 1e-4, meta.get("rounding_floor"))
            checks[bf16.files[0].name] = {k: entry.get(k) for k in keys}
            files.insert(1, bf16.files[0])
            out["models"][name] = {f.name: {"check": checks.get(f.name), "errors": errors(f, folder / "reference.npz")}
                                   for f in files}
            print(name, {f: (v["errors"]["defaults"]["max_rel"], v["errors"]["config"]["max_rel"])
                         for f, v in out["models"][name].items()}, flush=True)
            macs = profile_module(create_model(name), shape).macs
            jobs += [artifact_job(f, "openvino", 1, args.threads, model=name, macs=macs) for f in files]
        timing = {"warmup": 10, "min_runs": 50, "min_time_s": 1.0, "max_time_s": 8.0}
        measured = measure(jobs, rounds=args.rounds, timing=timing, threads=[args.threads], device="cpu")
    rows = measured["rows"]
    comparisons = []
    for r in rows:
        base = next(b for b in rows if b["model"] == r["model"] and b["precision"] == "fp32")
        if r is not base:
            test = paired(r["round_medians_ms"], base["round_medians_ms"])
            comparisons.append({"model": r["model"], "precision": r["precision"], "fp32_ms": base["median_ms"],
                                "ms": r["median_ms"], "speedup": base["median_ms"] / r["median_ms"], "paired": test})
    out.update(rows=rows, machine=measured["machine"], failures=measured["failures"], comparisons=comparisons)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1, default=float) + "\n")
    for c in comparisons:
        print(c["model"], c["precision"], f"{c['fp32_ms']:.2f} -> {c['ms']:.2f} ms", f"x{c['speedup']:.2f}",
              c["paired"]["call"], flush=True)


if __name__ == "__main__":
    main()

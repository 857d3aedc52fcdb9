"""`cnnexport eval` on real labelled data, and its speed against `cnnexport bench`.

    python benchmarks/eval_bench.py [--threads 2] [--rounds 3] [--batch 8] [--images 512]

1. The digits-trained networks shipped with cnnexport (LeNet-5, shufflenet_v2_x0_5) exported to every
   format (ONNX, OpenVINO, TFLite, ncnn, ExecuTorch; int8 where the format has it, calibrated on 300
   digits training images), then evaluated by `cnnexport eval` on the 450 test digits written as a PNG
   image folder, beside PyTorch (--model). Each file's top-1 is also computed through the digits
   benchmark's own path (`load_digits` arrays -> the runtime); the two must be equal.
2. Throughput on resnet50, mobilenet_v2 and shufflenet_v2_x1_0 (ONNX Runtime fp32, random weights: only
   speed is measured): `cnnexport bench` images/s at --batch, against `cnnexport eval` end to end on the
   same file at the same batch: on preprocessed arrays (.npz, nothing to decode), on a JPEG class folder
   (decoding and resizing on the worker pool), and on the same folder through `--cache` (crops decoded by
   an earlier run). Each measurement is its own process; rounds interleave them. Twice: the runtime on
   all --threads, and on one thread fewer (a core left for decoding). The cost of decoding one image on
   one core is measured in the same run; with every core running the network it bounds the folder's
   rate (`folder_bound_over_bench`). The folder's rate gives the time a 50,000-image ImageNet
   validation run would take.

Writes benchmarks/results/eval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import cnnexport
from cnnexport.bench.jobs import artifact_job
from cnnexport.bench.schedule import measure
from cnnexport.calib import Preprocess, sample_image_paths
from cnnexport.calib.digits import load_digits, write_image_folder
from cnnexport.exporter.report_fields import versions
from cnnexport.machine import cpu_facts
from cnnexport.models import BUNDLED_WEIGHTS, create_model, model_info
from cnnexport.runtimes import load, run_nchw

RESULTS = Path(__file__).parent / "results" / "eval.json"
FORMATS = ("onnx", "openvino", "tflite", "ncnn", "executorch")
TARGET_MODELS = ("resnet50", "mobilenet_v2", "shufflenet_v2_x1_0")


def cli(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "cnnexport", *args, "--json"], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"cnnexport {' '.join(args)} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def digits_table(name: str, folder: Path, tmp: Path) -> dict:
    entry = BUNDLED_WEIGHTS[(name, "digits")]
    shape = (1, *entry.input_size)
    out = tmp / name
    report = cnnexport.export(create_model(name, weights="digits"), shape, out, name=name, formats=FORMATS,
                              int8=True, calib="digits", calib_count=300, int8_min_cosine=0.0)
    files = [out / Path(a["path"]).name for a in report["artifacts"]]
    result = cli("eval", *map(str, files), "--data", str(folder), "--model", name, "--weights", "digits")
    test = load_digits(size=shape[2], channels=shape[1])
    rows = []
    for m in result["models"]:
        row = {k: m.get(k) for k in ("name", "runtime", "precision", "top1", "top5", "top1_correct", "agreement",
                                     "disagreements", "drop_points")}
        if m["name"] != "pytorch":
            model = load(out / m["name"])
            own = int((np.concatenate([run_nchw(model, test.x_test[i:i + 1]) for i in range(len(test.y_test))])
                       .argmax(1) == test.y_test).sum())
            row["digits_path_top1_correct"] = own
            row["equal"] = own == m["top1_correct"]
        rows.append(row)
    return {"input": list(shape), "images": result["data"]["images"], "rows": rows}


def photo_folder(root: Path, count: int) -> Path:
    """``count`` JPEG crops (ImageNet-like 500x375) of the bundled photographs in 4 class folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = sample_image_paths()
    for k in range(count):
        with Image.open(paths[k % len(paths)]) as img:
            img = img.convert("RGB")
            w, h = img.size
            side = int(min(w, h) * rng.uniform(0.5, 0.9))
            x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            crop = img.crop((x0, y0, x0 + side, y0 + side * 3 // 4)).resize((500, 375), Image.BILINEAR)
            (root / f"n{k % 4:08d}").mkdir(parents=True, exist_ok=True)
            crop.save(root / f"n{k % 4:08d}" / f"{k:05d}.jpg", quality=90)
    return root


def decode_cost(folder: Path, cache: Path) -> dict:
    """Milliseconds of one core per image: decoding and preprocessing a JPEG, and reading a cached crop
    and normalising it (each the best of 3 passes over the folder)."""
    import time

    from cnnexport.calib.labelled import ImageFolder
    from cnnexport.calib.pixel_cache import PixelCache

    pre = Preprocess()
    out = {}
    for key, source in (("decode_ms_per_image", ImageFolder(folder)),
                        ("cached_ms_per_image", ImageFolder(folder, cache=PixelCache(cache)))):
        slot = np.empty((3, *pre.size), np.float32)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for i in range(len(source)):
                source._load(i, pre, slot)
            best = min(best, (time.perf_counter() - t0) / len(source))
        out[key] = best * 1e3
    return out


def throughput(args, tmp: Path) -> list[dict]:
    folder = photo_folder(tmp / "photos", args.images)
    classes = tmp / "classes.txt"
    classes.write_text("\n".join(f"n{k:08d}" for k in range(1000)) + "\n")
    cache = tmp / "cache"
    from cnnexport.calib import load_image

    x = np.stack([load_image(p, Preprocess()) for p in sorted(folder.rglob("*.jpg"))])
    npz = tmp / "inputs.npz"
    np.savez(npz, x=x, y=np.arange(len(x)) % 1000)
    cost = decode_cost(folder, cache)  # also fills the cache
    print(cost, flush=True)
    cores = len(os.sched_getaffinity(0))
    configs = [args.threads] + ([args.threads - 1] if args.threads > 1 else [])  # all cores; one left for decoding
    rows = []
    for name in TARGET_MODELS:
        shape = (1, *model_info(name).input_size)
        cnnexport.export(create_model(name), shape, tmp / name, name=name, formats=("onnx",))
        onnx = tmp / name / f"{name}.onnx"
        for threads in configs:
            common = [str(onnx), "--classes", str(classes), "--batch", str(args.batch), "--threads", str(threads)]
            runs: dict[str, list[float]] = {"bench": [], "arrays": [], "folder": [], "cached": []}
            workers = None
            for _ in range(args.rounds):  # paired by round: bench, then eval on arrays, on JPEGs, on cached crops
                measured = measure([artifact_job(onnx, "onnxruntime", args.batch, threads, model=name)], rounds=1,
                                   timing={"warmup": 3, "min_runs": 10, "min_time_s": 2.0, "max_time_s": 20.0},
                                   threads=[threads], device="cpu", ceiling=False)
                runs["bench"].append(measured["rows"][0]["images_per_s"])
                runs["arrays"].append(cli("eval", *common, "--data", str(npz))["images_per_s"])
                cold = cli("eval", *common, "--data", str(folder))
                runs["folder"].append(cold["images_per_s"])
                workers = cold["data"]["workers"]
                cached = cli("eval", *common, "--data", str(folder), "--cache", str(cache))
                assert cached["data"]["cache"]["misses"] == 0, cached["data"]["cache"]
                runs["cached"].append(cached["images_per_s"])
            bench = float(np.median(runs["bench"]))
            # What 'threads' busy runtime threads plus decoding on 'cores' cores allow, at most bench's rate.
            bound = min(1.0, cores / (threads + cost["decode_ms_per_image"] * bench / 1e3))
            row = {"model": name, "threads": threads, "workers": workers, "cores": cores,
                   **{f"{k}_images_per_s": v for k, v in runs.items()},
                   **{f"eval_{k}_over_bench_median": float(np.median([a / b for a, b in zip(runs[k], runs["bench"])]))
                      for k in ("arrays", "folder", "cached")},
                   "per_round_ratios": {k: [a / b for a, b in zip(runs[k], runs["bench"])]
                                        for k in ("arrays", "folder", "cached")},
                   "folder_bound_over_bench": bound,
                   "imagenet_50k_minutes_folder": 50000 / float(np.median(runs["folder"])) / 60,
                   "imagenet_50k_minutes_cached": 50000 / float(np.median(runs["cached"])) / 60}
            rows.append(row)
            print(name, threads, {k: round(v, 3) for k, v in row.items() if isinstance(v, float)}, flush=True)
    return {"rows": rows, **cost}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=512)
    args = parser.parse_args()
    facts = cpu_facts()
    result = {"benchmark": "eval", "threads": args.threads, "rounds": args.rounds, "batch": args.batch,
              "images": args.images, "machine": {"cpu": facts.get("cpu"), "isa": facts.get("isa")},
              "versions": versions("onnxruntime", "openvino", "ai-edge-litert", "ncnn", "executorch"),
              "digits": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = write_image_folder(tmp / "digits", "test")
        for name in ("lenet5", "shufflenet_v2_x0_5"):
            result["digits"][name] = digits_table(name, folder, tmp)
            print(name, [(r["name"], r["top1"], r.get("equal")) for r in result["digits"][name]["rows"]], flush=True)
        result["throughput"] = throughput(args, tmp)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()

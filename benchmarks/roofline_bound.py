"""Is the roofline a bound? The three target models, fp32 and int8, on every CPU runtime that has both,
measured by the product's own `cnnexport bench` (paired rounds, ceilings and memory roofs of the same
run), and each row's bound three ways:

- ``of_roofline``: the bound now (best GEMM per precision; bytes charged at the cache level that holds them);
- ``of_roofline_dram``: the same ceilings, every byte at DRAM bandwidth;
- ``of_roofline_before``: the earlier bound from this run's own measurements (numpy's sgemm alone, every
  byte at DRAM; no int8 bound at all).

A row "beats" a bound when it ran faster than it by more than its own round spread.

    python benchmarks/roofline_bound.py [--threads 2] [--rounds 5] [--models resnet50,mobilenet_v2,shufflenet_v2_x1_0]

Writes benchmarks/results/roofline_bound.json (a model measured before, at the same threads and rounds,
is kept unless named again).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cnnexport
from cnnexport.calib import Preprocess, sample_photos
from cnnexport.models import create_model

from _common import reestimate_bn

RESULTS = Path(__file__).parent / "results" / "roofline_bound.json"
CLI = [sys.executable, "-m", "cnnexport"]


def _beats(of: float | None, spread: float) -> bool | None:
    return None if of is None else of > 1 + spread


def summarize(result: dict, threads: int) -> list[dict]:
    """Per row: the three fractions of a bound, and whether the row beats each."""
    limits = result["limits"][str(threads)]
    numpy_gflops = max(m["gflops"] for m in limits["fp32 ceiling"]["measurements"]
                       if m["engine"] == "numpy" and m.get("gflops"))
    out = []
    for r in result["rows"]:
        if r["roofline_ms"] is None:
            continue
        dram = r["roofline_dram_ms"] / r["median_ms"]
        before = r.get("_before_ms")
        out.append({"model": r["model"], "artifact": r["artifact"], "runtime": r["runtime"],
                    "precision": r["precision"], "median_ms": r["median_ms"], "spread": r["spread"],
                    "roofline_ms": r["roofline_ms"], "of_roofline": r["of_roofline"],
                    "beats": _beats(r["of_roofline"], r["spread"]),
                    "roofline_dram_ms": r["roofline_dram_ms"], "of_roofline_dram": dram,
                    "beats_dram": _beats(dram, r["spread"]),
                    "roofline_before_ms": before, "of_roofline_before": before / r["median_ms"] if before else None,
                    "beats_before": _beats(before / r["median_ms"] if before else None, r["spread"]),
                    "ceiling_fraction": r["ceiling_fraction"], "numpy_sgemm_gflops": numpy_gflops})
    return out


def before_bound(path: Path, batch: int, precision: str, numpy_gflops: float, dram_gbs: float) -> float | None:
    """The earlier bound of a file: numpy's sgemm as the ceiling, every byte at DRAM, fp32 rows only."""
    from cnnexport.profile.onnx_profile import file_costs

    if precision != "fp32":
        return None
    costs = file_costs(path)
    if costs is None:
        return None
    return costs.roofline(batch=batch, precision=precision, ceiling_gflops=numpy_gflops,
                          bandwidth_gbs=dram_gbs).bound_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", default="resnet50,mobilenet_v2,shufflenet_v2_x1_0")
    args = parser.parse_args()
    out = {"benchmark": "roofline_bound", "threads": args.threads, "rounds": args.rounds, "models": {}}
    if RESULTS.is_file():  # models measured before (same threads and rounds) are kept unless measured again
        earlier = json.loads(RESULTS.read_text())
        if (earlier.get("threads"), earlier.get("rounds")) == (args.threads, args.rounds):
            out["models"] = earlier.get("models", {})
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            folder = Path(tmp) / model
            # as int8_speed.py: BatchNorm statistics from photographs (random ones give vanishing logits that no
            # int8 scale represents); the int8 files are here for their speed, so their check is reported only
            net = create_model(model)
            reestimate_bn(net, sample_photos(Preprocess(), 64, seed=1))
            cnnexport.export(net, (1, 3, 224, 224), folder, name=model, formats=("onnx", "openvino"), int8=True,
                             calib="samples", calib_count=64, int8_min_cosine=0.0)
            files = [folder / f"{model}{p}" for p in (".onnx", ".int8.onnx", ".xml", ".int8.xml")]
            saved = folder / "rows.json"
            subprocess.run([*CLI, "bench", *map(str, files), "--threads", str(args.threads), "--rounds",
                            str(args.rounds), "--save", str(saved), "--json"], check=True, capture_output=True)
            result = json.loads(saved.read_text())
            limits = result["limits"][str(args.threads)]
            numpy_gflops = max(m["gflops"] for m in limits["fp32 ceiling"]["measurements"]
                               if m["engine"] == "numpy" and m.get("gflops"))
            dram = result["bandwidths_gbs"][str(args.threads)]
            for r in result["rows"]:
                r["_before_ms"] = before_bound(folder / r["artifact"], r["batch"], r["precision"], numpy_gflops, dram)
            out["models"][model] = {"rows": summarize(result, args.threads), "limits": limits,
                                    "machine": result["rows"][0]["machine"],
                                    "memory_roofs": result.get("memory_roofs", {}).get(str(args.threads)),
                                    "ceilings": result.get("ceilings_by_precision", {}).get(str(args.threads))}
            out["machine"] = result["rows"][0]["machine"]
            for row in out["models"][model]["rows"]:
                before = row["of_roofline_before"]
                print(f"{row['artifact']:28s} {row['runtime']:12s} {row['median_ms']:8.2f} ms  of bound "
                      f"{row['of_roofline']:.0%} (DRAM only {row['of_roofline_dram']:.0%}, before "
                      f"{'-' if before is None else f'{before:.0%}'})", flush=True)
    rows = [r for m in out["models"].values() for r in m["rows"]]
    out["beating"] = {k: sum(bool(r[k]) for r in rows) for k in ("beats", "beats_dram", "beats_before")}
    out["rows_with_a_bound"] = {"now": sum(r["of_roofline"] is not None for r in rows),
                                "before": sum(r["of_roofline_before"] is not None for r in rows)}
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({"beating": out["beating"], "rows_with_a_bound": out["rows_with_a_bound"]}))


if __name__ == "__main__":
    main()

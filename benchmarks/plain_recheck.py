"""Re-measure the zoo study's "slower than plain" calls with more rounds.

    python benchmarks/plain_recheck.py [--rounds 7] [--threads 2]

The study measures every model in 3 interleaved rounds, and the paired test calls a pair slower when
all 3 rounds agree. For two files of equal speed each round's sign is a coin toss, so 3 agreeing rounds
happen by chance in 1 pair of 8 in each direction: about 23 of the study's 186 pairs. This script takes
every pair the committed study (results/zoo.json) called slower and measures it again with
`cnnexport bench MODEL --plain` over --rounds rounds (ours and the plain file interleaved, as in the
study), where the paired test calls a split no likelier by chance than 3 of 3 (`rows.call_for`).

Writes benchmarks/results/plain_recheck.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from report import plain_pairs

from cnnexport.bench.rows import paired
from cnnexport.exporter.report_fields import versions
from cnnexport.machine import cpu_facts

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    zoo = json.loads((RESULTS / "zoo.json").read_text())
    pairs = plain_pairs(zoo)
    slower = [p for p in pairs if p["call"] == "slower"]
    by_model: dict[str, list[dict]] = {}
    for p in slower:
        by_model.setdefault(p["model"], []).append(p)
    facts = cpu_facts()
    out = {"benchmark": "plain_recheck", "rounds": args.rounds, "threads": args.threads, "batch": 1,
           "study_rounds": zoo["rounds"], "study_pairs": len(pairs), "study_slower": len(slower),
           "machine": {"cpu": facts.get("cpu"), "isa": facts.get("isa")},
           "versions": versions("onnxruntime", "openvino", "ai-edge-litert"), "pairs": [], "failures": []}
    for model, pairs in by_model.items():
        runtimes = sorted({p["runtime"] for p in pairs})
        cmd = [sys.executable, "-m", "cnnexport", "bench", model, "--runtime", ",".join(runtimes), "--plain",
               "--threads", str(args.threads), "--rounds", str(args.rounds), "--no-ceiling", "--json"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            out["failures"].append(f"{model}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
            continue
        rows = json.loads(proc.stdout)["rows"]
        for p in pairs:
            ours = next(r for r in rows if not r.get("plain") and r["runtime"] == p["runtime"]
                        and r["precision"] == "fp32")
            plain = next(r for r in rows if r.get("plain") and r["runtime"].split(" ")[0] == p["runtime"])
            test = paired(ours["round_medians_ms"], plain["round_medians_ms"])
            out["pairs"].append({"model": model, "runtime": p["runtime"], "study_median_ratio": p["median_ratio"],
                                 "ours_ms": ours["round_medians_ms"], "plain_ms": plain["round_medians_ms"],
                                 **{k: test[k] for k in ("median_ratio", "min_ratio", "max_ratio", "slower_rounds",
                                                         "faster_rounds", "call")}})
            print(out["pairs"][-1]["model"], p["runtime"], round(p["median_ratio"], 4), "->",
                  round(test["median_ratio"], 4), test["call"], flush=True)
    (RESULTS / "plain_recheck.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

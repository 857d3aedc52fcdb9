"""Recompute the roofline columns of committed results after a change to the bound's model (not to its
limits): each row's bound from its model's layer costs (a fresh fp32 ONNX export, the graph the run's
files were made from) and the limits measured in that row's own run (its ceiling, its bandwidth, the
file's memory roofs). Latencies, limits and every other figure stay as measured.

    python benchmarks/rebound.py [results/zoo.json results/targets_resnet50.json ...]

Check that the graph is the one the run measured: each row's memory access cost (ShuffleNetV2's MAC,
which the change does not touch) is recomputed too; a model whose value differs keeps its old columns
and is named. The zoo's summary (Spearman, matched-MACs pairs) and the bound warning are re-derived, and
the file records ``bound_recomputed`` (when, and what changed in the model).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pickle
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
DEFAULT = [HERE / "results" / "zoo.json", *sorted((HERE / "results").glob("targets_*.json"))]
CHANGE = ("fused groups (a convolution with the element-wise ops after it moves its inputs, weights, residual and one "
          "output) and Winograd F(6x6,3x3)'s multiplications for dense 3x3 stride-1 convolutions on ncnn")
COLUMNS = ("roofline_ms", "of_roofline", "roofline_dram_ms", "beats_bound")


def model_costs(name: str, folder: Path):
    """The roofline's layer costs of ``name``'s fp32 ONNX file as cnnexport exports it."""
    from cnnexport.exporter.pipeline import export
    from cnnexport.profile.onnx_profile import file_costs
    from cnnexport.models import create_model, model_info

    shape = (1, *model_info(name).input_size)
    export(create_model(name), shape, folder / name, name=name, formats=["onnx"], photos=False)
    return file_costs(folder / name / f"{name}.onnx")


def roofs_of(result: dict, threads: int) -> list[dict]:
    roofs = result.get("memory_roofs") or []
    return roofs.get(str(threads), roofs.get(threads, [])) if isinstance(roofs, dict) else roofs


def rebound(result: dict, costs: dict, skipped: set[str]) -> int:
    """Recompute the rows' roofline columns in place; the number of rows changed."""
    from cnnexport.bench.rows import bound_fields

    changed = 0
    for row in [*result.get("rows", []), *result.get("plain_rows", [])]:
        if row.get("roofline_ms") is None or row["model"] in skipped:
            continue
        if costs.get(row["model"]) is None:  # the fresh export's costs are incomplete: nothing to check them by
            skipped.add(row["model"])
            continue
        fields = bound_fields(costs[row["model"]], runtime=row["runtime"], device=row["device"], batch=row["batch"],
                              precision=row["precision"], ceiling_gflops=row["ceiling_gflops"],
                              bandwidth_gbs=row["bandwidth_gbs"], memory_roofs=roofs_of(result, row["threads"]),
                              median_ms=row["median_ms"], round_medians_ms=row["round_medians_ms"])
        if abs(fields["memory_access_bytes"] - row["memory_access_bytes"]) > 1e-6 * row["memory_access_bytes"]:
            skipped.add(row["model"])
            continue

        old = row["roofline_ms"]
        row.update({k: fields[k] for k in COLUMNS})
        changed += fields["roofline_ms"] != old
    for row in [*result.get("rows", []), *result.get("plain_rows", [])]:
        if row["model"] in skipped:  # its bound under the old model would sit beside the others: left empty
            row.update(dict.fromkeys(COLUMNS))
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path, default=DEFAULT)
    parser.add_argument("--cache", type=Path, default=None,
                        help="a pickle of the models' layer costs: read when present, else written")
    args = parser.parse_args()
    from cnnexport._atomic import write_json
    from cnnexport.bench.rows import bound_warnings
    from cnnexport.study.analysis import zoo_summary

    results = {path: json.loads(path.read_text()) for path in args.files}
    models = sorted({r["model"] for res in results.values() for r in res.get("rows", []) if r.get("roofline_ms")})
    costs: dict = pickle.loads(args.cache.read_bytes()) if args.cache and args.cache.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="rebound-") as tmp:
        for i, name in enumerate(models, 1):
            if name not in costs:
                print(f"[{i}/{len(models)}] {name}", file=sys.stderr, flush=True)
                costs[name] = model_costs(name, Path(tmp))
    if args.cache:
        args.cache.write_bytes(pickle.dumps(costs))
    for path, result in results.items():
        skipped = set((result.get("bound_recomputed") or {}).get("models_left_alone", []))  # an earlier run's
        changed = rebound(result, costs, skipped)
        rows = [*result.get("rows", []), *result.get("plain_rows", [])]
        old = [w for w in result.get("warnings", []) if "ran faster than their roofline bound" in w]
        result["warnings"] = [w for w in result.get("warnings", []) if w not in old] + bound_warnings(rows)
        if result.get("study") == "zoo":
            result["summary"] = {f"batch{b}": zoo_summary(result["rows"], b) for b in result["batches"]}
        result["bound_recomputed"] = {"date": datetime.date.today().isoformat(), "change": CHANGE,
                                      "models_left_alone": sorted(skipped)}
        write_json(path, result)
        print(f"{path.name}: {changed} rows re-bounded; {sum(bool(r.get('beats_bound')) for r in rows)} beat their "
              f"bound; left alone (graph differs): {sorted(skipped) or 'none'}")


if __name__ == "__main__":
    main()

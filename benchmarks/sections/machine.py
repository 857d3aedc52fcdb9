"""REPORT.md: the machines the results were measured on, and the protocol they followed."""

from __future__ import annotations

from cnnexport.bench.rows import CALL_RULE

from .common import all_rows


def machine_section(results: list[dict]) -> list[str]:
    m = next((r["machine"] for r in results if r and "machine" in r), None)
    if not m:
        return []
    isa = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m["isa"].items() if k in
                    ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile"))
    return ["## Machine", "", f"{m['cpu']}, {m['logical_cores']} logical cores, {m['machine']}; {isa}. "
            f"Python {m['python']}, {m['os']}. No GPU was lent to the session that measured these figures, so "
            "every row is CPU; `--device cuda` rows appear when the same commands run on a CUDA machine.", ""]


def protocol_section(results: list) -> list[str]:
    rows = [r for d in results for r in all_rows(d)]
    old = [r for r in rows if r.get("statistics") != "pooled"]
    statistics = ("A row's median, p90, p99, min, mean and std are those of every round's timed runs pooled, "
                  "so they describe the same runs" if not old else
                  f"{len(old)} of the {len(rows)} rows committed here were measured before cnnexport pooled the "
                  "rounds: their median is the median of the round medians and their p90, p99, min, mean and std "
                  "those of one round, so this page quotes their medians, spreads and ratios only; rows measured "
                  "since (`statistics: pooled`) take every distribution figure from all rounds' timed runs pooled")
    return ["## Protocol", "",
            "Warm-up runs are not counted and the first run is reported on its own; then at least `--runs` timed "
            "runs and `--min-time` seconds (a slow configuration may stop at `--max-time` once it has 10 runs). "
            "Each runtime runs in a fresh process per round "
            "(ONNX Runtime's spinning is off as well), rounds are interleaved across runtimes and their order "
            f"rotates, so no runtime slows another or always runs first. {statistics}. A row's spread is "
            "(max - min) / median of its round medians, and two configurations are ranked "
            "only when the paired test calls it (round i of one against round i of the other: " + CALL_RULE
            + "). Every JSON row records runtime versions, CPU model, "
            "ISA flags and the GPU name (none here). The compute ceiling of a precision is the best of several "
            "GEMMs measured in the same run with the same thread count (numpy's, and a MatMul model on ONNX Runtime "
            "and OpenVINO; int8 on the VNNI/AMX paths), repeated until stable, cross-checked against the ISA peak; "
            "a row's fraction of it is 2 x MACs / latency / ceiling. Memory bandwidth is measured per cache level "
            "(copies at working sets that fit L1, L2 and L3) and from DRAM (a streaming add over at least 4x the "
            "last-level cache), with the same threads in the same run. A row's roofline bound is the sum over "
            "the fp32 ONNX graph's layer groups (a convolution or matrix product with the element-wise ops a "
            "runtime fuses into it: activation, residual add) of max(2 x MACs / ceiling, bytes / bandwidth of "
            "the smallest level that holds the group's working set), bytes = the group's inputs, weights, "
            "residual and one output at the row's precision; on ncnn, which computes dense 3x3 "
            "stride-1 convolutions with Winograd, those layers are charged F(6x6,3x3)'s multiplications (5.06x "
            "fewer than MACs). `of_roofline` = bound / median; a row faster than its bound by more than its "
            "round spread is flagged (`beats_bound`). The memory access column stays ShuffleNetV2's cost: every "
            "op's inputs, outputs and weights.", ""]

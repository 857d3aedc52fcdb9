"""`cnnexport report`: rows from two machines merged (an incomplete row and a row of another protocol
version named and skipped), the report's tables from fixed rows, and its errors."""

import json

import pytest
from click.testing import CliRunner

from cnnexport.cli import cli
from cnnexport.study.analysis import micronet_name
from cnnexport.study.paper import GUIDELINES
from cnnexport.study.report import guideline_verdicts, merge_rows, paper_verdicts, spearman_rows, write_report

AVX2 = {"cpu": "AMD EPYC", "logical_cores": 2, "isa": {"avx2": True, "fma": True, "avx512f": False}}
AVX512 = {"cpu": "Intel Xeon", "logical_cores": 2, "isa": {"avx2": True, "fma": True, "avx512f": True}}


def _row(model, machine, medians, *, macs=None, runtime="onnxruntime", roofline=None, **extra):
    return {"model": model, "artifact": f"{model}.onnx", "runtime": runtime, "precision": "fp32", "batch": 1,
            "threads": 2, "device": "cpu", "median_ms": sorted(medians)[len(medians) // 2],
            "round_medians_ms": medians, "machine": machine, "macs": macs, "roofline_ms": roofline,
            "memory_access_bytes": 10 * roofline if roofline else None, "ceiling_gflops": 100.0,
            "bandwidth_gbs": 20.0, **extra}


def _g2_rows(machine, times):
    """G2 at x1: g=1 fastest ... g=8 slowest when ``times`` rises."""
    return [_row(micronet_name(net, 1), machine, [t, t * 1.01, t * 0.99], macs=1e8)
            for net, t in zip(GUIDELINES["G2"], times)]


ZOO = [("mobilenet_v1_0_25", 41e6, 1.0), ("shufflenet_v2_x0_5", 41e6, 1.6), ("shufflenet_v1_g3_0_5", 38e6, 2.5),
       ("mobilenet_v2", 300e6, 4.0), ("resnet18", 1.8e9, 9.0), ("resnet50", 4.1e9, 30.0)]


def _zoo_rows(machine, scale):
    return [_row(m, machine, [t * scale] * 3, macs=macs, roofline=t * scale * 0.8) for m, macs, t in ZOO]


@pytest.fixture()
def two_machines(tmp_path):
    a = tmp_path / "avx2.json"
    rows_a = _g2_rows(AVX2, [1.0, 1.2, 1.5, 2.0]) + _zoo_rows(AVX2, 2.0)
    incomplete = _row("resnet50", AVX2, [1.0]) | {"round_medians_ms": None}
    a.write_text(json.dumps({"study": "zoo", "rows": rows_a + [incomplete]}))
    b = tmp_path / "avx512.json"
    rows_b = _g2_rows(AVX512, [2.0, 1.5, 1.2, 1.0]) + _zoo_rows(AVX512, 1.0)
    other = _row("vgg11", AVX512, [5.0, 5.0]) | {"protocol": 99}
    b.write_text(json.dumps({"rows": rows_b + [other]}))
    return a, b


def test_merging_rows_of_two_machines_skips_and_names_bad_rows(two_machines):
    merged = merge_rows(list(two_machines))
    assert [m.label for m in merged.machines] == ["AMD EPYC avx2", "Intel Xeon avx512"]
    assert [len(m.rows) for m in merged.machines] == [4 + len(ZOO)] * 2
    assert any("avx2.json: 1 row(s) skipped: incomplete (no round_medians_ms)" in s for s in merged.skipped)
    assert any("avx512.json: 1 row(s) skipped: protocol version 99" in s for s in merged.skipped)
    # the same file twice: its rows are read once
    again = merge_rows([two_machines[0], two_machines[0]])
    assert len(again.machines[0].rows) == 4 + len(ZOO) and "already read" in again.skipped[-1]


def test_a_flag_older_rows_did_not_record_does_not_split_a_machine(two_machines, tmp_path):
    """Rows gained avx512_bf16 on 2026-12-07: older rows of the same CPU lack the key, and are the same machine;
    a flag both recorded that differs still keeps machines apart."""
    newer = tmp_path / "newer.json"
    bf16 = {**AVX512, "isa": {**AVX512["isa"], "avx512_bf16": True}}
    newer.write_text(json.dumps({"rows": _zoo_rows(bf16, 1.1)}))
    merged = merge_rows([*two_machines, newer])
    assert [m.label for m in merged.machines] == ["AMD EPYC avx2", "Intel Xeon avx512"]
    xeon = merged.machines[1]
    assert len(xeon.rows) == 4 + 2 * len(ZOO) and "avx512_bf16" in xeon.isa
    assert xeon.unrecorded == {"avx512_bf16": 4 + len(ZOO)}
    write_report(merged, tmp_path / "out", plots=False)
    assert f"avx512_bf16 (unrecorded in {4 + len(ZOO)} of {4 + 2 * len(ZOO)} rows)" in (
        tmp_path / "out" / "REPORT.md").read_text()
    other = tmp_path / "other.json"  # the same CPU name without AVX-512: another machine
    other.write_text(json.dumps({"rows": _zoo_rows({**AVX512, "isa": {"avx2": True, "avx512f": False}}, 3.0)}))
    assert len(merge_rows([*two_machines, other]).machines) == 3


def test_report_tables_from_fixed_rows(two_machines, tmp_path):
    merged = merge_rows(list(two_machines))
    verdicts = {(v["machine"], v["guideline"]): v for v in guideline_verdicts(merged)}
    assert verdicts[("AMD EPYC avx2", "G2")]["verdict"] == "holds"
    assert verdicts[("AMD EPYC avx2", "G2")]["slowdown"] == pytest.approx(2.0)
    assert verdicts[("Intel Xeon avx512", "G2")]["verdict"] == "does not hold"
    assert paper_verdicts()["GPU"]["G2"] == f"holds ({2451 / 634:.2f}x)"
    table = {s["machine"]: s for s in spearman_rows(merged)}
    assert set(table) == {"AMD EPYC avx2", "Intel Xeon avx512"}
    s = table["AMD EPYC avx2"]
    assert s["models"] == len(ZOO) and s["roofline"] == pytest.approx(1.0)  # the bound ranks latency exactly
    assert s["macs"] < 1.0  # the three ~40 MMAC networks are out of MACs order
    assert s["budgets"]["40"]["fastest"] == "mobilenet_v1_0_25"
    result = write_report(merged, tmp_path / "out")
    text = (tmp_path / "out" / "REPORT.md").read_text()
    assert "| AMD EPYC avx2 | onnxruntime | 1 | holds (2.00x) |" in text
    assert f"| paper GPU |  |  | holds ({2451 / 634:.2f}x) |" in text  # only G2 was measured: its column
    assert "protocol version 99" in text
    assert result["plots"] == ["latency_vs_macs.png", "latency_vs_roofline.png"]
    assert (tmp_path / "out" / "latency_vs_roofline.png").read_bytes()[:4] == b"\x89PNG"


def test_report_cli_and_its_errors(two_machines, tmp_path):
    out = tmp_path / "rep"
    result = CliRunner().invoke(cli, ["report", *map(str, two_machines), "-o", str(out), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "2 machine(s)" in result.stdout and "skipped" in result.stdout and (out / "REPORT.md").is_file()
    assert not (out / "latency_vs_macs.png").exists()
    missing = CliRunner().invoke(cli, ["report", str(tmp_path / "none.json"), "-o", str(out)])
    assert missing.exit_code != 0 and "does not exist" in missing.stderr and "Traceback" not in missing.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    corrupt = CliRunner().invoke(cli, ["report", str(bad), "-o", str(out)])
    assert corrupt.exit_code != 0 and "is not a JSON file of rows" in corrupt.stderr
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"rows": [{"model": "x"}]}))
    nothing = CliRunner().invoke(cli, ["report", str(empty), "-o", str(tmp_path / "never")])
    assert nothing.exit_code == 2 and "no usable rows" in nothing.stderr
    assert not (tmp_path / "never").exists()


def test_bench_rows_get_a_latency_table_and_each_runs_own_ceiling(tmp_path):
    """`bench --save` rows (no micro-networks, fewer than 5 models) still get the latency table; two rows
    files of one machine show both measured ceilings, and each row's fraction is of its own run's."""
    first, second = tmp_path / "monday.json", tmp_path / "tuesday.json"
    first.write_text(json.dumps({"rows": [_row("resnet18", AVX2, [9.0, 9.5, 9.2], roofline=4.5,
                                               ceiling_fraction=0.41, of_roofline=0.5)]}))
    second.write_text(json.dumps({"rows": [_row("mobilenet_v2", AVX2, [4.0, 4.1, 4.0], ceiling_gflops=80.0,
                                                ceiling_fraction=0.2, limits_noisy=True, of_roofline=0.3),
                                           _row("mobilenet_v2", AVX2, [9.0] * 3, batch=4, calls_per_batch=4,
                                                ceiling_gflops=80.0)]}))
    write_report(merge_rows([first, second]), tmp_path / "r", plots=False)
    text = (tmp_path / "r" / "REPORT.md").read_text()
    assert "## Latency" in text
    latency = text.split("## Latency", 1)[1]
    assert "| resnet18 | resnet18.onnx | onnxruntime | fp32 | 1 | 2 | 9.20 | 5% | 41% | 50% | monday.json |" in latency
    assert "| mobilenet_v2 | mobilenet_v2.onnx | onnxruntime | fp32 | 1 | 2 | 4.00 | 2% | 20%? | 30%? |" in latency
    assert "| 4 (4 calls) |" in latency
    assert "100 (monday.json); 80 (tuesday.json)" in text  # both ceilings, each named by its file

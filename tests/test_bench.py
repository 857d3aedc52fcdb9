"""The latency protocol on a fake timer, the benchmark matrix's derived figures, and `cnnexport bench`
on real exported files and on a zoo model name."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import cnnexport
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnexport.bench.latency import measure, summarize
from cnnexport.bench.jobs import Job
from cnnexport.bench.rows import ROW_FIELDS, call_for, chance_of_call, paired, pick, rows_from, spread
from cnnexport.bench.schedule import run_jobs
from cnnexport.cli import cli
from cnnexport.cli.render.bench import _ranking
from cnnexport.models import create_model
from conftest import run_cli


class FakeClock:
    """Each call of the measured function advances the clock by the next scripted duration."""

    def __init__(self, durations_s):
        self.now, self.durations, self.calls = 0.0, list(durations_s), 0

    def timer(self):
        return self.now

    def fn(self):
        self.now += self.durations[self.calls % len(self.durations)]
        self.calls += 1


def test_protocol_statistics_on_a_fake_timer():
    rng = np.random.default_rng(3)
    timed = rng.uniform(0.001, 0.005, 60)
    first, warmup = 0.5, [0.2] * 4
    clock = FakeClock([first, *warmup, *timed])
    t = measure(clock.fn, warmup=4, min_runs=60, min_time_s=0.0, timer=clock.timer)
    ms = timed * 1e3
    assert t.runs == 60 and clock.calls == 65  # first + 4 warm-up + 60 timed
    assert t.first_ms == pytest.approx(first * 1e3)  # the first run is reported alone, not in the statistics
    assert t.median_ms == pytest.approx(np.median(ms))
    assert t.p90_ms == pytest.approx(np.percentile(ms, 90)) and t.p99_ms == pytest.approx(np.percentile(ms, 99))
    assert t.min_ms == pytest.approx(ms.min()) and t.mean_ms == pytest.approx(ms.mean())
    assert t.std_ms == pytest.approx(ms.std(ddof=1))
    assert max(warmup) * 1e3 > t.p99_ms  # warm-up runs are not counted


def test_protocol_runs_until_both_minimum_runs_and_minimum_time():
    clock = FakeClock([0.01])
    t = measure(clock.fn, warmup=0, min_runs=5, min_time_s=1.0, timer=clock.timer)
    assert t.runs == 100  # 5 runs are only 0.05 s: the minimum time decides
    clock = FakeClock([0.5])
    t = measure(clock.fn, warmup=0, min_runs=50, min_time_s=1.0, max_time_s=8.0, floor_runs=10, timer=clock.timer)
    assert t.runs == 16  # a slow model stops at max_time once it has its floor of runs
    clock = FakeClock([2.0])
    t = measure(clock.fn, warmup=0, min_runs=50, min_time_s=1.0, max_time_s=1.0, floor_runs=10, timer=clock.timer)
    assert t.runs == 10


def _job(runtime, precision, medians, macs=1e9, batch=1, threads=2):
    job = Job("m", runtime, precision, batch, threads, {"kind": "artifact", "path": f"/x/m.{runtime}.{precision}"},
              macs=macs)
    job.medians, job.samples_ms = list(medians), list(medians)
    job.result = {"runtime": runtime, "version": "1", "first_ms": 1.0, "runs": 50, "median_ms": float(np.median(medians)),
                  "p90_ms": 1.0, "p99_ms": 1.0, "min_ms": 1.0, "mean_ms": 1.0, "std_ms": 0.1}
    return job


def test_rows_derive_throughput_ceiling_fraction_and_speedups():
    jobs = [_job("torch", "fp32", [100, 110, 90]), _job("onnxruntime", "fp32", [40, 50, 45]),
            _job("onnxruntime", "int8", [20, 25, 30])]
    rows = rows_from(jobs, machine={"cpu": "x"}, ceilings={2: 100.0}, baseline="torch")
    assert all(set(ROW_FIELDS) <= set(r) for r in rows)
    torch_row, ort, int8 = rows
    assert ort["gmacs_per_s"] == pytest.approx(1e9 / 0.045 / 1e9)
    assert ort["ceiling_fraction"] == pytest.approx(2 * ort["gmacs_per_s"] / 100.0)
    assert ort["speedup"] == pytest.approx(100 / 45) and torch_row["speedup"] == pytest.approx(1.0)
    assert int8["int8_speedup"] == pytest.approx(45 / 25) and ort["int8_speedup"] is None
    assert ort["spread"] == pytest.approx(spread([40, 50, 45])) == pytest.approx(10 / 45)


def test_int8_rows_leave_the_fraction_of_the_fp32_ceiling_empty():
    """The sgemm ceiling is fp32's: an int8 (VNNI, AMX) row measured against it read 194%."""
    rows = rows_from([_job("onnxruntime", "fp32", [40]), _job("onnxruntime", "int8", [5])], machine={},
                     ceilings={2: 100.0}, bandwidths={2: 10.0})
    assert rows[0]["ceiling_fraction"] > 0 and rows[1]["ceiling_fraction"] is None
    assert rows[1]["gmacs_per_s"] > 0  # the throughput itself is still shown


def test_a_limit_is_measured_until_stable_and_a_noisy_one_is_flagged():
    """The issue's five sgemm readings under load (26..214 GFLOP/s): repeated to the cap, the best kept,
    flagged noisy, a warning naming the spread, and the rows at that thread count marked."""
    from cnnexport.bench.schedule import LIMIT_MAX_REPEATS, limits_warnings, stable_limit

    readings = iter([26.0, 48.0, 99.0, 127.0, 214.0, 60.0, 70.0])
    noisy = stable_limit(lambda: {"gflops": next(readings)}, "gflops")
    assert len(noisy["values"]) == LIMIT_MAX_REPEATS and noisy["gflops"] == 214.0
    assert noisy["noisy"] and not noisy["stable"] and noisy["spread"] == pytest.approx((214 - 26) / 214)
    quiet_readings = iter([95.0, 100.0, 99.0, 98.0])
    quiet = stable_limit(lambda: {"gflops": next(quiet_readings)}, "gflops")
    assert quiet["values"] == [95.0, 100.0, 99.0] and quiet["stable"] and not quiet["noisy"]
    (line,) = limits_warnings({1: {"fp32 ceiling": quiet}, 2: {"fp32 ceiling": noisy}})
    assert "fp32 ceiling at 2 thread(s) read 26-214 GFLOP/s" in line and "busy" in line
    rows = rows_from([_job("onnxruntime", "fp32", [40], threads=1), _job("onnxruntime", "fp32", [40], threads=2)],
                     machine={}, ceilings={1: 100.0, 2: 214.0}, noisy_limits={2})
    assert [r["limits_noisy"] for r in rows] == [False, True]


def test_a_limits_file_is_measured_once_per_cpu_and_threads_and_read_after(tmp_path, monkeypatch):
    """CNNEXPORT_CPU_LIMITS: a limit the file lacks is measured and added; one it holds for this CPU is read
    (marked from_file); another CPU's file is measured again and replaced; a file that is not one is refused."""
    from cnnexport.bench.limits_file import CPU_LIMITS_ENV, cached_limit
    from cnnexport.bench.schedule import bandwidth
    from cnnexport.errors import UsageError

    path = tmp_path / "limits.json"
    monkeypatch.setenv(CPU_LIMITS_ENV, str(path))
    calls = []

    def measure(value):
        return lambda: calls.append(value) or {"gflops": value}

    assert cached_limit(1, "fp32 ceiling", measure(100.0)) == {"gflops": 100.0}
    assert cached_limit(1, "fp32 ceiling", measure(5.0)) == {"gflops": 100.0, "from_file": str(path)}
    assert cached_limit(2, "fp32 ceiling", measure(180.0))["gflops"] == 180.0  # another thread count: measured
    assert calls == [100.0, 180.0]
    first = bandwidth(1)  # a real measurement, then the same figures from the file
    assert "from_file" not in first and bandwidth(1) == {**first, "from_file": str(path)}
    saved = json.loads(path.read_text())
    assert set(saved["threads"]) == {"1", "2"} and saved["machine"]["logical_cores"] >= 1
    saved["machine"]["cpu"] = "another CPU"
    path.write_text(json.dumps(saved))
    assert cached_limit(1, "fp32 ceiling", measure(90.0)) == {"gflops": 90.0}  # not another CPU's figure
    assert set(json.loads(path.read_text())["threads"]) == {"1"}  # the other CPU's entries are gone
    path.write_text("not json")
    with pytest.raises(UsageError, match="CNNEXPORT_CPU_LIMITS=.* is not a file of this CPU's limits"):
        cached_limit(1, "fp32 ceiling", measure(1.0))
    monkeypatch.delenv(CPU_LIMITS_ENV)
    assert cached_limit(1, "fp32 ceiling", measure(7.0)) == {"gflops": 7.0}  # unset: always measured


def test_pick_ranks_by_the_paired_rounds():
    a, b, c = _job("onnxruntime", "fp32", [10, 11, 12]), _job("openvino", "fp32", [13, 14, 15]), \
        _job("tflite", "fp32", [11.5, 10.5, 13.5])
    rows = rows_from([a, b], machine={}, baseline=None)
    (p,) = pick(rows)
    assert p["runtime"] == "onnxruntime" and p["beyond_noise"] and p["margin"] == pytest.approx(14 / 11)
    assert p["paired"]["call"] == "faster" and p["paired"]["faster_rounds"] == 3
    assert _ranking(p) == "faster in 3 of 3 paired rounds, p 0.25"  # what bench prints, with its evidence
    (p,) = pick(rows_from([a, c], machine={}, baseline=None))
    assert p["runtime"] == "onnxruntime" and p["beyond_noise"] is False  # round 2: 11 > 10.5, the rounds disagree
    assert _ranking(p) == "faster in 2 of 3 paired rounds, p 1: a tie here"
    # two rounds that agree cannot confirm a ranking (p 0.5): unconfirmed, not a tie
    (p,) = pick(rows_from([_job("onnxruntime", "fp32", [10, 11]), _job("openvino", "fp32", [13, 14])], machine={},
                          baseline=None))
    assert p["runtime"] == "onnxruntime" and p["beyond_noise"] is None and p["paired"]["faster_rounds"] == 2

    # over thread counts: the pick names the runtime and the count that won, the runner-up its own
    one, two = _job("openvino", "fp32", [9, 9.5, 9.2], threads=1), _job("openvino", "fp32", [12, 12, 12], threads=2)
    (p,) = pick(rows_from([a, one, two], machine={}, baseline=None))
    assert (p["runtime"], p["threads"], p["thread_counts"]) == ("openvino", 1, [1, 2])
    assert (p["runner_up"], p["runner_up_threads"], p["beyond_noise"]) == ("m.onnxruntime.fp32", 2, True)


def test_paired_test_sees_a_small_gap_through_a_known_drift():
    drift = [1.0, 1.25, 1.5, 1.2, 0.9]  # the machine's speed moves between rounds by far more than the gap
    rng = np.random.default_rng(0)
    a = [10 * d * (1 + rng.uniform(-0.005, 0.005)) for d in drift]
    b = [10 * d * 1.05 * (1 + rng.uniform(-0.005, 0.005)) for d in drift]  # 5% slower in every round
    assert max(a) > min(b)  # unpaired, the ranges overlap: no call is possible that way
    test = paired(a, b)
    assert test["call"] == "faster" and test["faster_rounds"] == 5
    assert test["median_ratio"] == pytest.approx(1 / 1.05, rel=0.02)
    assert test["min_ratio"] <= test["median_ratio"] <= test["max_ratio"]
    assert paired(b, a)["call"] == "slower"
    # one round of five against: a tie (equal speeds split 4 to 1 three times in eight)
    flipped = list(a)
    flipped[2] = b[2] * 1.01
    assert paired(flipped, b)["call"] is None and paired(flipped, b)["slower_rounds"] == 1
    # one of six against is called (p 0.22, below 3 of 3's 0.25), two of six are not
    assert paired([*flipped, a[0]], [*b, b[0]])["call"] == "faster"
    assert paired([*flipped, b[0] * 1.01], [*b, b[0]])["call"] is None
    # two rounds never call, however they split; a single round neither
    assert paired(a[:2], b[:2])["call"] is None and paired(a[:1], b[:1])["call"] is None
    # the sign test: how often equal speeds split the rounds this unevenly by chance
    assert test["p_value"] == pytest.approx(2 / 32) and paired(a[:3], b[:3])["p_value"] == pytest.approx(0.25)
    assert paired(flipped, b)["p_value"] == pytest.approx(2 * 6 / 32)  # 4 of 5
    flipped[3] = b[3] * 1.01
    assert paired(flipped, b)["p_value"] == pytest.approx(2 * 16 / 32)  # 3 of 5: no evidence either way
    assert paired(a, a)["p_value"] == 1.0


def test_the_paired_rule_never_calls_noise_more_often_than_three_unanimous_rounds():
    # whatever --rounds a user picks, equal speeds are called in one direction at most 1 time in 8
    assert chance_of_call(3) == pytest.approx(1 / 8)
    assert all(chance_of_call(n) <= 1 / 8 for n in range(2, 41))
    assert chance_of_call(2) == 0  # two rounds never call
    assert call_for(7, 2) == "slower" and call_for(2, 7) == "faster" and call_for(6, 3) is None


def test_committed_results_carry_todays_calls():
    """A stored call is what the rule says of its rounds (after a change to the rule: benchmarks/recall.py)."""
    stale = []

    def walk(node, where):
        if isinstance(node, dict):
            if {"slower_rounds", "faster_rounds", "call"} <= node.keys() \
                    and call_for(node["slower_rounds"], node["faster_rounds"]) != node["call"]:
                stale.append(where)
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    files = sorted(results.glob("**/*.json"))
    for path in files:
        walk(json.loads(path.read_text()), path.name)
    assert files and not stale


def _fake_worker(log, fail=()):
    def worker(spec):
        assert spec["kind"] == "many"
        log.append([j["path"] for j in spec["jobs"]])
        return {"results": [{"error": "boom"} if j["path"] in fail else {"median_ms": 1.0, "runtime": j["runtime"]}
                            for j in spec["jobs"]]}
    return worker


def _rounds_worker(rounds_ms):
    """A worker whose r-th call answers with the timed runs ``rounds_ms[r]`` (the protocol's own statistics)."""
    calls = iter(rounds_ms)

    def worker(spec):
        samples = next(calls)
        return {"results": [{**summarize(samples), "first_ms": 100.0 + len(samples), "samples_ms": samples,
                             "runtime": "r"} for _ in spec["jobs"]]}
    return worker


def _row_of_rounds(rounds_ms):
    job = Job("m", "r", "fp32", 1, 1, {"kind": "artifact", "path": "m.onnx", "runtime": "r"}, macs=1e6)
    run_jobs([job], rounds=len(rounds_ms), worker=_rounds_worker(rounds_ms))
    (row,) = rows_from([job], machine={}, baseline=None)
    return row


def test_every_figure_of_a_row_describes_the_same_runs():
    # Round medians 10 / 20 / 30 and an even number of rounds: no single round is the row's median.
    rounds = [[9.0, 10.0, 11.0], [19.0, 20.0, 60.0], [29.0, 30.0, 31.0], [1.0, 40.0, 41.0]]
    row = _row_of_rounds(rounds)
    pooled = [t for r in rounds for t in r]
    assert row["runs"] == len(pooled) and row["rounds"] == 4
    assert row["median_ms"] == pytest.approx(np.median(pooled))
    assert row["p90_ms"] == pytest.approx(np.percentile(pooled, 90))
    assert row["min_ms"] == 1.0 and row["mean_ms"] == pytest.approx(np.mean(pooled))
    assert row["round_medians_ms"] == [10.0, 20.0, 30.0, 40.0] and row["statistics"] == "pooled"
    assert row["spread"] == pytest.approx(spread([10.0, 20.0, 30.0, 40.0]))
    assert row["first_ms"] == pytest.approx(103.0)
    assert row["gmacs_per_s"] == pytest.approx(1e6 / (row["median_ms"] / 1e3) / 1e9)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.floats(0.001, 1e4, allow_nan=False), min_size=1, max_size=12), min_size=1, max_size=6))
def test_row_statistics_are_ordered_for_any_rounds(rounds):
    row = _row_of_rounds(rounds)
    assert row["min_ms"] <= row["median_ms"] <= row["p90_ms"] <= row["p99_ms"]
    assert row["min_ms"] <= row["mean_ms"] <= max(t for r in rounds for t in r)
    assert row["runs"] == sum(map(len, rounds))
    assert min(row["round_medians_ms"]) <= max(row["round_medians_ms"])


def test_rounds_are_interleaved_by_runtime_and_rotated():
    calls = []
    jobs = [Job("m", rt, "fp32", 1, 1, {"kind": "artifact", "path": p, "runtime": rt})
            for p, rt in (("a1", "A"), ("a2", "A"), ("b", "B"), ("c", "C"))]
    run_jobs(jobs, rounds=3, worker=_fake_worker(calls))
    # one process per runtime per round, runtimes rotated round by round
    assert calls == [["a1", "a2"], ["b"], ["c"], ["b"], ["c"], ["a2", "a1"], ["c"], ["a1", "a2"], ["b"]]
    assert all(len(j.medians) == 3 for j in jobs)


def test_a_failing_configuration_is_reported_not_fatal():
    calls = []
    jobs = [Job("m", "r", "fp32", 1, 1, {"kind": "artifact", "path": p, "runtime": "r"}) for p in "ab"]
    run_jobs(jobs, rounds=2, worker=_fake_worker(calls, fail={"b"}))
    assert jobs[0].medians == [1.0, 1.0] and jobs[1].error == "boom" and jobs[1].medians == []
    assert calls == [["a", "b"], ["a"]]  # a failed configuration is not measured again


@pytest.fixture(scope="module")
def lenet_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cnnexport.export(create_model("lenet5", weights="digits"), (1, 1, 32, 32), out, name="lenet5",
                     formats=("onnx", "tflite", "ncnn"),
                     photos=False)
    return out


def test_bench_files_json_rows_carry_every_field(lenet_files):
    files = [str(lenet_files / f) for f in ("lenet5.onnx", "lenet5.tflite", "lenet5.ncnn.param")]
    result = CliRunner().invoke(cli, ["bench", *files, "--batch", "1,4", "--threads", "1", "--rounds", "2", "--runs",
                                      "3", "--min-time", "0", "--warmup", "1", "--pick", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = data["rows"]
    assert len(rows) == 6 and {(r["runtime"], r["batch"]) for r in rows} == {
        (rt, b) for rt in ("onnxruntime", "tflite", "ncnn") for b in (1, 4)}
    for r in rows:
        assert set(ROW_FIELDS) <= set(r)
        assert r["rounds"] == 2 and len(r["round_medians_ms"]) == 2 and r["runs"] >= 3
        assert r["min_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["macs"] > 0 and r["gmacs_per_s"] > 0 and 0 < r["ceiling_fraction"] < 1.5
        assert r["roofline_ms"] > 0 and r["of_roofline"] == pytest.approx(r["roofline_ms"] / r["median_ms"])
        assert r["machine"]["cpu"] and "avx512_vnni" in r["machine"]["isa"]
    assert data["ceilings_gflops"]["1"] > 1
    assert {p["batch"] for p in data["pick"]} == {1, 4}
    # static-batch files (TFLite, ncnn: batch 1) ran batch 4 as 4 calls, and the rows say so
    assert {(r["runtime"], r["batch"]): r["calls_per_batch"] for r in rows} == {
        ("onnxruntime", 1): 1, ("onnxruntime", 4): 1, ("tflite", 1): 1, ("tflite", 4): 4, ("ncnn", 1): 1,
        ("ncnn", 4): 4}
    assert set(data["limits"]["1"]) == {"fp32 ceiling", "memory bandwidth"}
    assert all(len(v["values"]) >= 3 for v in data["limits"]["1"].values())  # measured until stable


def test_bench_with_data_puts_each_files_accuracy_in_its_rows(lenet_files, tmp_path):
    """`bench ... --data`: every row carries its own file's top-1 on the labelled data (a file of untrained
    weights measured beside the trained ones scores its own), and every file its size on disk."""
    cnnexport.export(create_model("lenet5"), (1, 1, 32, 32), tmp_path, name="untrained", photos=False)
    files = [str(lenet_files / "lenet5.onnx"), str(lenet_files / "lenet5.tflite"), str(tmp_path / "untrained.onnx")]
    result = CliRunner().invoke(cli, ["bench", *files, "--data", "digits", "--data-count", "120", "--rounds", "1",
                                      "--runs", "3", "--min-time", "0", "--warmup", "1", "--no-ceiling", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = {r["artifact"]: r for r in data["rows"]}
    assert rows["lenet5.onnx"]["top1"] > 0.9 and rows["lenet5.tflite"]["top1"] > 0.9
    assert rows["untrained.onnx"]["top1"] < 0.5
    assert {r["eval_images"] for r in rows.values()} == {120} and data["accuracy"][0]["data"]["images"] == 120
    assert rows["lenet5.onnx"]["file_mb"] == pytest.approx((lenet_files / "lenet5.onnx").stat().st_size / 1e6)


def test_bench_a_model_name_with_its_weights_and_data(tmp_path):
    """A model name's --weights reach the export and PyTorch's rows: PyTorch and the files score the trained
    digits network's top-1, and each file agrees with PyTorch's top-1; options that would be ignored are refused."""
    quick = ["--runs", "3", "--min-time", "0", "--warmup", "1", "--rounds", "1", "--no-ceiling", "--json"]
    result = CliRunner().invoke(cli, ["bench", "lenet5", "--weights", "digits", "--data", "digits", "--calib", "digits",
                                      "--data-count", "100", "--runtime", "torch,onnxruntime", "--precision",
                                      "fp32,int8", "-o", str(tmp_path / "out"), "--pick", *quick])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = {(r["runtime"], r["precision"]): r for r in data["rows"]}
    assert {p["precision"] for p in data["pick"]} == {"fp32", "int8"}
    assert all(p["top1"] == rows[p["runtime"], p["precision"]]["top1"] for p in data["pick"])
    assert set(rows) == {("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")}
    assert rows["torch", "fp32"]["top1"] > 0.9 and rows["torch", "fp32"]["file_mb"] is None
    assert rows["onnxruntime", "fp32"]["top1"] == rows["torch", "fp32"]["top1"]
    assert rows["onnxruntime", "fp32"]["agreement"] == 1.0 and rows["onnxruntime", "int8"]["agreement"] > 0.9
    for args, words in ((["lenet5.onnx", "--weights", "digits"], "--weights describes a model name's export"),
                        (["lenet5", "--data-count", "5"], "--data-count apply only with --data"),
                        (["lenet5", "--use-ema"], "--use-ema picks a checkpoint's EMA weights")):
        refused = CliRunner().invoke(cli, ["bench", *args])
        assert refused.exit_code == 2 and words in refused.output, refused.output


def test_bench_measures_the_good_files_and_fails_on_a_corrupt_one(lenet_files, tmp_path):
    """One corrupt file among good ones: the good ones are measured and shown, then exit 8 naming it."""
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    result = CliRunner().invoke(cli, ["bench", str(lenet_files / "lenet5.onnx"), str(tmp_path / "broken.onnx"),
                                      "--rounds", "1", "--runs", "2", "--min-time", "0", "--warmup", "0",
                                      "--no-ceiling", "--json"])
    assert result.exit_code == 8, result.output
    assert [r["artifact"] for r in json.loads(result.stdout)["rows"]] == ["lenet5.onnx"]
    last = result.stderr.strip().splitlines()[-1]
    assert "1 of 2 configuration(s) could not be measured" in last and "broken.onnx" in last


def test_an_export_folder_is_its_files_and_paths_are_named_as_typed(lenet_files, tmp_path, monkeypatch):
    """`bench DIR` measures the files its report.json lists (it said "does not exist", then named the folder);
    a folder of no model files is named; load errors named one path three ways: the path as typed."""
    folder = CliRunner().invoke(cli, ["bench", str(lenet_files), "--runs", "3", "--min-time", "0", "--warmup", "1",
                                      "--rounds", "1", "--no-ceiling", "--json"])
    assert folder.exit_code == 0, folder.output
    assert [r["artifact"] for r in json.loads(folder.stdout)["rows"]] == ["lenet5.onnx", "lenet5.tflite",
                                                                          "lenet5.ncnn.param"]
    empty = CliRunner().invoke(cli, ["bench", str(tmp_path)])
    assert empty.exit_code == 2 and f"'{tmp_path}' is a folder that holds no model file" in empty.stderr
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "broken.onnx").write_bytes(b"not a model")
    for args in (["bench", "sub/broken.onnx", "--no-ceiling"], ["eval", "sub/broken.onnx", "--data", "digits"],
                 ["profile", "sub/broken.onnx", "--roofline", "--ceiling", "1", "--bandwidth", "1"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 8 and "'sub/broken.onnx'" in result.stderr, (args, result.stderr)
        assert str(tmp_path) not in result.stderr
    # a file no runtime reads: bench and eval name the extensions they do read, in the same words
    (tmp_path / "model.pt").write_bytes(b"PK")
    for args in (["bench", "model.pt", "--no-ceiling"], ["eval", "model.pt", "--data", "digits"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and "no runtime reads '.pt' files ('model.pt'): give a .onnx" in result.stderr, \
            (args, result.stderr)


def test_a_pick_with_one_candidate_says_so(lenet_files):
    """--pick over one file per precision (the GPU script's fp16 .pt2 alone): no runner-up to compare with."""
    result = CliRunner().invoke(cli, ["bench", str(lenet_files / "lenet5.onnx"), "--pick", "--rounds", "1", "--runs",
                                      "2", "--min-time", "0", "--warmup", "0", "--no-ceiling"])
    assert result.exit_code == 0, result.output
    assert "pick fp32 batch 1 threads 1: lenet5.onnx on onnxruntime: the only candidate" in " ".join(result.stdout.split())


def test_a_pick_from_two_rounds_is_unconfirmed_not_a_tie(lenet_files):
    files = [str(lenet_files / f) for f in ("lenet5.onnx", "lenet5.tflite")]
    result = CliRunner().invoke(cli, ["bench", *files, "--pick", "--rounds", "2", "--runs", "2", "--min-time", "0",
                                      "--warmup", "0", "--no-ceiling"])
    assert result.exit_code == 0, result.output
    assert "2 rounds cannot call a difference: use --rounds 3 or more)" in " ".join(result.stdout.split())


def test_off_a_terminal_bench_prints_a_line_per_finished_measurement(lenet_files):
    """`bench ... > log 2> err` showed nothing for 15 minutes: off a terminal, a plain line per job."""
    result = CliRunner().invoke(cli, ["bench", str(lenet_files / "lenet5.onnx"), "--batch", "1,2", "--rounds", "1",
                                      "--runs", "2", "--min-time", "0", "--warmup", "0", "--no-ceiling"])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("measured ")]
    assert len(lines) == 1 and "2 of 2 done, 0 left" in lines[0]  # one worker per runtime and round
    assert "lenet5" in result.stdout


def test_the_bench_table_fits_100_columns_and_never_cuts_names():
    """17 columns were cut to 4 characters in a 120-column terminal: the default set fits 100 columns, no cell
    is cut (the least telling columns are left out instead), every column stays behind --wide."""
    import io

    from rich.console import Console

    from cnnexport.cli.render import bench_table

    rows = [{**_job("onnxruntime", p, [4.5, 4.6, 4.4]).result, "model": "mobilenet_v2_1_0_with_a_long_name",
             "artifact": f"mobilenet_v2_1_0_with_a_long_name.{p}.onnx", "runtime": "onnxruntime", "precision": p,
             "batch": 4, "calls_per_batch": 4 if p == "int8" else 1, "threads": 2, "spread": 0.05,
             "images_per_s": 880.0, "macs": 3e8, "gmacs_per_s": 26.0, "ceiling_fraction": 0.4, "roofline_ms": 1.2,
             "of_roofline": 0.27, "limits_noisy": p == "fp32", "speedup": 1.5, "int8_speedup": 1.9,
             "baseline": "torch"} for p in ("fp32", "int8")]

    def shown(width, wide=False):
        console = Console(width=width, record=True, file=io.StringIO())
        console.print(bench_table(rows, wide, width))
        return console.export_text()

    for width in (100, 120):
        text = shown(width)
        assert all(len(line) <= width for line in text.splitlines()) and "…" not in text
        assert "mobilenet_v2_1_0_with_a_long_name.int8.onnx" in text and "onnxruntime" in text
        assert "4 (4 calls)" in text and "median ms" in text
    assert "27%?" in shown(200)  # a fraction of a noisy limit is marked
    assert "p90 ms" in shown(300, wide=True) and "p90 ms" not in shown(200)


def test_the_ceiling_is_the_best_gemm_and_names_it():
    """The compute ceiling is the best of every engine's GEMM, not numpy's alone (the runtimes' beat it),
    with every measurement kept and the ISA peak beside it."""
    from cnnexport.bench.gemm import isa_peak, pick_ceiling

    measured = [{"engine": "numpy", "precision": "fp32", "n": 1024, "gflops": 150.0},
                {"engine": "onnxruntime", "precision": "fp32", "n": 1024, "gflops": 193.0},
                {"engine": "openvino", "precision": "fp32", "n": 1024, "skipped": "ModuleNotFoundError: openvino"}]
    peak = isa_peak({"avx512f": True, "avx2": True}, 1, "fp32", 2600.0)
    assert peak["gflops"] == pytest.approx(16 * 2 * 2 * 2.6)  # 16 lanes x 2 FMA units x 2 FLOPs x 2.6 GHz
    ceiling = pick_ceiling(measured, peak)
    assert ceiling["gflops"] == 193.0 and ceiling["set_by"] == "onnxruntime fp32 GEMM n=1024"
    assert ceiling["measurements"] == measured and ceiling["of_isa_peak"] == pytest.approx(193 / 166.4)
    assert "turbo" in ceiling["isa_note"]  # above the peak at the reported clock: the clock is higher
    assert "isa_note" not in pick_ceiling(measured, isa_peak({"avx512f": True}, 2, "fp32", 2600.0))
    amx = isa_peak({"avx512f": True, "amx_tile": True}, 2, "int8", 2000.0)
    assert amx["gflops"] == pytest.approx(2048 * 2 * 2.0) and "AMX" in amx["assumes"]
    assert isa_peak({"avx2": True}, 1, "int8", 2000.0) is None and isa_peak({"avx2": True}, 1, "fp32", None) is None
    with pytest.raises(ValueError, match="no GEMM could be measured"):
        pick_ceiling(measured[2:])
    # over shapes: a layer-shaped GEMM that beats the square one sets the ceiling, named by its shape
    shaped = [{"engine": "numpy", "precision": "fp32", "shape": "1024x1024x1024", "gflops": 150.0},
              {"engine": "onnxruntime", "precision": "fp32", "shape": "784x128x512", "gflops": 201.0}]
    assert pick_ceiling(shaped)["set_by"] == "onnxruntime fp32 GEMM 784x128x512"


def test_every_installed_engines_gemm_is_measured():
    from cnnexport.bench.gemm import measure_gemms

    fp32 = {m["engine"]: m for m in measure_gemms("fp32", 1, n=256, min_time_s=0.01)}
    assert set(fp32) == {"numpy", "onnxruntime", "openvino"} and all(m["gflops"] > 0.1 for m in fp32.values())
    int8 = {m["engine"]: m for m in measure_gemms("int8", 1, n=256, min_time_s=0.01)}
    assert set(int8) == {"onnxruntime", "openvino"} and all(m["gflops"] > 0.1 for m in int8.values())
    # every engine over every shape (M x K x N), a non-square one included
    shaped = measure_gemms("fp32", 1, min_time_s=0.01, shapes=((64, 32, 16), (128, 128, 128)))
    assert [(m["engine"], m["shape"]) for m in shaped] == [(e, s) for s in ("64x32x16", "128x128x128")
                                                            for e in ("numpy", "onnxruntime", "openvino")]
    assert all(m["gflops"] > 0 for m in shaped)


def test_openvinos_int8_gemm_is_a_chain_of_int8_convolutions():
    """OpenVINO's int8 GEMM for the ceiling runs as its int8 models do: INT8_CHAIN u8 convolutions in a row (3x3
    where K = 9 N, VGG's layers), and says how many GEMMs a call computes, so its rate counts them all."""
    import openvino as ov

    from cnnexport.bench.gemm import _operands
    from cnnexport.runtimes.openvino import INT8_CHAIN, _int8_conv_chain, gemm_call

    for m, k, n, kernel in ((64, 32, 16, 1), (64, 9 * 16, 16, 3)):
        a, b = _operands("int8", m, k, n)
        model, image = _int8_conv_chain(a, b)
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        convs = [op for op in compiled.get_runtime_model().get_ops()
                 if op.get_rt_info()["layerType"].astype(str) == "Convolution"]
        assert len(convs) == INT8_CHAIN
        assert {op.get_rt_info()["runtimePrecision"].astype(str) for op in convs} == {"u8"}  # int8 kernels
        weights = [op for op in model.get_ops() if op.get_type_name() == "Convolution"]
        assert {tuple(op.input(1).get_partial_shape().to_shape())[2:] for op in weights} == {(kernel, kernel)}
        assert image.flags.c_contiguous and image.size == m * (k if kernel == 1 else n)
        assert gemm_call("int8", a, b, 1).gemms == INT8_CHAIN and gemm_call("fp32", a.astype("float32"),
                                                                         b.astype("float32"), 1).gemms == 1


def test_pytorch_runs_eager_and_compiled_and_on_cuda_also_in_a_graph():
    from cnnexport.bench.jobs import torch_jobs

    cpu = torch_jobs("resnet18", (1, 3, 224, 224), [1, 8], [2], runtimes=("torch", "torch-compile"))
    assert sorted({(j.runtime, j.batch) for j in cpu}) == [("torch", 1), ("torch", 8), ("torch-compile", 1),
                                                           ("torch-compile", 8)]
    assert all(j.worker_job["compiled"] == (j.runtime == "torch-compile") for j in cpu)
    gpu = torch_jobs("resnet18", (1, 3, 224, 224), [1], [1], device="cuda", runtimes=("torch-compile",))
    assert [j.runtime for j in gpu] == ["torch-compile"]  # compiled alone: no eager rows asked for
    assert [j.runtime for j in torch_jobs("m", (1, 3, 8, 8), [1], [1], device="cuda")] == ["torch", "torch-cudagraph"]


def test_bench_a_model_on_torch_compile_and_its_aoti_package(tmp_path):
    pytest.importorskip("torch")
    if not any(__import__("shutil").which(c) for c in ("g++", "c++", "clang++")):
        pytest.skip("torch.compile and AOTInductor compile C++: no C++ compiler here")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["bench", "lenet5", "--runtime", "torch-compile,aoti", "--runs", "3",
                                      "--rounds", "1", "--min-time", "0", "-o", str(out), "--save",
                                      str(tmp_path / "rows.json")])
    assert result.exit_code == 0, result.output
    rows = {r["runtime"]: r for r in json.loads((tmp_path / "rows.json").read_text())["rows"]}
    assert set(rows) == {"torch-compile", "aoti"}
    assert rows["torch-compile"]["compile_mode"] == "max-autotune-no-cudagraphs"
    assert rows["aoti"]["artifact"] == "lenet5.pt2"
    assert all(r["median_ms"] > 0 and r["macs"] > 0 for r in rows.values())
    # --reuse: the files of that export measured again, not exported again
    written = (out / "lenet5.pt2").stat().st_mtime_ns
    again = CliRunner().invoke(cli, ["bench", "lenet5", "--runtime", "aoti,onnxruntime", "--reuse", "-o", str(out),
                                     "--runs", "3", "--min-time", "0", "--rounds", "1", "--no-ceiling", "--json"])
    assert again.exit_code == 0, again.output
    assert {r["artifact"] for r in json.loads(again.stdout)["rows"]} == {"lenet5.pt2", "lenet5.onnx"}
    assert (out / "lenet5.pt2").stat().st_mtime_ns == written
    missing = CliRunner().invoke(cli, ["bench", "lenet5", "--runtime", "aoti", "--precision", "fp32,fp16", "--reuse",
                                       "-o", str(out)])
    assert missing.exit_code == 2 and "holds no lenet5.fp16.pt2 for cpu" in missing.stderr, missing.output
    other = CliRunner().invoke(cli, ["bench", "mobilenet_v2", "--runtime", "aoti", "--reuse", "-o", str(out)])
    assert other.exit_code == 2 and "the export of 'lenet5', not mobilenet_v2" in other.stderr, other.output


def test_bench_plain_measures_each_runtimes_own_conversion_beside_ours(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "lenet5", "--runtime", "onnxruntime", "--plain", "--rounds", "2",
                                      "--runs", "3", "--min-time", "0", "--warmup", "1", "--no-ceiling", "-o",
                                      str(tmp_path / "o"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {(r["artifact"], r["plain"]) for r in data["rows"]} == {("lenet5.onnx", False), ("lenet5.plain.onnx", True)}
    (c,) = data["plain"]
    assert (c["artifact"], c["plain_artifact"], c["paired"]["rounds"]) == ("lenet5.onnx", "lenet5.plain.onnx", 2)
    assert c["verdict"] == "tie"  # 2 rounds call nothing, and the notes say so
    assert any("with 2 rounds the paired test calls no pair" in n for n in data["notes"])


def test_bench_and_the_studies_refuse_to_time_an_emulator(tmp_path, monkeypatch):
    from cnnexport.machine import EMULATED_ENV, cpu_facts

    monkeypatch.setenv(EMULATED_ENV, "qemu-aarch64 -cpu max")  # what scripts/arm_env.sh sets
    assert cpu_facts()["emulated"] == "qemu-aarch64 -cpu max"
    for args in (["bench", "lenet5"], ["study", "zoo", "--models", "lenet5"]):
        result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "o")])
        assert result.exit_code == 2 and "the emulator's, not the CPU's" in result.stderr, result.output
        assert not (tmp_path / "o").exists()
    monkeypatch.delenv(EMULATED_ENV)
    assert cpu_facts()["emulated"] is None


def test_bench_measures_files_whose_input_size_is_dynamic(small_net, tmp_path):
    """An OpenVINO IR converted from a torch module (every input dimension dynamic) and an ONNX file
    with dynamic height and width: ``--input-size`` fills what they leave open."""
    import openvino as ov
    import torch

    ov.save_model(ov.convert_model(small_net, example_input=torch.zeros(1, 3, 32, 32)), str(tmp_path / "net.xml"))
    torch.onnx.export(small_net, torch.zeros(1, 3, 32, 32), str(tmp_path / "net.onnx"), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    files = [str(tmp_path / "net.xml"), str(tmp_path / "net.onnx")]
    quick = ["--runs", "3", "--min-time", "0", "--warmup", "1", "--rounds", "1", "--no-ceiling"]
    refused = run_cli("bench", files[0], *quick)
    assert refused.returncode == 2 and "--input-size" in refused.stderr and "Traceback" not in refused.stderr
    proc = run_cli("bench", *files, "--input-size", "32", "--batch", "2", *quick, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert {r["runtime"] for r in rows} == {"openvino", "onnxruntime"} and all(r["batch"] == 2 for r in rows)
    onnx_row = next(r for r in rows if r["runtime"] == "onnxruntime")
    from cnnexport.profile.torch_profile import profile_module

    assert onnx_row["macs"] == profile_module(small_net, (1, 3, 32, 32)).macs  # profiled at the size given
    wrong = run_cli("bench", files[1], "--input-size", "1,32,32", *quick)
    assert wrong.returncode == 2 and "does not fit" in wrong.stderr


_USERS_NET = """
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, num_classes=4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))

    def forward(self, x):
        return self.body(x)


class Heads(Net):
    def __init__(self):
        super().__init__(num_classes=10)

    def forward(self, x):
        return {"logits": self.body(x), "features": self.body[:-1](x)}
"""


def test_bench_a_users_model_by_its_file(tmp_path):
    """`bench path/net.py:Net`: exported (files named after the callable) and PyTorch's row built from the
    user's code in each worker; --reuse measures that export again."""
    (tmp_path / "net.py").write_text(_USERS_NET)
    quick = ["--runs", "3", "--min-time", "0", "--warmup", "1", "--rounds", "1", "--no-ceiling", "--json"]
    proc = run_cli("bench", "net.py:Net", "--input-size", "1,16,16", "--runtime", "torch,onnxruntime", "-o", "out",
                   *quick, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {r["runtime"]: r for r in json.loads(proc.stdout)["rows"]}
    assert set(rows) == {"torch", "onnxruntime"} and {r["model"] for r in rows.values()} == {"Net"}
    assert rows["onnxruntime"]["artifact"] == "Net.onnx" and rows["torch"]["macs"] == rows["onnxruntime"]["macs"] > 0
    written = (tmp_path / "out" / "Net.onnx").stat().st_mtime_ns
    again = run_cli("bench", "net.py:Net", "--input-size", "1,16,16", "--runtime", "onnxruntime", "--reuse", "-o",
                    "out", *quick, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "out" / "Net.onnx").stat().st_mtime_ns == written
    missing = run_cli("bench", "nets.py:Net", cwd=tmp_path)
    assert missing.returncode == 2 and "no file 'nets.py'" in missing.stderr and "Traceback" not in missing.stderr


def test_bench_data_scores_pytorch_on_the_module_it_exported(tmp_path):
    """A user's model without --weights has random weights: PyTorch's top-1 is the exported module's (the
    same as its file's, agreeing on every image), not a fresh random copy's; a dict output is scored on its
    first entry, and PyTorch's latency rows run it too."""
    (tmp_path / "net.py").write_text(_USERS_NET)
    proc = run_cli("bench", "net.py:Heads", "--input-size", "32", "--runtime", "torch,onnxruntime", "--data", "digits",
                   "--data-count", "60", "--runs", "3", "--min-time", "0", "--warmup", "1", "--rounds", "1",
                   "--no-ceiling", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {r["runtime"]: r for r in json.loads(proc.stdout)["rows"]}
    assert rows["torch"]["top1"] == rows["onnxruntime"]["top1"] and rows["onnxruntime"]["agreement"] == 1.0
    assert rows["torch"]["eval_images"] == 60 and rows["torch"]["median_ms"] > 0


def test_bench_on_cuda_compiles_device_formats_for_the_gpu_with_a_batch_up_to_the_largest():
    from cnnexport.bench.plan import device_options

    # on cuda: AOTInductor's package for the GPU, one batch of 64 rather than 64 calls of the export's batch
    assert device_options(["onnx", "aoti", "openvino"], "cuda", [1, 8, 64]) == {"aoti_device": "cuda",
                                                                                "aoti_max_batch": 64}
    assert device_options(["aoti"], "cuda", [1]) == {"aoti_device": "cuda"}  # batch 1 only: static, as exported
    assert device_options(["aoti", "executorch"], "cpu", [1, 8]) == {}  # the CPU: the export's own defaults


NAN_GUARD = f"{Path(__file__).parent / 'conftest.py'}:make_nan_guard_net"  # IsNaN: no MNN or ncnn file
QUICK = ["--runs", "3", "--min-time", "0", "--warmup", "1", "--rounds", "1", "--no-ceiling", "--json"]


def test_bench_runtime_all_measures_every_installed_runtime_and_names_the_formats_it_cannot_make(tmp_path):
    """As Ultralytics' benchmark runs every format: each installed runtime's file is exported, verified and
    measured; a format the model cannot be exported to is named with why, and does not fail the run."""
    from cnnexport.runtimes import installed_runtimes

    if not any(__import__("shutil").which(c) for c in ("g++", "c++", "clang++")):
        pytest.skip("torch.compile and AOTInductor compile C++: no C++ compiler here")
    installed = installed_runtimes("cpu")[0]
    proc = run_cli("bench", NAN_GUARD, "--input-size", "16", "--runtime", "all", "-o", str(tmp_path / "out"), *QUICK)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {r["runtime"] for r in result["rows"]} == set(installed) - {"mnn", "ncnn"}
    assert all(r["median_ms"] > 0 for r in result["rows"])
    unmade = [r for r in ("mnn", "ncnn") if r in installed]
    assert sorted((f["runtime"], f["precision"], f["stage"]) for f in result["left_out"]) == [
        (r, "fp32", "convert") for r in unmade]
    notes = [n for n in result["notes"] if "not exported" in n]
    assert sorted(n.split()[0] for n in notes) == sorted(f["file"] for f in result["left_out"])
    assert any("IsNaN" in n for n in notes)
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert not {"make_nan_guard_net.mnn", "make_nan_guard_net.ncnn.param"} & written  # nothing of a failed format


def test_bench_measures_the_runtimes_a_model_converts_to_and_fails_on_the_one_it_cannot(tmp_path):
    pytest.importorskip("MNN", reason="MNN is not installed (pip install 'cnnexport[mnn]')")
    proc = run_cli("bench", NAN_GUARD, "--input-size", "16", "--runtime", "onnxruntime,mnn", *QUICK)
    assert proc.returncode == 7, proc.stderr  # ExportError's code, after the rows that could be measured
    assert [r["runtime"] for r in json.loads(proc.stdout)["rows"]] == ["onnxruntime"]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "1 of 2 configuration(s) could not be measured" in lines[0], lines
    assert "make_nan_guard_net.mnn" in lines[0] and "IsNaN" in lines[0]


def test_runtime_all_applies_to_a_model_not_to_files(lenet_files):
    result = CliRunner().invoke(cli, ["bench", str(lenet_files / "lenet5.onnx"), "--runtime", "all"])
    assert result.exit_code == 2 and "--runtime all exports a model" in result.stderr, result.output


def test_pytorch_rows_time_a_tensor_model_as_it_is_and_a_dict_one_by_its_first_output():
    """The worker wrapped every model in FirstOutput: about 2 us a forward, a few percent of a small network's."""
    import torch

    from cnnexport.models.outputs import FirstOutput, tensor_output

    class Heads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = self.conv(x).mean((2, 3))
            return {"logits": y, "features": y * 2}

    x = torch.randn(1, 3, 8, 8)
    plain = torch.nn.Conv2d(3, 4, 3)
    assert tensor_output(plain, x) is plain
    heads = Heads()
    wrapped = tensor_output(heads, x)
    assert isinstance(wrapped, FirstOutput) and torch.equal(wrapped(x), heads(x)["logits"])

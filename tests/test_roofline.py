"""The roofline: the bandwidth probe on a fake timer, per-layer bounds against hand-computed values
for a convolution, a depthwise convolution and an element-wise add, and the bench row fields."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cnnexport.bench.jobs import Job
from cnnexport.bench.limits import stream_bandwidth
from cnnexport.bench.rows import bound_warnings, rows_from
from cnnexport.profile.onnx_profile import file_costs, profile_onnx
from cnnexport.profile.roofline import ModelCosts, layer_bound


class StepTimer:
    """Every call returns a time ``step`` seconds after the previous one."""

    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


@pytest.mark.parametrize("threads", [1, 2])
def test_bandwidth_probe_counts_three_arrays_per_pass_on_a_fake_timer(threads):
    timer = StepTimer(0.25)  # each timed pass: 0.25 s between its two timer calls
    result = stream_bandwidth(threads, mib=2, runs=4, warmup=1, timer=timer)
    nbytes = 3 * 2 * (1 << 20)  # b and c read, a written; 2 MiB each
    assert result["bytes_per_pass"] == nbytes
    assert result["gbs"] == pytest.approx(nbytes / 0.25 / 1e9)
    assert result["best_gbs"] == pytest.approx(result["gbs"])
    assert result["runs"] == 4 and result["threads"] == threads


def test_bandwidth_probe_measures_a_real_rate():
    result = stream_bandwidth(1, mib=16, runs=3)
    assert 0.1 < result["gbs"] <= result["best_gbs"] < 10_000


def _fake_sysfs(root, caches):
    for i, (level, kind, size, cpus) in enumerate(caches):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        for name, text in (("level", level), ("type", kind), ("size", size), ("shared_cpu_list", cpus)):
            (d / name).write_text(f"{text}\n")
    return root


def test_cache_levels_and_their_roofs_on_a_fake_machine(tmp_path):
    """Levels from sysfs (instruction caches left out; a private cache per thread, a shared one once);
    each level measured at half of what it holds per thread; a level's roof never below the one behind it."""
    from cnnexport.bench.limits import cache_levels, memory_roofs

    root = _fake_sysfs(tmp_path, [("1", "Data", "48K", "0"), ("1", "Instruction", "32K", "0"),
                                  ("2", "Unified", "2048K", "0"), ("3", "Unified", "32M", "0-7")])
    levels = cache_levels(root)
    assert [(c.name, c.size_bytes, c.shared_cpus) for c in levels] == [
        ("L1", 48 << 10, 1), ("L2", 2 << 20, 1), ("L3", 32 << 20, 8)]
    assert [c.capacity(4) for c in levels] == [4 * (48 << 10), 4 * (2 << 20), 32 << 20]
    asked = []
    readings = {24 << 10: 60.0, 1 << 20: 90.0, 16 << 20: 40.0}  # L1's probe reads below L2's (call overhead)

    def measure(threads, bytes_per_thread):
        asked.append((threads, bytes_per_thread))
        return readings[bytes_per_thread]
    roofs = memory_roofs(1, levels, dram_gbs=12.0, measure=measure)
    assert asked == [(1, 24 << 10), (1, 1 << 20), (1, 16 << 20)]  # half of each level per thread
    assert [(r["level"], r["measured_gbs"], r["gbs"]) for r in roofs] == [
        ("L1", 60.0, 90.0), ("L2", 90.0, 90.0), ("L3", 40.0, 40.0), ("DRAM", 12.0, 12.0)]
    assert [r["capacity_bytes"] for r in memory_roofs(2, levels, 12.0, measure=lambda t, b: 50.0)] == [
        2 * (48 << 10), 2 * (2 << 20), 32 << 20, None]


def test_cache_level_bandwidth_on_a_fake_timer():
    from cnnexport.bench.limits import copy_bandwidth

    timer = StepTimer(0.5)  # every timed pass: 0.5 s; the copies-per-pass search stops at once (0.5 >= 0.05 / 4)
    gbs = copy_bandwidth(2, 1 << 20, min_time_s=0.05, runs=3, timer=timer)
    # 2 threads x 1 copy per pass x (read + write) of a 512 KiB buffer, per 0.5 s
    assert gbs == pytest.approx(2 * 1 * 2 * (1 << 19) / 0.5 / 1e9)


def test_a_layer_is_charged_at_the_level_that_holds_its_working_set():
    from cnnexport.profile.roofline import LayerCosts, MemoryRoof

    roofs = (MemoryRoof("L1", 48 << 10, 200.0), MemoryRoof("L2", 2 << 20, 100.0), MemoryRoof("DRAM", None, 10.0))
    small = LayerCosts("small", "Conv 3x3", macs=0.0, activations=100_000, weights=0.0)  # 400 kB: L2
    large = LayerCosts("large", "Conv 3x3", macs=0.0, activations=1_000_000, weights=0.0)  # 4 MB: DRAM
    roof = ModelCosts((small, large)).roofline(batch=1, precision="fp32", ceiling_gflops=100.0, bandwidth_gbs=10.0,
                                               roofs=roofs)
    by_name = {b.name: b for b in roof.layers}
    assert by_name["small"].level == "L2" and by_name["small"].memory_s == pytest.approx(400_000 / 100e9)
    assert by_name["large"].level == "DRAM" and by_name["large"].memory_s == pytest.approx(4_000_000 / 10e9)
    assert roof.bound_dram_ms == pytest.approx((400_000 + 4_000_000) / 10e9 * 1e3)
    assert roof.bound_ms < roof.bound_dram_ms
    # at int8 the small layer's 100 kB no longer fits L1 (48 KiB) but the large one's 1 MB fits L2
    int8 = ModelCosts((small, large)).roofline(batch=1, precision="int8", ceiling_gflops=100.0, bandwidth_gbs=10.0,
                                               roofs=roofs)
    assert [b.level for b in int8.layers] == ["L2", "L2"]
    assert roof.as_dict()["charged_at"] == {"L2": 1, "DRAM": 1}
    # without roofs: every byte at DRAM, as before
    plain = ModelCosts((small, large)).roofline(batch=1, precision="fp32", ceiling_gflops=100.0, bandwidth_gbs=10.0)
    assert plain.bound_ms == pytest.approx(plain.bound_dram_ms) and {b.level for b in plain.layers} == {"DRAM"}


def _three_layer_graph(path):
    """conv 3x3 8->16 on 16x16, a depthwise 3x3 on its 16 channels, their sum."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in
             [("w", (16, 8, 3, 3)), ("b", (16,)), ("dw", (16, 1, 3, 3)), ("db", (16,))]]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c", "dw", "db"], ["d"], name="depthwise", pads=[1, 1, 1, 1], group=16),
             helper.make_node("Add", ["c", "d"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 16, 16])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_per_layer_bounds_match_hand_computed_values(tmp_path):
    costs = ModelCosts.from_profile(profile_onnx(_three_layer_graph(tmp_path / "g.onnx")))
    ceiling, bandwidth = 100.0, 10.0  # GFLOP/s, GB/s: ridge at 10 FLOPs per byte
    roof = costs.roofline(batch=1, precision="fp32", ceiling_gflops=ceiling, bandwidth_gbs=bandwidth)
    conv, dw = roof.layers  # the add is fused into the depthwise convolution (its output's only consumer)
    # conv: 16x16x16 outputs x 8x3x3 MACs each; input 8x16x16, output 16x16x16, weights 16x8x3x3 + 16 biases
    assert conv.macs == 16 * 16 * 16 * 72 and conv.fused == ()
    assert conv.bytes == 4 * (8 * 256 + 16 * 256 + 16 * 72 + 16)
    assert conv.compute_s == pytest.approx(2 * conv.macs / 100e9)
    assert conv.memory_s == pytest.approx(conv.bytes / 10e9)
    assert conv.limit == "compute" and conv.bound_s == conv.compute_s  # 2x294912 / 29256 B = 20 FLOPs/B
    # depthwise + add: 9 MACs per output; it reads c, writes y once, and the add reads c again (the residual):
    # d never reaches memory. Weights 16x1x3x3 + 16
    assert dw.fused == ("Add",) and dw.macs == 16 * 256 * 9
    assert dw.bytes == 4 * (3 * 16 * 256 + 144 + 16)
    assert dw.limit == "memory" and dw.bound_s == pytest.approx(dw.bytes / 10e9)
    assert roof.bound_ms == pytest.approx((conv.compute_s + dw.bytes / 10e9) * 1e3)
    # ShuffleNetV2's memory access cost still counts each op's own traffic: the add's two inputs and output
    unfused = 4 * (8 * 256 + 16 * 256 + 16 * 72 + 16) + 4 * (2 * 16 * 256 + 144 + 16) + 4 * 3 * 16 * 256
    assert costs.memory_bytes(1, "fp32") == unfused
    # int8 moves a quarter of the bytes; batch 4 moves the weights once
    int8 = costs.roofline(batch=1, precision="int8", ceiling_gflops=ceiling, bandwidth_gbs=bandwidth)
    assert int8.layers[1].bytes == dw.bytes / 4
    b4 = costs.roofline(batch=4, precision="fp32", ceiling_gflops=ceiling, bandwidth_gbs=bandwidth)
    assert b4.layers[1].bytes == 4 * (4 * 3 * 16 * 256 + 144 + 16) and b4.layers[1].macs == 4 * dw.macs
    kinds = roof.as_dict()["by_kind"]
    assert kinds["Conv 3x3"]["memory_bound"] == 0 and kinds["Conv depthwise 3x3"]["memory_bound"] == 1
    assert sum(k["share"] for k in kinds.values()) == pytest.approx(1.0)


def test_winograd_runtimes_are_charged_winograds_multiplications_for_dense_3x3_stride_1_only(tmp_path):
    from cnnexport.profile.roofline import WINOGRAD_F63_SAVING
    from cnnexport.runtimes import WINOGRAD_RUNTIMES

    assert WINOGRAD_F63_SAVING == pytest.approx(36 * 9 / 64)  # F(6x6, 3x3): 8x8 products for 6x6 outputs
    assert set(WINOGRAD_RUNTIMES) == {"ncnn"}  # measured: benchmarks/ncnn_winograd.py; cnnexport runs MNN without
    costs = ModelCosts.from_profile(profile_onnx(_three_layer_graph(tmp_path / "g.onnx")))
    assert [layer.winograd for layer in costs.layers] == [True, False]  # the depthwise one is not dense
    limits = dict(batch=1, precision="fp32", ceiling_gflops=100.0, bandwidth_gbs=1000.0)  # compute-bound
    direct, wino = costs.roofline(**limits), costs.roofline(**limits, winograd=True)
    assert wino.layers[0].compute_s == pytest.approx(direct.layers[0].compute_s / WINOGRAD_F63_SAVING)
    assert wino.layers[0].winograd and wino.layers[1].compute_s == direct.layers[1].compute_s
    assert wino.bound_ms < direct.bound_ms

    def job(runtime):
        j = Job("g", runtime, "fp32", 1, 2, {"kind": "artifact", "path": "/x/g.onnx"}, macs=costs.macs)
        j.medians, j.samples_ms, j.result, j.costs = [0.1], [0.1], {"runtime": runtime}, costs
        return j
    ort, ncnn = rows_from([job("onnxruntime"), job("ncnn")], machine={}, ceilings={2: 100.0}, bandwidths={2: 1000.0})
    assert ort["roofline_ms"] == pytest.approx(direct.bound_ms) and ncnn["roofline_ms"] == pytest.approx(wino.bound_ms)
    # a strided or dilated 3x3 is not Winograd's
    strided = onnx.load(str(tmp_path / "g.onnx"))
    strided.graph.node[0].attribute.append(helper.make_attribute("dilations", [2, 2]))
    strided.graph.node[0].attribute[0].ints[:] = [2, 2, 2, 2]  # pads 2 keep the 16x16 map
    onnx.save(strided, str(tmp_path / "d.onnx"))
    assert not ModelCosts.from_profile(profile_onnx(tmp_path / "d.onnx")).layers[0].winograd


def test_a_fused_group_moves_its_inputs_weights_residual_and_one_output(tmp_path):
    """conv -> add(residual) -> relu is one group; a squeeze-excitation gate broadcast onto a larger map
    is not fused into the 1x1 convolution that made it (the group would write less than the op does)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in
             [("w", (8, 8, 1, 1)), ("g", (8, 8, 1, 1))]]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Add", ["c", "x"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Conv", ["p", "g"], ["q"], name="gate"),
             helper.make_node("Sigmoid", ["q"], ["s"], name="sigmoid"),
             helper.make_node("Mul", ["r", "s"], ["y"], name="scale")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], inits)
    path = tmp_path / "se.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    profile = profile_onnx(path)
    fused = {layer.name: (layer.fused_into, layer.fused_access) for layer in profile.layers}
    assert fused["add"] == ("conv", 8 * 256) and fused["relu"] == ("conv", 0) and fused["sigmoid"] == ("gate", 0)
    assert fused["scale"] == ("", 0) and fused["pool"] == ("", 0)  # r has two consumers; s is broadcast
    layers = {layer.name: layer for layer in ModelCosts.from_profile(profile).layers}
    assert list(layers) == ["conv", "pool", "gate", "scale"] and layers["conv"].fused == ("Add", "Relu")
    assert layers["conv"].activations == 3 * 8 * 256 and layers["conv"].weights == 64  # x, x again, r


def test_layer_bound_refuses_missing_limits():
    with pytest.raises(ValueError):
        layer_bound("x", "Conv", 1, 1, 0.0, 10.0)


def test_bench_rows_carry_the_bound_only_with_every_input(tmp_path):
    costs = file_costs(_three_layer_graph(tmp_path / "g.onnx"))
    assert costs is not None and costs.macs == 16 * 256 * 81

    def job():
        j = Job("g", "onnxruntime", "fp32", 1, 2, {"kind": "artifact", "path": "/x/g.onnx"}, macs=costs.macs)
        j.medians, j.samples_ms = [0.1, 0.1], [0.1, 0.1]
        j.result = {"runtime": "onnxruntime"}
        j.costs = costs
        return j
    row, = rows_from([job()], machine={}, ceilings={2: 100.0}, bandwidths={2: 10.0})
    bound = costs.roofline(batch=1, precision="fp32", ceiling_gflops=100.0, bandwidth_gbs=10.0).bound_ms
    assert row["roofline_ms"] == pytest.approx(bound) and row["of_roofline"] == pytest.approx(bound / 0.1)
    assert row["bandwidth_gbs"] == 10.0 and row["memory_access_bytes"] == costs.memory_bytes(1, "fp32")
    assert row["protocol"] == 1
    assert not row["beats_bound"] or row["of_roofline"] > 1
    fast = job()
    fast.medians, fast.samples_ms = [bound / 2] * 2, [bound / 2] * 2  # twice as fast as its bound, no spread
    rows = rows_from([job(), fast], machine={}, ceilings={2: 100.0}, bandwidths={2: 10.0})
    assert [r["beats_bound"] for r in rows] == [bound > 0.1, True]
    (line,) = bound_warnings(rows)
    assert "ran faster than their roofline bound" in line and "(200%)" in line
    row, = rows_from([job()], machine={}, ceilings={2: 100.0})  # no bandwidth measured: left empty
    assert row["roofline_ms"] is None and row["of_roofline"] is None
    int8 = job()
    int8.precision = "int8"  # without an int8 compute ceiling: no bound rather than one from the fp32 ceiling
    row, = rows_from([int8], machine={}, ceilings={2: 100.0}, bandwidths={2: 10.0})
    assert row["roofline_ms"] is None and row["memory_access_bytes"] == costs.memory_bytes(1, "int8")
    row, = rows_from([int8], machine={}, ceilings={2: 100.0}, bandwidths={2: 10.0},
                     ceilings_by_precision={2: {"fp32": 100.0, "int8": 800.0}})  # with its own: its bound
    bound = costs.roofline(batch=1, precision="int8", ceiling_gflops=800.0, bandwidth_gbs=10.0).bound_ms
    assert row["roofline_ms"] == pytest.approx(bound) and row["ceiling_gflops"] == 800.0


def test_profile_roofline_of_a_model_name_with_given_limits():
    from click.testing import CliRunner

    from cnnexport.cli import cli

    result = CliRunner().invoke(cli, ["profile", "mobilenet_v1_0_25", "--roofline", "--ceiling", "100", "--bandwidth",
                                      "10", "--json"])
    assert result.exit_code == 0, result.output
    data = __import__("json").loads(result.stdout)
    assert data["limits_measured"] == {"ceiling": False, "bandwidth": False, "threads": 1}
    assert data["bound_ms"] == pytest.approx(sum(r["bound_ms"] for r in data["layers"]))
    kinds = {k["kind"]: k for k in data["by_kind"]}
    assert kinds["Conv depthwise 3x3"]["groups"] == 13 and kinds["Conv 1x1"]["groups"] == 13
    assert kinds["Conv depthwise 3x3"]["memory_bound"] == 13  # ~1 FLOP per byte, far below the ridge of 10
    fused = [r for r in data["layers"] if r["kind"] == "Conv depthwise 3x3"]
    assert all(r["fused"] == ["Relu"] for r in fused)  # BN folded, ReLU fused into its group


@pytest.mark.parametrize("runtime", ["ort", "openvino"])
def test_profile_roofline_per_layer_timings_match_the_graph(tmp_path, runtime):
    from click.testing import CliRunner

    from cnnexport.cli import cli

    path = _three_layer_graph(tmp_path / "g.onnx")
    result = CliRunner().invoke(cli, ["profile", str(path), "--roofline", "--per-layer", "--runtime", runtime,
                                      "--ceiling", "100", "--bandwidth", "10", "--json"])
    assert result.exit_code == 0, result.output
    data = __import__("json").loads(result.stdout)
    assert data["runtime"] == {"ort": "onnxruntime"}.get(runtime, runtime) and data["measured_ms"] > 0
    timed = [r for r in data["layers"] if r["measured_ms"]]
    assert timed and data["unmatched_ms"] < data["measured_ms"]  # the runtime's nodes map onto the graph's
    assert data["of_roofline"] == pytest.approx(data["bound_ms"] / data["measured_ms"])
    assert all(r["of_bound"] == pytest.approx(r["bound_ms"] / r["measured_ms"]) for r in timed)


def test_profile_roofline_bad_input(tmp_path):
    from click.testing import CliRunner

    from cnnexport.cli import cli

    lonely = tmp_path / "m.tflite"
    lonely.write_bytes(b"x" * 64)
    result = CliRunner().invoke(cli, ["profile", str(lonely), "--roofline", "--ceiling", "1", "--bandwidth", "1"])
    assert result.exit_code == 2 and "fp32 ONNX file beside" in result.stderr
    path = _three_layer_graph(tmp_path / "g.onnx")
    result = CliRunner().invoke(cli, ["profile", str(path), "--roofline", "--per-layer", "--runtime", "tflite"])
    assert result.exit_code == 2 and "ONNX Runtime's or OpenVINO's profiler" in result.stderr
    result = CliRunner().invoke(cli, ["profile", str(path), "--ceiling", "5"])
    assert result.exit_code == 2 and "go with --roofline" in result.stderr
    int8 = tmp_path / "g.int8.onnx"
    int8.write_bytes(path.read_bytes())
    result = CliRunner().invoke(cli, ["profile", str(int8), "--roofline", "--ceiling", "400", "--bandwidth", "10",
                                      "--json"])
    assert result.exit_code == 0 and __import__("json").loads(result.stdout)["precision"] == "int8"


def test_a_gpus_fp32_bound_holds_for_tf32_convolutions_and_half_types_have_their_own():
    from cnnexport.bench.schedule import gpu_ceilings_by_precision

    h100 = {"gflops": 51e3, "gflops_tf32": 370e3, "gflops_fp16": 740e3, "gflops_bf16": 760e3}
    # PyTorch's default fp32 convolutions run on TF32 tensor cores: a bound at plain fp32's rate would not hold
    assert gpu_ceilings_by_precision(h100) == {"fp32": 370e3, "fp16": 740e3, "bf16": 760e3}
    # no bf16 arithmetic (before sm 8.0): no bf16 ceiling, never fp32's in its place
    assert gpu_ceilings_by_precision({"gflops": 14e3, "gflops_tf32": None, "gflops_fp16": 110e3,
                                      "gflops_bf16": None}) == {"fp32": 14e3, "fp16": 110e3}


def test_the_gpus_limits_measured_once_are_read_from_their_file(tmp_path, monkeypatch):
    import json

    from cnnexport.bench.schedule import GPU_LIMITS_ENV, saved_gpu_limits
    from cnnexport.errors import UsageError

    monkeypatch.delenv(GPU_LIMITS_ENV, raising=False)
    assert saved_gpu_limits() is None  # unset: measured as usual
    path = tmp_path / "gpu_limits.json"
    path.write_text(json.dumps({"gflops": 51e3, "gflops_fp16": 740e3, "gbs": 3000.0, "values": [51e3]}))
    monkeypatch.setenv(GPU_LIMITS_ENV, str(path))
    assert saved_gpu_limits() == {"gflops": 51e3, "gflops_fp16": 740e3, "gbs": 3000.0, "values": [51e3],
                                  "from_file": str(path)}
    path.write_text("{\"gflops\": 51000}")  # no bandwidth: refused, not silently measured again
    with pytest.raises(UsageError, match="not a file of the GPU's limits"):
        saved_gpu_limits()


def test_cuda_limits_on_a_gpu():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from cnnexport.bench.schedule import cuda_limits

    from cnnexport.bench.schedule import gpu_ceilings_by_precision

    limits = cuda_limits()
    assert limits["gflops"] > 1000 and limits["gbs"] > 100
    # tensor cores: TF32 and the half types beat plain fp32 on every GPU cnnexport's GPU rows run on (sm 8.0+)
    assert limits["gflops_fp16"] > 2 * limits["gflops"] and limits["gflops_tf32"] > limits["gflops"]
    ceilings = gpu_ceilings_by_precision(limits)
    assert ceilings["fp32"] == limits["gflops_tf32"] and ceilings["fp16"] == limits["gflops_fp16"]


def test_layer_groups_that_beat_their_bound_are_named_with_the_assumption_that_broke():
    from cnnexport.profile.roofline_profile import BEAT_MARGIN, beating_groups

    def group(name, of_bound, limit, level="L2"):
        return {"name": name, "kind": "Conv 1x1", "level": level, "limit": limit, "bytes": 2e6, "of_bound": of_bound}
    rows = [group("a", 1.5, "memory"), group("b", 1 + BEAT_MARGIN / 2, "memory"), group("c", 2.0, "compute", "DRAM"),
            group("d", 0.6, "compute"), group("e", None, "memory")]
    beaten = beating_groups(rows)
    assert [b["name"] for b in beaten] == ["c", "a"]  # within the margin (b), under the bound (d), untimed (e): not
    assert "compute ceiling" in beaten[0]["assumption"] and "L2 bandwidth" in beaten[1]["assumption"]
    assert "2.00 MB" in beaten[1]["assumption"]

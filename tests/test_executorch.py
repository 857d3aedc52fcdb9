"""ExecuTorch: --executorch fp32 and int8 through the CLI, the delegation report, the rewrites that
keep a network inside XNNPACK, the refusal of a model torch.export cannot capture, verify and bench
on a .pte file."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

pytest.importorskip("executorch", reason="ExecuTorch is not installed (pip install 'cnnexport[executorch]')")

from cnnexport.cli import cli  # noqa: E402
from cnnexport.exporter.formats import ConvertSource  # noqa: E402
from cnnexport.exporter.formats import executorch as et  # noqa: E402
from cnnexport.runtimes import load  # noqa: E402
from conftest import UsersNet, export_uncapturable, randomize_bn_stats, shared_build  # noqa: E402



@pytest.fixture(scope="session")
def lenet_export(tmp_path_factory, worker_id):
    """One CLI export (fp32 + int8 .pte of the digits LeNet-5) per test run, shared by the xdist workers
    through a lock in the run's common temporary folder."""
    def build(out):
        result = CliRunner().invoke(cli, ["lenet5", "--weights", "digits", "--executorch", "--int8", "--calib",
                                          "digits", "--calib-count", "64", "-o", str(out), "--json"])
        assert result.exit_code == 0, result.output

    out = shared_build(tmp_path_factory, worker_id, "executorch-lenet5", build)
    return out, json.loads((out / "report.json").read_text())


@pytest.mark.xdist_group("executorch-lenet")  # on one worker: another would wait on the build
def test_export_writes_verified_fp32_and_int8_programs(lenet_export):
    out, report = lenet_export
    arts = {Path(a["path"]).name: a for a in report["artifacts"]}
    assert {"lenet5.pte", "lenet5.int8.pte"} <= set(arts)
    for name in ("lenet5.pte", "lenet5.int8.pte"):
        a = arts[name]
        assert (out / name).is_file() and a["runtime"] == "executorch" and a["static_batch"] == 1
        assert a["delegation"]["delegate"] == "XNNPACK" and a["delegation"]["delegated_ops"] > 0
    eq = {e["artifact"]: e for e in report["equivalence"]}
    assert eq["lenet5.pte"]["passed"] and eq["lenet5.pte"]["max_rel"] < 1e-4
    assert eq["lenet5.pte"]["top1_agreement"] == 1.0
    int8 = eq["lenet5.int8.pte"]
    assert int8["passed"] and int8["precision"] == "int8" and int8["cosine_mean"] >= 0.98
    # digits carry labels: the int8 program keeps the fp32 accuracy within half a point
    assert int8["accuracy_fp32"] - int8["accuracy_int8"] <= 0.005
    quant = next(q for q in report["quantization"] if q["runtime"] == "executorch")
    assert quant["calibration_samples"] > 0 and "artifact_details" not in quant


@pytest.mark.xdist_group("executorch-lenet")  # on one worker: another would wait on the build
def test_verify_and_bench_read_a_pte_file(lenet_export):
    out, _ = lenet_export
    runner = CliRunner()
    verified = runner.invoke(cli, ["verify", str(out / "lenet5.pte"), "--reference", str(out / "reference.npz"),
                                   "--json"])
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["runtime"]["runtime"] == "executorch"
    bench = runner.invoke(cli, ["bench", str(out / "lenet5.pte"), str(out / "lenet5.int8.pte"), "--rounds", "1",
                                "--runs", "3", "--warmup", "1", "--min-time", "0", "--no-ceiling", "--pick",
                                "--batch", "1,4", "--json"])
    assert bench.exit_code == 0, bench.output
    result = json.loads(bench.stdout)
    # a static batch-1 program at batch 4 runs four calls: the row says so rather than posing as a batch
    assert {(r["artifact"], r["batch"]): r["calls_per_batch"] for r in result["rows"]} == {
        ("lenet5.pte", 1): 1, ("lenet5.pte", 4): 4, ("lenet5.int8.pte", 1): 1, ("lenet5.int8.pte", 4): 4}
    rows = {r["artifact"]: r for r in result["rows"] if r["batch"] == 1}
    assert set(rows) == {"lenet5.pte", "lenet5.int8.pte"}
    assert all(r["runtime"] == "executorch" and r["median_ms"] > 0 and r["rounds"] == 1 for r in rows.values())
    assert rows["lenet5.int8.pte"]["precision"] == "int8" and rows["lenet5.int8.pte"]["int8_speedup"] > 0
    assert {p["precision"] for p in result["pick"]} == {"fp32", "int8"}


@pytest.mark.xdist_group("executorch-lenet")  # on one worker: another would wait on the build
def test_the_adapter_describes_the_program(lenet_export):
    out, _ = lenet_export
    model = load(out / "lenet5.pte", threads=1)
    assert model.inputs[0].shape == (1, 1, 32, 32) and model.inputs[0].dtype == "float32"
    assert model.outputs[0].shape == (1, 10)
    assert model.describe()["threads"] == 1
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    assert model.run_batches(x).shape == (3, 10)  # a static batch of 1, fed three times


@pytest.mark.xdist_group("executorch-lenet")  # on one worker: another would wait on the build
def test_quantize_on_a_pte_file_says_how_to_make_its_int8_file(lenet_export):
    out, _ = lenet_export
    result = CliRunner().invoke(cli, ["quantize", str(out / "lenet5.pte"), "--calib", "samples"])
    assert result.exit_code == 2
    assert "--executorch --int8" in result.output and "Traceback" not in result.output


class _BreaksOnCumsum(nn.Module):
    """Two convolutions with an operator XNNPACK does not take between them."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.b(torch.cumsum(self.a(x), dim=1))


class _SplitsAndMeans(nn.Module):
    """ShuffleNetV2's channel split and its head's mean over H, W."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.fc = nn.Conv2d(3, 8, 1), nn.Conv2d(4, 4, 3, padding=1), nn.Linear(8, 5)

    def forward(self, x):
        x1, x2 = self.a(x).chunk(2, dim=1)
        x = torch.cat([x1, self.b(x2).relu()], 1)
        return self.fc(x.mean([2, 3]))


def _convert(module, tmp_path, shape=(1, 3, 16, 16)):
    torch.manual_seed(0)
    module = module.eval()
    return et.convert(ConvertSource(module, tmp_path / "unused.onnx", shape), tmp_path / "m.pte"), module


def test_delegation_counts_a_fallback_between_partitions_as_a_graph_break(tmp_path):
    artifact, _ = _convert(_BreaksOnCumsum(), tmp_path)
    d = artifact.details["delegation"]
    assert d["portable_by_op"] == {"aten_cumsum_default": 1}
    assert d["delegated_partitions"] == 2 and d["graph_breaks"] == 1 and d["delegated_fraction"] < 1


def test_splits_and_means_are_rewritten_into_one_partition(tmp_path):
    artifact, module = _convert(_SplitsAndMeans(), tmp_path)
    d = artifact.details["delegation"]
    assert d["portable_ops"] == 0 and d["delegated_partitions"] == 1 and d["graph_breaks"] == 0
    assert len(artifact.graph_changes) == 2  # one line for the split, one for the mean
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(load(tmp_path / "m.pte").run(x.numpy())[0], expected, atol=1e-5)


def test_a_model_torch_export_cannot_capture_is_refused_and_nothing_is_written(tmp_path):
    out = tmp_path / "out"
    proc, lines = export_uncapturable(tmp_path, "--executorch")
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "torch.export cannot capture Net" in lines[0] and "torch.cond" in lines[0], lines
    assert proc.stdout == ""
    assert not out.exists() or not any(out.iterdir())


def test_local_response_norm_loads_and_matches(tmp_path):
    # torch lowers LRN to a 3-D average pool, which ExecuTorch's portable kernels lack: the program
    # would fail to load (OperatorMissing) without the rewrite
    module = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0))
    artifact, module = _convert(module, tmp_path)
    assert any("LocalResponseNorm" in c for c in artifact.graph_changes)
    x = torch.randn(1, 3, 16, 16) * 4
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(load(tmp_path / "m.pte").run(x.numpy())[0], expected, rtol=1e-5, atol=1e-5)


def test_cbam_converts_with_its_max_pools_and_channel_max_rewritten(tmp_path):
    """CBAM's adaptive max-pool is not Core ATen and its max over the channels fails XNNPACK's lowering: both are
    rewritten (a max-pool of kernel = stride, amax on the portable kernels) and the program matches PyTorch."""
    torch.manual_seed(0)
    artifact, module = _convert(randomize_bn_stats(UsersNet()), tmp_path)
    assert any(c.startswith("1 adaptive max-pool") for c in artifact.graph_changes)
    assert any(c.startswith("1 max over the channels done as amax") for c in artifact.graph_changes)
    assert artifact.details["delegation"]["portable_by_op"].get("aten_amax_default") == 1
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(load(tmp_path / "m.pte").run(x.numpy())[0], expected, rtol=1e-5, atol=1e-5)


def test_a_dynamic_batch_program_runs_any_batch_up_to_its_bound(tmp_path):
    torch.manual_seed(0)
    module = _SplitsAndMeans().eval()
    artifact = et.convert(ConvertSource(module, tmp_path / "unused.onnx", (1, 3, 16, 16), {"executorch_max_batch": 4}),
                          tmp_path / "m.pte")
    assert artifact.details["max_batch"] == 4 and "static_batch" not in artifact.details
    model = load(tmp_path / "m.pte")
    assert model.inputs[0].shape == (None, 3, 16, 16) and model.max_batch == 4
    x = torch.randn(6, 3, 16, 16)  # more than the bound: run in two batches (4 + 2)
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(model.run_batches(x.numpy()), expected, atol=1e-5)
    np.testing.assert_allclose(model.run(x[:3].numpy())[0], expected[:3], atol=1e-5)


@pytest.mark.xdist_group("executorch-lenet")  # on one worker: another would wait on the build
def test_a_corrupt_pte_file_is_one_line_naming_the_file(lenet_export, tmp_path):
    out, _ = lenet_export
    bad = tmp_path / "broken.pte"
    bad.write_bytes((out / "lenet5.pte").read_bytes()[:200])  # a truncated download
    result = CliRunner().invoke(cli, ["verify", str(bad), "--reference", str(out / "reference.npz")])
    assert result.exit_code not in (0, 1) and "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "broken.pte" in lines[0] and "ExecuTorch cannot load" in lines[0]


def test_relu6_is_quantized_at_its_output_with_its_convolution():
    """The XNNPACK quantizer fuses only ReLU: ours also observes conv + ReLU6 once, after the clamp, so that
    no int8 code is spent on the negative values ReLU6 zeroes (mobilenet_v2's held-out cosine 0.964 -> 0.971)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 4, 1)).eval()
    graph = torch.export.export(net, (torch.zeros(1, 3, 8, 8),), strict=False).module()
    observed = prepare_pt2e(graph, et._quantizer())
    clamps = [n for n in observed.graph.nodes if n.op == "call_function" and "hardtanh" in str(n.target)]
    assert len(clamps) == 1
    feeding = clamps[0].args[0]
    assert feeding.op == "call_function" and "conv2d" in str(feeding.target)  # no observer in between
    assert any(u.op == "call_module" and "activation_post_process" in u.target for u in clamps[0].users)
    with torch.no_grad():
        observed(torch.randn(2, 3, 8, 8))


def test_the_studies_take_runtime_executorch():
    from cnnexport.bench.plan import formats_for, parse_runtimes

    assert parse_runtimes("ort,et") == ["onnxruntime", "executorch"]
    assert formats_for(parse_runtimes("executorch")) == ["executorch"]
    for study in ("guidelines", "zoo"):
        result = CliRunner().invoke(cli, ["study", study, "--runtime", "executorch", "--help"])
        assert result.exit_code == 0 and "executorch" in result.output

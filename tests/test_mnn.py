"""MNN: --mnn fp32, --fp16 and --int8 through the CLI, verified against PyTorch; quantize, verify, bench
and eval on .mnn files; an operator MNN's converter lacks is one line, exit 7, nothing written."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

pytest.importorskip("MNN", reason="MNN is not installed (pip install 'cnnexport[mnn]')")

from cnnexport.cli import cli  # noqa: E402
from cnnexport.runtimes import load, run_nchw  # noqa: E402
from conftest import RadixAttention, one_line_export_failure  # noqa: E402


@pytest.fixture(scope="module")
def lenet_mnn(tmp_path_factory):
    out = tmp_path_factory.mktemp("mnn")
    result = CliRunner().invoke(cli, ["lenet5", "--weights", "digits", "--mnn", "--fp16", "--int8", "--calib", "digits",
                                      "--calib-count", "100", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_export_writes_verified_fp32_fp16_and_int8_files(lenet_mnn):
    out, report = lenet_mnn
    arts = {Path(a["path"]).name: a for a in report["artifacts"]}
    assert {"lenet5.mnn", "lenet5.fp16.mnn", "lenet5.int8.mnn"} <= set(arts)
    assert [arts[n]["precision"] for n in ("lenet5.mnn", "lenet5.fp16.mnn", "lenet5.int8.mnn")] == \
        ["fp32", "fp16", "int8"]
    assert arts["lenet5.fp16.mnn"]["size_bytes"] < 0.6 * arts["lenet5.mnn"]["size_bytes"]  # half-precision weights
    assert arts["lenet5.int8.mnn"]["size_bytes"] < 0.4 * arts["lenet5.mnn"]["size_bytes"]
    eq = {e["artifact"]: e for e in report["equivalence"]}
    assert eq["lenet5.mnn"]["passed"] and eq["lenet5.mnn"]["max_rel"] < 1e-5
    fp16 = eq["lenet5.fp16.mnn"]
    assert fp16["passed"] and fp16["precision"] == "fp16" and 1e-6 < fp16["max_rel"] < 1e-2  # rounded, not exact
    int8 = eq["lenet5.int8.mnn"]
    assert int8["passed"] and int8["cosine_mean"] >= 0.98 and int8["accuracy_drop_points"] <= 0.5
    quant = next(q for q in report["quantization"] if q["runtime"] == "mnn")
    assert quant["calibration_samples"] == 100


def test_the_adapter_runs_any_batch_and_matches_onnx_runtime(lenet_mnn):
    out, _ = lenet_mnn
    mnn, ort = load(out / "lenet5.mnn"), load(out / "lenet5.onnx")
    assert mnn.runtime == "mnn" and mnn.inputs[0].chw == [1, 32, 32] and mnn.describe()["version"]
    x = np.random.default_rng(0).standard_normal((7, 1, 32, 32)).astype(np.float32)
    for batch in (x[:1], x, x[:3]):  # a new size re-plans the session; results never leak between calls
        np.testing.assert_allclose(run_nchw(mnn, batch), run_nchw(ort, batch), rtol=1e-4, atol=1e-4)
    int8 = load(out / "lenet5.int8.mnn")
    assert run_nchw(int8, x).shape == (7, 10)  # the int8 graph takes any batch too


def test_verify_bench_quantize_and_eval_read_mnn_files(lenet_mnn, tmp_path):
    out, _ = lenet_mnn
    runner = CliRunner()
    result = runner.invoke(cli, ["verify", str(out / "lenet5.mnn"), "--reference", str(out / "reference.npz"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["passed"]  # and MNN's own start-up line did not reach stdout
    result = runner.invoke(cli, ["bench", str(out / "lenet5.mnn"), str(out / "lenet5.int8.mnn"), "--runs", "5",
                                 "--min-time", "0", "--rounds", "1", "--no-ceiling", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert {(r["runtime"], r["precision"]) for r in rows} == {("mnn", "fp32"), ("mnn", "int8")}
    dst = tmp_path / "q.int8.mnn"
    result = runner.invoke(cli, ["quantize", str(out / "lenet5.mnn"), "--calib", "digits", "-o", str(dst), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)["evaluation"]
    assert dst.is_file() and figures["accuracy_drop_points"] <= 0.5
    result = runner.invoke(cli, ["eval", str(out / "lenet5.mnn"), str(out / "lenet5.fp16.mnn"), "--data", "digits",
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert all(m["top1"] > 0.98 for m in json.loads(result.stdout)["models"])


def test_an_operator_mnn_lacks_is_one_line_exit_7_and_nothing_written(tmp_path):
    assert "IsNaN" in one_line_export_failure("conftest:make_nan_guard_net", "--mnn", tmp_path / "out")


@pytest.mark.parametrize("keepdims", [0, 1])
def test_the_reductions_mnn_misreads_are_rewritten_to_the_same_values(keepdims):
    """ReduceL1, L2, LogSum, LogSumExp and SumSquare with their axes as an input (opset 18): rewritten as sums,
    ONNX Runtime computes the same values either way."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from cnnexport.exporter.formats.mnn.onnx_reduces import REWRITTEN, rewrite_reduces

    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [helper.make_node(op, ["x", "axes"], [f"y{i}"], keepdims=keepdims) for i, op in enumerate(REWRITTEN)]
    shape = [2, 1, 4, 4] if keepdims else [2, 4, 4]
    graph = helper.make_graph(nodes, "reduces", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 4])],
                              [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, shape) for i in range(5)],
                              [axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = np.random.default_rng(0).uniform(0.5, 3.0, (2, 3, 4, 4)).astype(np.float32)  # LogSum needs sums > 0
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    assert rewrite_reduces(model) == len(REWRITTEN)
    onnx.checker.check_model(model)
    assert not {n.op_type for n in model.graph.node} & set(REWRITTEN)
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    for b, a in zip(before, after):
        assert a.shape == b.shape == tuple(shape)
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_an_l2_normalised_model_verifies_on_mnn(tmp_path):
    """F.normalize over the channels exports as ReduceL2, which MNN's converter reduced over every axis."""
    import cnnexport

    model = nn.Sequential(nn.Conv2d(3, 8, 3), _Normalize()).eval()
    report = cnnexport.export(model, (1, 3, 8, 8), tmp_path, formats=("mnn",), photos=False)
    entry = next(a for a in report["artifacts"] if a["format"] == "mnn")
    assert entry["graph_changes"] and entry["graph_changes"][0].startswith("1 ONNX reduction")
    assert all(e["passed"] for e in report["equivalence"]) and len(report["equivalence"]) == 2


class _Normalize(nn.Module):
    def forward(self, x):
        return nn.functional.normalize(x, dim=1)


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_softmaxes_over_a_middle_axis_are_shifted_to_the_same_values(opset):
    """A Softmax over any axis but the last gets its maximum subtracted first (MNN's kernel omits it); one over
    the last axis is left alone; ONNX Runtime computes the same values either way, at logits up to +-200."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from cnnexport.exporter.formats.mnn.onnx_softmax import stabilize_softmaxes

    axes = [1, -2, -1, 3]
    nodes = [helper.make_node("Softmax", ["x"], [f"y{i}"], axis=a) for i, a in enumerate(axes)]
    graph = helper.make_graph(nodes, "softmaxes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5])],
                              [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [2, 3, 4, 5]) for i in range(4)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    x = np.random.default_rng(0).uniform(-200, 200, (2, 3, 4, 5)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    assert stabilize_softmaxes(model) == 2  # axes 1 and -2; -1 and 3 are the last
    onnx.checker.check_model(model)
    assert sum(n.op_type == "ReduceMax" for n in model.graph.node) == 2
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    for b, a in zip(before, after):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-30)


def test_a_softmax_over_the_radix_axis_verifies_on_mnn(tmp_path):
    """Before the shift MNN's file gave 0.5 and 0.5 where 1 and 0 were due (resnest14d failed its check)."""
    import cnnexport

    torch.manual_seed(0)
    model = RadixAttention().eval()
    logits = model.conv(torch.randn(16, 3, 8, 8)).mean((2, 3)) * 100 + 150
    assert (logits.view(16, 2, 16).min(1).values > 87).float().mean() > 0.5  # both of a pair past Exp's range
    report = cnnexport.export(model, (1, 3, 8, 8), tmp_path, formats=("mnn",), photos=False)
    entry = next(a for a in report["artifacts"] if a["format"] == "mnn")
    assert any(c.startswith("1 softmax over a middle axis") for c in entry["graph_changes"])
    assert all(e["passed"] for e in report["equivalence"]) and len(report["equivalence"]) == 2

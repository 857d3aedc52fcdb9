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


class NanGuardNet(nn.Module):
    """A conv whose NaN outputs are zeroed: torch.isnan exports ONNX's IsNaN, which MNN's converter lacks."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

    def forward(self, x):
        y = self.conv(x)
        y = torch.where(torch.isnan(y), torch.zeros_like(y), y)
        return self.fc(y.mean((2, 3)))


def make_nan_guard_net(num_classes: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return NanGuardNet().eval()


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
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["test_mnn:make_nan_guard_net", "--input-size", "3,8,8", "--mnn", "-o", str(out)])
    assert result.exit_code == 7, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "IsNaN" in lines[0] and "--mnn" in lines[0]
    assert not out.exists()

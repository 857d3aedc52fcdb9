"""fp16 as a precision: --fp16 writes the ONNX, OpenVINO and TFLite fp16 files, each checked against
fp32 PyTorch by fp16's own rule (max abs error, cosine and top-1 on the photographs); --fp16-io; the
ops that overflow in fp16 stay fp32; a file that fp16 breaks is refused with nothing written."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from torch import nn

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'cnnexport[openvino]')")
pytest.importorskip("ai_edge_quantizer", reason="the TFLite converter is not installed (pip install 'cnnexport[tflite]')")

from cnnexport.cli import cli  # noqa: E402
from cnnexport.exporter.formats.onnx.onnx_fp16 import KEEP_FP32_MODULES  # noqa: E402
from cnnexport.exporter.verify import FP16_MIN_COSINE, Equivalence, fp16_verdict, tie_flips  # noqa: E402
from cnnexport.runtimes import load, run_nchw  # noqa: E402

FLOAT16 = onnx.TensorProto.FLOAT16


@pytest.fixture(scope="module")
def lenet_fp16(tmp_path_factory):
    out = tmp_path_factory.mktemp("fp16")
    result = CliRunner().invoke(cli, ["lenet5", "--weights", "digits", "--openvino", "--tflite", "--fp16", "-o",
                                      str(out), "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_fp16_writes_verified_onnx_openvino_and_tflite_files(lenet_fp16):
    out, report = lenet_fp16
    arts = {Path(a["path"]).name: a for a in report["artifacts"]}
    eq = {e["artifact"]: e for e in report["equivalence"]}
    for fp32, fp16 in (("lenet5.onnx", "lenet5.fp16.onnx"), ("lenet5.xml", "lenet5.fp16.xml"),
                       ("lenet5.tflite", "lenet5.fp16.tflite")):
        assert arts[fp16]["precision"] == "fp16" and arts[fp32]["precision"] == "fp32"
        assert (out / fp16).is_file()
        e = eq[fp16]
        assert e["passed"] and e["precision"] == "fp16"
        assert 1e-6 < e["max_rel"] < 1e-2  # rounded, not exact
        check = e["fp16_check"]
        assert check["on"] == "photos" and check["min_cosine"] == FP16_MIN_COSINE
        assert check["cosine"] >= FP16_MIN_COSINE and check["top1_agreement"] == 1.0
        assert "cosine >= 0.9999" in e["tolerance_rule"] and "top-1 agreement 100%" in e["tolerance_rule"]
    # weights at half the bytes: the .bin (OpenVINO), the whole file (ONNX, TFLite; lenet5's graph is a
    # larger share of its small file than a real network's)
    assert (out / "lenet5.fp16.bin").stat().st_size <= 0.52 * (out / "lenet5.bin").stat().st_size
    for name in ("onnx", "tflite"):
        assert arts[f"lenet5.fp16.{name}"]["size_bytes"] <= 0.6 * arts[f"lenet5.{name}"]["size_bytes"]
    assert arts["lenet5.fp16.onnx"]["fp16"]["io"] == "fp32"


def test_the_fp16_files_hold_fp16_weights(lenet_fp16):
    out, _ = lenet_fp16
    model = onnx.load(str(out / "lenet5.fp16.onnx"))
    weights = [t for t in model.graph.initializer if len(t.dims) >= 2]
    assert weights and all(t.data_type == FLOAT16 for t in weights)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O by default
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert 'element_type="f16"' in (out / "lenet5.fp16.xml").read_text()
    assert 'element_type="f16"' not in (out / "lenet5.xml").read_text()
    from ai_edge_litert.interpreter import Interpreter

    dtypes = {d["dtype"] for d in Interpreter(model_path=str(out / "lenet5.fp16.tflite")).get_tensor_details()}
    assert np.float16 in dtypes


def test_fp16_files_run_on_every_runtime_close_to_fp32(lenet_fp16):
    out, _ = lenet_fp16
    x = np.random.default_rng(1).standard_normal((4, 1, 32, 32)).astype(np.float32)
    ref = run_nchw(load(out / "lenet5.onnx"), x)
    for name in ("lenet5.fp16.onnx", "lenet5.fp16.xml", "lenet5.fp16.tflite"):
        got = run_nchw(load(out / name, **({"layout": "NHWC"} if name.endswith(".tflite") else {})), x)
        assert got.dtype == np.float32 and not np.array_equal(got, ref)
        np.testing.assert_allclose(got, ref, atol=1e-2 * np.abs(ref).max())


def test_verify_and_eval_take_fp16_files(lenet_fp16):
    out, _ = lenet_fp16
    runner = CliRunner()
    for name in ("lenet5.fp16.onnx", "lenet5.fp16.xml"):  # fp16's own rule, as at export
        result = runner.invoke(cli, ["verify", str(out / name), "--reference", str(out / "reference.npz"), "--json"])
        assert result.exit_code == 0, result.output
        checked = json.loads(result.stdout)
        assert checked["passed"] and checked["fp16_check"]["on"] == "photos" and checked["max_rel"] > 1e-6
    result = runner.invoke(cli, ["eval", str(out / "lenet5.onnx"), str(out / "lenet5.fp16.xml"),
                                 str(out / "lenet5.fp16.tflite"), "--data", "digits", "--json"])
    assert result.exit_code == 0, result.output
    top1 = [m["top1"] for m in json.loads(result.stdout)["models"]]
    assert min(top1) > 0.98 and max(top1) - min(top1) <= 0.005


def test_fp16_io_gives_an_onnx_file_that_takes_and_returns_fp16(tmp_path):
    out = tmp_path / "o"
    result = CliRunner().invoke(cli, ["lenet5", "--weights", "digits", "--fp16", "--fp16-io", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    entry = next(e for e in report["equivalence"] if e["artifact"] == "lenet5.fp16.onnx")
    assert entry["passed"]
    model = onnx.load(str(out / "lenet5.fp16.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == FLOAT16
    assert model.graph.output[0].type.tensor_type.elem_type == FLOAT16
    m = load(out / "lenet5.fp16.onnx")
    assert m.inputs[0].dtype == "float16"
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    assert m.run(x)[0].dtype == np.float16 and m.run(x.astype(np.float16))[0].shape == (2, 10)


class LrnNet(nn.Module):
    """Activations near 1000 through LRN: their squares (1e6) overflow fp16's 65504."""

    def __init__(self):
        super().__init__()
        self.conv, self.lrn, self.fc = nn.Conv2d(3, 8, 3), nn.LocalResponseNorm(5, alpha=1e-4 * 5, k=2.0), nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.lrn(torch.relu(self.conv(x) * 1000.0)).mean((2, 3)))


def make_lrn_net(num_classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return LrnNet().eval()


def test_lrn_stays_fp32_and_the_report_says_why(tmp_path):
    out = tmp_path / "o"
    result = CliRunner().invoke(cli, ["test_fp16:make_lrn_net", "--input-size", "3,16,16", "--fp16", "-o", str(out),
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    art = next(a for a in report["artifacts"] if a["precision"] == "fp16")
    (kept,) = art["fp16"]["kept_fp32"]  # exported as a dozen plain ops, found by the module's scope
    assert kept["kept"] == "lrn" and kept["kind"] == "LocalResponseNorm" and kept["nodes"] >= 5
    assert kept["why"] == KEEP_FP32_MODULES["LocalResponseNorm"] and "65504" in kept["why"]
    model = onnx.load(str(out / "make_lrn_net.fp16.onnx"))
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    producers = {o: n for n in model.graph.node for o in n.output}
    squares = next(n for n in model.graph.node if n.name == "/lrn/Mul")  # x * x
    cast = producers[squares.input[0]]  # fed by a Cast to float
    assert cast.op_type == "Cast" and cast.attribute[0].i == onnx.TensorProto.FLOAT
    fp32_nodes = {n.name for n in model.graph.node if n.name.startswith("/lrn/") and n.op_type != "Constant"}
    for node in model.graph.node:  # no value inside the LRN is cast to fp16 on its way
        if node.op_type == "Cast" and node.attribute[0].i == FLOAT16:
            assert producers.get(node.input[0]) is None or producers[node.input[0]].name not in fp32_nodes - {"/lrn/Div"}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert types[conv.input[1]] == FLOAT16  # the rest is fp16
    assert next(e for e in report["equivalence"] if e.get("precision") == "fp16")["passed"]


class HugeWeightNet(nn.Module):
    """Weights beyond fp16's range (up to 2e5), scaled back after the ReLU: exact in fp32, clipped at
    65504 in fp16."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        with torch.no_grad():
            self.conv.weight.mul_(1e6)

    def forward(self, x):
        return (torch.relu(self.conv(x)) * 1e-6).mean((2, 3))


def make_huge_weight_net(num_classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return HugeWeightNet().eval()


def test_an_fp16_file_that_does_not_match_is_refused_and_nothing_written(tmp_path):
    out = tmp_path / "o"
    result = CliRunner().invoke(cli, ["test_fp16:make_huge_weight_net", "--input-size", "3,16,16", "--fp16", "-o",
                                      str(out)])
    assert result.exit_code == 5, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "make_huge_weight_net.fp16.onnx" in lines[0] and "fp16 does not match" in lines[0]
    assert not out.exists()


def _equivalence(cosine: float, top1: float, max_abs: float = 0.01, ties: int = 0) -> Equivalence:
    photos = {"input": "photos", "cosine": cosine, "top1_agreement": top1, "max_abs": max_abs, "max_rel": 0.0,
              "samples": 6, "tie_flips": ties}
    noise = {"input": "random_b1", "cosine": 0.5, "top1_agreement": 0.0, "max_abs": max_abs, "max_rel": 0.0,
             "samples": 1}
    return Equivalence("m.fp16.onnx", max_abs, 0.0, 0.5, 0.9, True, 0.05, 7, [noise, photos], 1.0, "5e-02 x max |output|")


@pytest.mark.parametrize("cosine,top1,max_abs,ties,passed", [
    (0.99995, 1.0, 0.01, 0, True),   # noise inputs may disagree; the photographs decide
    (0.9998, 1.0, 0.01, 0, False),
    (0.99995, 5 / 6, 0.01, 0, False),
    (0.99995, 5 / 6, 0.01, 1, True),  # the one change is a tie
    (0.99995, 4 / 6, 0.01, 1, False),
    (0.99995, 1.0, 0.06, 0, False),  # over the max-abs bound
])
def test_the_fp16_rule(cosine, top1, max_abs, ties, passed):
    entry = fp16_verdict(_equivalence(cosine, top1, max_abs, ties))
    assert entry["passed"] is passed and entry["precision"] == "fp16"
    assert entry["fp16_check"] == {"on": "photos", "cosine": cosine, "min_cosine": FP16_MIN_COSINE,
                                   "top1_agreement": top1, "tie_flips": ties}
    assert ("failure" in entry) is not passed


def test_a_tie_flip_is_counted_only_within_the_margin():
    ref = np.array([[1.0, 0.9995, -3.0], [1.0, 0.5, -3.0]])  # scale 3: a tie below 3e-3 apart
    swapped = ref[:, [1, 0, 2]]
    assert tie_flips(ref, swapped) == 1 and tie_flips(ref, ref) == 0


def test_fp16_io_needs_fp16(tmp_path):
    result = CliRunner().invoke(cli, ["lenet5", "--fp16-io", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--fp16" in result.stderr and not (tmp_path / "o").exists()


def test_bench_measures_fp16_files_of_a_model(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "lenet5", "--runtime", "onnxruntime,openvino", "--precision",
                                      "fp32,fp16", "--runs", "3", "--min-time", "0", "--rounds", "1", "--no-ceiling",
                                      "-o", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert {(r["runtime"], r["precision"]) for r in rows} == {
        ("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("openvino", "fp32"), ("openvino", "fp16")}


@pytest.mark.parametrize("scale,hint", [(1e-17, "near zero"), (1e11, "past fp16's largest value"), (10.0, None)])
def test_an_fp16_failure_says_when_the_outputs_are_outside_fp16s_range(scale, hint):
    eq = _equivalence(0.5, 1.0)
    eq.output_scale = scale
    failure = fp16_verdict(eq)["failure"]
    assert (hint in failure) if hint else ("near zero" not in failure and "largest" not in failure)

"""A model trained with quantization-aware training (torch.ao.quantization, eager and FX): its int8 files keep the
scales it trained (ONNX Runtime's QDQ file with int8 weights, OpenVINO's IR from it), checked against the QAT model
itself; its fp32 files hold its float weights with BatchNorm folded."""

import json
import warnings

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import cnnexport
from cnnexport.cli import cli
from cnnexport.exporter.qat import QDQ, is_qat, qat_twins
from cnnexport.runtimes import load, run_nchw

warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")


class DigitsNet(nn.Module):
    """Conv-BN-ReLU blocks, a residual add (FloatFunctional, as eager-mode quantization wants it) and a classifier,
    between QuantStub and DeQuantStub."""

    def __init__(self):
        super().__init__()
        from torch.ao import quantization as tq

        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(1, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU()
        self.conv2, self.bn2 = nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.add = torch.ao.nn.quantized.FloatFunctional()
        self.pool = nn.AvgPool2d(4)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = self.quant(x)
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.add.add(y, self.bn2(self.conv2(y)))
        return self.dequant(self.fc(self.pool(y).flatten(1)))


def make_qat_digits_net(steps: int = 150) -> nn.Module:
    """DigitsNet fused and prepared for QAT in eager mode (x86's qconfig: per-channel int8 weights, 7-bit
    activations), trained ``steps`` steps on the digits' training split, returned in eval mode."""
    from torch.ao import quantization as tq

    torch.manual_seed(0)
    model = tq.fuse_modules_qat(DigitsNet().train(), [["conv1", "bn1", "relu1"], ["conv2", "bn2"]])
    model.qconfig = tq.get_default_qat_qconfig("x86")
    return _train(tq.prepare_qat(model), steps)


class PlainDigitsNet(nn.Module):
    """DigitsNet as people write it for FX mode: no stubs, a residual `+`."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, 2, 1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.pool, self.fc = nn.AvgPool2d(4), nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = y + self.bn2(self.conv2(y))
        return self.fc(self.pool(y).flatten(1))


def make_fx_qat_digits_net(steps: int = 150) -> nn.Module:
    """PlainDigitsNet prepared by prepare_qat_fx (a GraphModule; the add's observer is shared by two names) and
    trained as make_qat_digits_net is."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    torch.manual_seed(0)
    model = prepare_qat_fx(PlainDigitsNet().train(), get_default_qat_qconfig_mapping("x86"),
                           (torch.zeros(2, 1, 32, 32),))
    return _train(model, steps)


def _train(model: nn.Module, steps: int) -> nn.Module:
    from torch.ao import quantization as tq

    from cnnexport.calib.digits import load_digits

    digits = load_digits()
    x, y = torch.from_numpy(digits.x_train), torch.from_numpy(digits.y_train).long()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        idx = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == steps * 9 // 10:  # scales and BatchNorm statistics fixed for the last steps, as QAT recipes do
            model.apply(tq.disable_observer)
            model.apply(torch.ao.nn.intrinsic.qat.freeze_bn_stats)
    model.cnnexport_preprocess = {"mean": (0.5,), "std": (0.5,), "crop_fraction": 1.0}  # the digits' own
    return model.eval()


@pytest.fixture(scope="module")
def qat_model():
    return make_qat_digits_net()


def test_the_int8_twin_computes_what_the_qat_model_computes(qat_model):
    """The int8 twin (fixed quantize-dequantize, BatchNorm folded into the quantized weights) gives the QAT model's
    own eval outputs; the float twin has no fake-quantize module left and computes without quantization."""
    twins = qat_twins(qat_model)
    assert is_qat(qat_model) and not is_qat(twins.int8) and not is_qat(twins.float)
    assert twins.summary["layers"] == 3 and twins.summary["activations"] >= 4
    assert "0..127" in twins.summary["widened_ranges"]  # x86's 7-bit activations, written on 0..255
    from cnnexport.calib.digits import load_digits

    x = torch.from_numpy(load_digits().x_test[:64])  # inputs in the range the model trained on
    with torch.no_grad():
        ref, int8, flt = twins.reference(x), twins.int8(x), twins.float(x)
    cos = nn.functional.cosine_similarity(ref.flatten(), int8.flatten(), 0).item()
    assert cos > 0.99 and (ref.argmax(1) == int8.argmax(1)).float().mean() >= 0.95
    for qdq in (m for m in twins.int8.modules() if isinstance(m, QDQ)):
        qdq.low, qdq.high = qdq.trained_range  # on the ranges it trained on, the twin is the QAT model exactly
    with torch.no_grad():
        assert torch.allclose(twins.int8(x), ref, atol=1e-5)
    for qdq in (m for m in twins.int8.modules() if isinstance(m, QDQ)):
        qdq.forward = lambda t: t  # the int8 twin without its quantize-dequantize steps is the float twin
    with torch.no_grad():
        assert torch.allclose(twins.int8(x), flt, atol=1e-5) and not torch.allclose(flt, ref, atol=1e-3)
    assert (flt.argmax(1) == ref.argmax(1)).float().mean() >= 0.9


def test_export_int8_keeps_the_trained_scales_with_int8_weights_and_verifies(qat_model, tmp_path):
    out = tmp_path / "out"
    report = cnnexport.export(qat_model, (1, 1, 32, 32), out, formats=("openvino",), int8=True, eval_source="digits",
                              eval_count=200)
    assert [(a["format"], a["precision"]) for a in report["artifacts"]] == [
        ("onnx", "fp32"), ("openvino", "fp32"), ("onnx", "int8"), ("openvino", "int8")]
    assert all(e["passed"] for e in report["equivalence"])
    int8 = {e["artifact"]: e for e in report["equivalence"] if e.get("precision") == "int8"}
    assert int8["digitsnet.int8.onnx"]["cosine_mean"] > 0.99  # against the QAT model itself
    assert int8["digitsnet.int8.onnx"]["accuracy_int8"] > 0.8  # trained on digits, scored on their test split
    assert report["qat"]["layers"] == 3
    assert any("trained with quantization" in w for w in report["warnings"])
    graph = onnx.load(str(out / "digitsnet.int8.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") >= 3 and "BatchNormalization" not in ops
    int8_weights = [i for i in graph.initializer if len(i.dims) == 4 and i.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) == 2  # both convolutions' weights, as int8
    assert not [i for i in graph.initializer if len(i.dims) == 4 and i.data_type == onnx.TensorProto.FLOAT]
    assert report["quantization"][0]["int8_weights"] == 3 and report["quantization"][0]["int32_biases"] >= 2
    assert (out / "digitsnet.int8.onnx").stat().st_size < 0.6 * (out / "digitsnet.onnx").stat().st_size
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(out / "digitsnet.int8.onnx"), options, providers=["CPUExecutionProvider"])
    optimized = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert optimized.count("QLinearConv") == 2 and "Conv" not in optimized  # integer kernels, not float ones
    # the files compute what the QAT model computes, file against file too
    x = np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32)
    a = run_nchw(load(out / "digitsnet.int8.onnx"), x)
    b = run_nchw(load(out / "digitsnet.int8.xml"), x)
    assert np.allclose(a, b, atol=0.05 * np.abs(a).max())


def test_the_cli_exports_a_qat_checkpoint_without_calibration_data(qat_model, tmp_path):
    """`cnnexport net.py:make --weights qat.pt --int8`: the state_dict of a prepared QAT model (its scales in
    the fake-quantize modules' buffers) loads into the model the code builds; no --calib is needed."""
    torch.save(qat_model.state_dict(), tmp_path / "qat.pt")
    result = CliRunner().invoke(cli, [f"{__file__}:make_qat_untrained", "--weights", str(tmp_path / "qat.pt"),
                                      "--int8", "--eval", "digits", "--input-size", "1,32,32", "-o",
                                      str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {(a["format"], a["precision"]) for a in report["artifacts"]} == {("onnx", "fp32"), ("onnx", "int8")}
    assert all(e["passed"] for e in report["equivalence"])
    from cnnexport.calib.digits import load_digits

    x = load_digits().x_test[:100]  # the file keeps the checkpoint's scales: it agrees with the trained QAT model
    with torch.no_grad():
        ref = qat_twins(qat_model).reference(torch.from_numpy(x)).numpy()
    got = run_nchw(load(tmp_path / "out" / "make_qat_untrained.int8.onnx"), x)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.95
    verified = CliRunner().invoke(cli, ["verify", str(tmp_path / "out" / "make_qat_untrained.int8.onnx")])
    assert verified.exit_code == 0 and "accuracy QAT model" in verified.stdout, verified.output


def test_an_fx_prepared_qat_model_exports_with_its_shared_observer(tmp_path):
    """prepare_qat_fx's GraphModule: its observers are graph nodes, one of them under two names (an add's input
    and output); it was an internal error (a GraphModule's forward has no __module__), then a file still holding
    the fused fake-quantize op ONNX cannot write."""
    from torch.ao.quantization.fake_quantize import FakeQuantizeBase

    model = make_fx_qat_digits_net()
    observers = [m for _, m in model.named_children() if isinstance(m, FakeQuantizeBase)]  # each module once
    assert len(observers) < len([n for n, m in model._modules.items() if isinstance(m, FakeQuantizeBase)])
    report = cnnexport.export(model, (1, 1, 32, 32), tmp_path, name="fxnet", int8=True, eval_source="digits",
                              eval_count=200)
    assert report["qat"]["activations"] == len(observers)
    [int8] = [e for e in report["equivalence"] if e.get("precision") == "int8"]
    assert int8["passed"] and int8["cosine_mean"] > 0.99 and int8["accuracy_int8"] > 0.85
    assert report["qat"]["layers"] == 3 and report["quantization"][0]["int32_biases"] == 3


def make_qat_untrained() -> nn.Module:
    """The QAT model before training: the architecture a QAT checkpoint's state_dict loads into."""
    return make_qat_digits_net(steps=0)


def test_a_qat_layer_without_a_twin_is_named(tmp_path):
    from torch.ao import quantization as tq

    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(4 * 14, 3)).train()
    model = tq.fuse_modules_qat(model, [["0", "1"]])
    model.qconfig = tq.get_default_qat_qconfig("x86")
    model = tq.prepare_qat(model).eval()
    with pytest.raises(cnnexport.errors.UsageError, match="the QAT model holds ConvBn1d.*--int8 --calib"):
        qat_twins(model)


def test_without_int8_the_files_hold_the_float_weights_and_say_so(qat_model, tmp_path):
    report = cnnexport.export(qat_model, (1, 1, 32, 32), tmp_path / "f", photos=False)
    assert [a["precision"] for a in report["artifacts"]] == ["fp32"] and report["equivalence"][0]["passed"]
    assert any("--int8 writes int8 files from its trained scales" in w for w in report["warnings"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "f" / "digitsnet.onnx")).graph.node]
    assert "QuantizeLinear" not in ops and "BatchNormalization" not in ops
    with pytest.raises(cnnexport.errors.ParameterError, match="keep_float and calib_method"):
        cnnexport.export(qat_model, (1, 1, 32, 32), tmp_path / "k", int8=True, keep_float=("first",))
    assert not (tmp_path / "k").exists()


def test_eval_model_scores_a_qat_checkpoint_at_its_trained_scales(qat_model, tmp_path):
    """torch.ao's fake-quantize modules observe in eval mode too: `eval --model` moved the checkpoint's scales with
    every batch it scored. Loaded models have their observers off."""
    from cnnexport.calib.digits import load_digits
    from cnnexport.models import load_model

    import copy

    from torch.ao.quantization import enable_observer

    torch.save(copy.deepcopy(qat_model).apply(enable_observer).state_dict(), tmp_path / "qat.pt")  # saved observing
    spec = f"{__file__}:make_qat_untrained"
    loaded = load_model(spec, weights=str(tmp_path / "qat.pt"))
    assert all(int(m.observer_enabled) == 0 for m in loaded.modules() if hasattr(m, "observer_enabled"))
    args = ["eval", "--model", spec, "--weights", str(tmp_path / "qat.pt"), "--data", "digits", "--json"]
    unsized = CliRunner().invoke(cli, args)
    assert unsized.exit_code == 2 and "its code does not fix one): give --input-size" in unsized.stderr
    result = CliRunner().invoke(cli, [*args, "--input-size", "32"])
    assert result.exit_code == 0, result.output
    [scored] = json.loads(result.stdout)["models"]
    digits = load_digits()
    with torch.no_grad():
        expected = (qat_twins(qat_model).reference(torch.from_numpy(digits.x_test)).argmax(1).numpy()
                    == digits.y_test).sum()
    assert scored["top1_correct"] == expected

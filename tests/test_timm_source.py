"""timm as a model source (``cnnexport timm:NAME``): real timm architectures, random weights."""

import json

import onnx
import pytest
import torch
from click.testing import CliRunner

from cnnexport.cli import cli
from conftest import trained_bn_stats

timm_source = pytest.importorskip("cnnexport.models.timm_source")
try:
    timm = timm_source.import_timm()
except Exception as exc:  # the timm extra is not installed
    pytest.skip(f"timm is not installed ({exc}): pip install -c constraints.txt 'cnnexport[timm]'",
                allow_module_level=True)


def test_torchvision_imports_beside_the_cpu_torch():
    tv = timm_source.import_torchvision()
    from torchvision.ops.misc import FrozenBatchNorm2d  # what timm's norm layers import

    assert tv.__version__ and FrozenBatchNorm2d


@pytest.mark.parametrize("name", ["mobilenetv3_large_100", "repvgg_a0"])
def test_timm_models_export_folded_reparameterised_and_verified(tmp_path, name):
    """MobileNetV3 (BatchNormAct2d with hardswish; refused before graph-level folding) and RepVGG
    (reparameterised by its own blocks), through the CLI, with BN statistics from random batches."""
    from cnnexport.exporter.onnx_fold import count_affine_after_conv
    from cnnexport.models.timm_source import create_timm_model

    model = trained_bn_stats(create_timm_model(f"timm:{name}", num_classes=10), (1, 3, 64, 64))
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [f"timm:{name}", "--weights", str(weights), "--num-classes", "10",
                                      "--input-size", "64", "--no-simplify", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    graph = onnx.load(str(out / f"{name}.onnx"))
    ops = {n.op_type for n in graph.graph.node}
    assert "BatchNormalization" not in ops and count_affine_after_conv(graph) == 0
    assert report["equivalence"][0]["passed"] and report["prepare"]["check"]["passed"]
    if name.startswith("repvgg"):
        assert len(report["prepare"]["reparameterized"]) == 22
    else:
        assert "HardSwish" in ops and report["prepare"]["folded"] and not report["prepare"]["scale_shift"]
    assert report["preprocess"]["mean"] == list(model.pretrained_cfg["mean"])


def test_unknown_timm_name_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["timm:mobilenetv3_larg", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "not a timm architecture" in result.output
    assert "mobilenetv3_large_100" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_list_timm_pattern_lists_timms_architectures_with_the_size_each_command_uses():
    """As timm.list_models: every match, named as cnnexport takes it, with the input size export, eval and profile
    use for it."""
    result = CliRunner().invoke(cli, ["list", "timm:*mobilenetv4_conv_*", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {f"timm:{n}" for n in timm.list_models("*mobilenetv4_conv_*")} and len(rows) > 3
    built = timm_source.create_timm_model("timm:mobilenetv4_conv_large")
    assert tuple(rows["timm:mobilenetv4_conv_large"]["input_size"]) == built.cnnexport_input_size != (3, 224, 224)
    table = CliRunner().invoke(cli, ["list", "timm:mobilenetv4_conv_small"])
    assert table.exit_code == 0 and "timm:mobilenetv4_conv_small" in table.stdout and "3x224x224" in table.stdout
    none = CliRunner().invoke(cli, ["list", "timm:MobileNet*"])
    assert none.exit_code == 2 and "no timm architecture matches" in none.stderr
    # eval --model and profile take that size too (eval fixed none for a timm model, profile took 224)
    scored = CliRunner().invoke(cli, ["eval", "--model", "timm:mobilenetv4_conv_medium", "--num-classes", "10",
                                      "--data", "digits", "--limit", "4", "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["preprocess"]["size"] == [256, 256]
    profiled = CliRunner().invoke(cli, ["profile", "timm:mobilenetv4_conv_medium", "--json"])
    assert profiled.exit_code == 0, profiled.output
    assert json.loads(profiled.stdout)["input_shape"][2:] == [256, 256]


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv3_small_100"])
def test_frozen_batchnorms_fold_like_batchnorms(name):
    """timm's freeze_batch_norm_2d makes BatchNorm2d torchvision's FrozenBatchNorm2d and BatchNormAct2d
    FrozenBatchNormAct2d (buffers, their own arithmetic: no batch_norm call to fold); prepare folds them."""
    from cnnexport.exporter.prepare import prepare_with_summary
    from timm.layers import freeze_batch_norm_2d

    model = trained_bn_stats(timm.create_model(name, num_classes=10), (1, 3, 64, 64)).eval()
    norms = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    frozen = freeze_batch_norm_2d(model).eval()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in frozen.modules())
    prepared, summary = prepare_with_summary(frozen)
    assert len(summary.frozen_batchnorms) == len(summary.folded) == norms
    assert {f["type"] for f in summary.frozen_batchnorms} <= {"FrozenBatchNorm2d", "FrozenBatchNormAct2d"}
    assert not any("BatchNorm" in type(m).__name__ for m in prepared.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = frozen(x)
        assert (prepared(x) - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_user_code_that_imports_timm_exports(tmp_path):
    """A user's module importing timm failed as an internal error ('torchvision::nms does not exist':
    PyPI's torchvision beside the CPU torch); the export now makes torchvision importable and retries."""
    from conftest import run_cli

    (tmp_path / "mynet.py").write_text(
        "import timm\nfrom timm.layers import ConvNormAct\nfrom torch import nn\n\n"
        "def build():\n"
        "    return nn.Sequential(ConvNormAct(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))\n")
    proc = run_cli("mynet:build", "--input-size", "3,32,32", "-o", "out", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["equivalence"][0]["passed"] and len(report["prepare"]["folded"]) == 1


_LABELS = ["tulip", "oak", "fern", "moss", "ivy"]  # the model's output order, not sorted


def _hub_folder(folder, arch="test_resnet"):
    """A timm model folder as push_to_hub/save_for_hf writes it, with a fine-tuned model's own classes (named),
    input size and normalisation."""
    timm = timm_source.import_timm()
    from timm.models import save_for_hf

    model = timm.create_model(arch, num_classes=len(_LABELS))
    trained_bn_stats(model, (2, 3, 64, 64))
    model.pretrained_cfg = dict(model.pretrained_cfg, input_size=(3, 64, 64), crop_pct=1.0, mean=(0.5, 0.5, 0.5),
                                std=(0.25, 0.25, 0.25))
    save_for_hf(model, folder, model_config={"label_names": _LABELS})
    return model


def test_a_timm_model_folder_is_a_model_with_its_classes_size_and_preprocessing(tmp_path):
    """`cnnexport path/to/folder` (a Hub snapshot of a timm model): its architecture, classes, weights, input
    size and normalisation come from config.json, as timm's local-dir: builds it; `timm:NAME --weights folder`
    takes the same; a folder of another architecture, or of no model, is refused in one line."""
    model = _hub_folder(tmp_path / "snapshot")
    result = CliRunner().invoke(cli, [str(tmp_path / "snapshot"), "-o", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["model"] == "test_resnet" and report["input_shape"] == [1, 3, 64, 64]
    assert report["preprocess"]["mean"] == [0.5] * 3 and report["preprocess"]["std"] == [0.25] * 3
    assert report["preprocess"]["crop_fraction"] == 1.0 and report["equivalence"][0]["passed"]
    graph = onnx.load(str(tmp_path / "out" / "test_resnet.onnx")).graph
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == 5
    x = torch.randn(1, 3, 64, 64)
    loaded = timm_source.create_timm_from_folder(tmp_path / "snapshot")
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))  # the folder's weights, not random ones
    again = CliRunner().invoke(cli, ["timm:test_resnet", "--weights", str(tmp_path / "snapshot"), "-o",
                                     str(tmp_path / "out2"), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["input_shape"] == [1, 3, 64, 64]
    for args, code, words in ((["timm:test_byobnet", "--weights", str(tmp_path / "snapshot")], 3,
                               "holds a test_resnet (config.json), not a test_byobnet"),
                              ([str(tmp_path)], 2, "is no timm model folder"),
                              ([str(tmp_path / "snapshot"), "--weights", "w.pt"], 2, "its weights are inside it")):
        refused = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "refused")])
        assert refused.exit_code == code and words in refused.output, refused.output
        assert len(refused.output.strip().splitlines()) == 1 and not (tmp_path / "refused").exists()


def test_a_timm_model_folders_class_names_map_the_data_folders(tmp_path):
    """A folder's label_names travel with its export (report, reference.npz): eval of the model or its file maps
    an image folder's class subfolders to the outputs by name, not by sorted order (which would score the
    wrong classes), and refuses a subfolder that names no class."""
    from PIL import Image

    _hub_folder(tmp_path / "snapshot")
    data = tmp_path / "data"
    for k, name in enumerate(sorted(_LABELS)):
        (data / name).mkdir(parents=True)
        Image.new("RGB", (64, 64), (40 * k, 90, 200 - 30 * k)).save(data / name / "a.png")
    out = tmp_path / "out"
    export = CliRunner().invoke(cli, [str(tmp_path / "snapshot"), "-o", str(out), "--json"])
    assert export.exit_code == 0, export.output
    assert json.loads(export.output)["classes"] == _LABELS
    for args in (["--model", str(tmp_path / "snapshot")], [str(out / "test_resnet.onnx")]):
        result = CliRunner().invoke(cli, ["eval", *args, "--data", str(data), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["data"]["classes"] == _LABELS
    int8_args = ["--int8", "--calib", str(data), "--int8-min-cosine", "0", "--json"]  # random weights: any cosine
    quantized = CliRunner().invoke(cli, [str(tmp_path / "snapshot"), *int8_args, "-o", str(tmp_path / "int8")])
    assert quantized.exit_code == 0, quantized.output
    (int8,) = [e for e in json.loads(quantized.output)["equivalence"] if e.get("precision") == "int8"]
    assert int8["accuracy_fp32"] is not None  # the held-out half's labels, by the model's class names
    (data / "rose").mkdir()
    Image.new("RGB", (64, 64)).save(data / "rose" / "a.png")
    refused = CliRunner().invoke(cli, ["eval", str(out / "test_resnet.onnx"), "--data", str(data)])
    assert refused.exit_code == 2 and "rose" in refused.output and "label_names" in refused.output, refused.output
    # calibration needs no labels: a folder of other classes still calibrates, its top-1 left unmeasured
    quantized = CliRunner().invoke(cli, [str(tmp_path / "snapshot"), *int8_args, "-o", str(tmp_path / "int8b")])
    assert quantized.exit_code == 0, quantized.output
    (int8,) = [e for e in json.loads(quantized.output)["equivalence"] if e.get("precision") == "int8"]
    assert int8.get("accuracy_fp32") is None and int8["passed"]
    quantized = CliRunner().invoke(cli, ["quantize", str(out / "test_resnet.onnx"), "--calib", str(data), "--json"])
    assert quantized.exit_code == 0, quantized.output  # the file's reference.npz names its classes too
    assert json.loads(quantized.output)["evaluation"].get("accuracy_fp32") is None

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

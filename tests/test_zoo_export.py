"""Every registered model, at its real input size, through the export path: ONNX written,
simplified, no BatchNormalization or Dropout node, equivalence with PyTorch passing."""

import onnx
import pytest
import torch
from onnx import numpy_helper

import cnnexport
from cnnexport.models import create_model, list_models, model_info
from conftest import randomize_bn_stats

# One model per family and per structural variant (LRN, CIFAR stem, width multiplier, group
# count); the whole zoo through every format is benchmarks/coverage.py's job, and
# tests/test_coverage_table.py checks its committed results name every registered model.
REPRESENTATIVES = ["lenet5", "alexnet_lrn", "vgg11_bn", "googlenet", "inception_v3", "resnet20", "resnet50",
                   "resnext50_32x4d", "wide_resnet50_2", "densenet121", "squeezenet1_0", "mobilenet_v1_0_5",
                   "mobilenet_v2", "shufflenet_v1_g3", "shufflenet_v2_x1_0"]
BIG = {"vgg11_bn", "wide_resnet50_2"}


def test_the_representatives_are_registered_and_cover_every_family():
    assert set(REPRESENTATIVES) <= set(list_models())
    assert {model_info(n).family for n in REPRESENTATIVES} == {model_info(n).family for n in list_models()}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n
                                  for n in REPRESENTATIVES])
def test_every_model_exports_and_verifies(name, tmp_path):
    info = model_info(name)
    torch.manual_seed(0)
    model = randomize_bn_stats(create_model(name))
    report = cnnexport.export(model, (1, *info.input_size), tmp_path, name=name)
    g = report["graph"]
    assert g["batchnorm_nodes"] == 0 and g["dropout_nodes"] == 0, g["op_counts"]
    assert g["inputs"][0]["shape"] == ["batch", *info.input_size]
    (eq,) = report["equivalence"]
    assert eq["passed"] and eq["cosine"] > 0.9999, eq
    assert {p["input"] for p in eq["per_input"]} >= {"random_b1", "random_b3"}
    n_bn = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    folded, scale_shift = len(report["prepare"]["folded"]), len(report["prepare"]["scale_shift"])
    aux_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for h in getattr(model, "aux_heads", ())
                 for m in getattr(model, h).modules())
    assert folded + scale_shift == n_bn - aux_bn


def test_densenet_unfoldable_batchnorm_is_one_mul_and_one_add_with_constants(tmp_path):
    model = randomize_bn_stats(create_model("densenet121"))
    report = cnnexport.export(model, (1, 3, 224, 224), tmp_path, name="densenet121")
    scale_shift = report["prepare"]["scale_shift"]
    # norm1 of each of the 58 dense layers, the 3 transitions' norms and norm5: all after a concatenation
    assert len(scale_shift) == 58 + 3 + 1
    graph = onnx.load(str(tmp_path / "densenet121.onnx")).graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    muls = [n for n in graph.node if n.op_type == "Mul"]
    adds_after_mul = [n for n in graph.node if n.op_type == "Add" and any(i in {m.output[0] for m in muls}
                                                                           for i in n.input)]
    assert len(muls) == len(scale_shift) == len(adds_after_mul)
    for node in muls + adds_after_mul:
        shapes = [consts[i].shape for i in node.input if i in consts]
        assert len(shapes) == 1 and shapes[0][1:] == (1, 1) and shapes[0][0] > 1, shapes

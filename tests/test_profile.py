"""The profiler: params, MACs, memory access cost; PyTorch vs ONNX; thop; ShuffleNetV2's equations."""

import json
import math

import pytest
import torch
from click.testing import CliRunner
from hypothesis import assume, given, settings, strategies as st

from cnnexport.cli import cli
from cnnexport.profile.costs import (clever_format, conv1x1_flops, conv1x1_mac, conv1x1_mac_lower_bound,
                                      group_conv1x1_mac)
from cnnexport.exporter.onnx_export import to_onnx
from cnnexport.exporter.prepare import prepare
from cnnexport.profile.onnx_profile import compare, profile_onnx
from cnnexport.profile.torch_profile import profile_module
from cnnexport.exporter.simplify import simplify
from cnnexport.models import create_model, list_models, model_info
from conftest import run_cli

WITH_MACS = [n for n in list_models() if model_info(n).macs]


@pytest.mark.parametrize("name", WITH_MACS)
def test_macs_and_params_match_the_published_figures(name):
    info = model_info(name)
    prof = profile_module(create_model(name), (1, *info.input_size))
    tolerance = 0.01 if info.source.startswith("torchvision") and "paper" not in info.source else 0.02
    assert abs(prof.macs - info.macs) <= tolerance * info.macs, (prof.macs, info.macs)
    if info.torchvision_compatible:  # googlenet, inception_v3: without the training-only aux heads, as published
        assert prof.params == info.params


def test_design_figures():
    """The figures DESIGN.md quotes, to its precision."""
    for name, params, gmacs in (("resnet50", 25_557_032, 4.09), ("mobilenet_v2", 3_504_872, 0.30),
                                ("shufflenet_v2_x1_0", 2_278_604, 0.146), ("densenet121", 7_978_856, 2.83),
                                ("vgg16", 138_357_544, 15.47)):
        prof = profile_module(create_model(name), (1, 3, 224, 224))
        assert prof.params == params
        assert abs(prof.macs / 1e9 - gmacs) <= 0.01 * gmacs, name


def test_every_layer_kind_is_counted():
    prof = profile_module(create_model("shufflenet_v2_x0_5"), (1, 3, 64, 64))
    types = {layer.type for layer in prof.layers}
    assert {"Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Linear", "stack"} <= types  # stack: concat + shuffle
    shuffle = next(layer for layer in prof.layers if layer.name == "stage2.0/stack")
    assert shuffle.memory_access == 2 * (2 * 24 * 8 * 8)  # both halves read, the interleaved map written once
    conv = next(layer for layer in prof.layers if layer.name == "conv1.0")
    # 3x3 stride-2 conv 3->24 on 64x64: output 24x32x32, 27 MACs per output, MAC = in + out + weights
    assert conv.macs == 24 * 32 * 32 * 27 and conv.memory_access == 3 * 64 * 64 + 24 * 32 * 32 + 648
    lrn = profile_module(create_model("alexnet_lrn"), (1, 3, 227, 227))
    assert lrn.macs > 0 and any(layer.type == "LocalResponseNorm" and layer.memory_access for layer in lrn.layers)
    dw = profile_module(create_model("mobilenet_v2"), (1, 3, 224, 224))
    depthwise = next(layer for layer in dw.layers if layer.name == "features.1.conv.0.0")
    assert depthwise.macs == 32 * 112 * 112 * 9  # groups = channels: 9 MACs per output


def test_conv_transpose_and_dilation():
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, dilation=2, groups=2),
                                torch.nn.ConvTranspose2d(8, 6, 2, stride=2, groups=2))
    prof = profile_module(model, (1, 4, 10, 10))
    conv, deconv = prof.layers
    assert conv.macs == 8 * 6 * 6 * (4 // 2) * 9
    assert deconv.macs == 8 * 6 * 6 * (6 // 2) * 4  # every input element times out/groups x k x k


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "shufflenet_v2_x1_0", "densenet121", "googlenet",
                                  "squeezenet1_1", "lenet5"])
def test_pytorch_and_onnx_totals_agree(name, tmp_path):
    info = model_info(name)
    shape = (1, *info.input_size)
    model = create_model(name)
    path = tmp_path / "m.onnx"
    to_onnx(prepare(model), path, shape)
    simplify(path, path)
    t, o = profile_module(model, shape), profile_onnx(path)
    assert o.input_shape == list(shape)
    assert abs(o.macs - t.macs) <= 0.01 * t.macs
    assert abs(o.params - t.params) <= 0.01 * t.params
    result = compare(t, o)
    if any(layer.type == "BatchNorm2d" for layer in t.layers):
        assert any("BatchNorm layers were folded" in why for why in result["why_they_differ"])


def _thop_leaves(info: dict, prefix=""):
    for name, (ops, params, children) in info.items():
        full = f"{prefix}{name}"
        if children:
            yield from _thop_leaves(children, full + ".")
        else:
            yield full, ops, params


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "shufflenet_v2_x1_0", "squeezenet1_1", "alexnet",
                                  "densenet121"])
def test_conv_and_linear_macs_equal_thops(name):
    import thop

    model = create_model(name)
    shape = (1, *model_info(name).input_size)
    _, params, layers = thop.profile(model, inputs=(torch.randn(shape),), verbose=False, ret_layer_info=True)
    ours = {layer.name: layer for layer in profile_module(model, shape).layers}
    modules = dict(model.named_modules())
    checked = 0
    for layer_name, ops, _ in _thop_leaves(layers):
        if isinstance(modules.get(layer_name), (torch.nn.Conv2d, torch.nn.Linear)):
            assert ours[layer_name].macs == ops, layer_name
            checked += 1
    assert checked >= 8 and params == sum(p.numel() for p in model.parameters())


# --- ShuffleNetV2's Eq. 1 and Eq. 2 ----------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(h=st.integers(1, 64), w=st.integers(1, 64), c=st.integers(1, 512), k=st.integers(1, 16))
def test_eq1_mac_is_minimal_at_equal_channels_for_fixed_flops(h, w, c, k):
    c1, c2 = c, c * k * k  # same FLOPs as c1 = c2 = c*k, since c1*c2 = (c*k)^2
    balanced = conv1x1_mac(h, w, c * k, c * k)
    assert conv1x1_flops(h, w, c1, c2) == conv1x1_flops(h, w, c * k, c * k)
    assert conv1x1_mac(h, w, c1, c2) >= balanced
    assert math.isclose(balanced, conv1x1_mac_lower_bound(h, w, conv1x1_flops(h, w, c * k, c * k)), rel_tol=1e-9)
    assert conv1x1_mac(h, w, c1, c2) >= conv1x1_mac_lower_bound(h, w, conv1x1_flops(h, w, c1, c2)) * (1 - 1e-12)


@settings(max_examples=200, deadline=None)
@given(h=st.integers(1, 64), c1=st.integers(1, 256), c2=st.integers(1, 256), g=st.sampled_from([1, 2, 4, 8]),
       g2=st.sampled_from([2, 4, 8]))
def test_eq2_group_conv_mac_grows_with_groups_at_fixed_flops(h, c1, c2, g, g2):
    assume(g2 > g)
    b = conv1x1_flops(h, h, c1, c2, g)
    c2_wider = c2 * g2 / g  # widen the output so FLOPs stay B with more groups
    assert math.isclose(conv1x1_flops(h, h, c1, c2_wider, g2), b)
    assert group_conv1x1_mac(h, h, c1, c2_wider, g2) > group_conv1x1_mac(h, h, c1, c2, g)
    assert math.isclose(group_conv1x1_mac(h, h, c1, c2, g), h * h * c1 + b * g / c1 + b / (h * h))


def test_clever_format():
    assert clever_format(4_089_184_256) == "4.089G" and clever_format(25_557_032, "%.2f") == "25.56M"
    assert clever_format(648) == "648" and clever_format(1500) == "1.500K"


# --- CLI and TensorBoard ----------------------------------------------------------------------------

def test_profile_cli_json_csv_and_onnx(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["profile", "resnet18", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"params", "macs", "memory_access_bytes", "activation_bytes", "layers"} <= set(data)
    assert {"name", "type", "params", "macs", "memory_access_bytes", "output_shape"} <= set(data["layers"][0])
    assert data["memory_access_bytes"] == 4 * data["memory_access_bytes_int8"]
    assert data["published"]["macs"] == model_info("resnet18").macs
    csv_out = runner.invoke(cli, ["profile", "lenet5", "--csv"]).stdout.splitlines()
    assert csv_out[0].startswith("name,type,params,macs") and len(csv_out) > 8
    to_onnx(prepare(create_model("resnet18")), tmp_path / "r.onnx", (1, 3, 224, 224))
    onnx_json = json.loads(runner.invoke(cli, ["profile", str(tmp_path / "r.onnx"), "--batch", "2", "--json"]).stdout)
    assert onnx_json["source"] == "onnx" and onnx_json["input_shape"] == [2, 3, 224, 224]
    torch_json = json.loads(runner.invoke(cli, ["profile", "resnet18", "--batch", "2", "--json"]).stdout)
    assert onnx_json["macs"] == torch_json["macs"] == 2 * data["macs"]
    wrong = runner.invoke(cli, ["profile", str(tmp_path / "r.onnx"), "--input-size", "112"])
    assert wrong.exit_code == 2 and "does not fit the model's input" in wrong.stderr
    table = runner.invoke(cli, ["profile", "mobilenet_v2", "--per-layer", "--against-onnx"])
    assert table.exit_code == 0 and "features.1.conv.0.0" in table.stdout and "why:" in table.stdout


def test_profile_bad_input(tmp_path):
    result = CliRunner().invoke(cli, ["profile", "lenet5", "--input-size", "8"])
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "input shape" in result.stderr
    (tmp_path / "x.onnx").write_bytes(b"junk")
    assert CliRunner().invoke(cli, ["profile", str(tmp_path / "x.onnx")]).exit_code == 8


def test_a_half_precision_model_is_profiled_from_its_fp32_copy(tmp_path, monkeypatch):
    """It failed as 'cannot take input shape ... pass --input-size' (an fp32 probe into fp16 weights)."""
    (tmp_path / "halfnet_profile.py").write_text(
        "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).half()\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["profile", "halfnet_profile:build", "--input-size", "3,16,16", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["macs"] == 8 * 3 * 9 * 14 * 14


def test_an_onnx_file_with_an_open_image_size_needs_input_size(tmp_path):
    """profile set every dynamic dimension to 1: a 3x?x? resnet18 was profiled at 1x1 (11.7M MACs for 1.8G)."""
    model = prepare(create_model("resnet18"))
    path = tmp_path / "hw.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 64, 64),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    result = CliRunner().invoke(cli, ["profile", str(path)])
    assert result.exit_code == 2 and "'hw.onnx' does not fix its input size (3x?x?): pass --input-size" in result.stderr
    sized = CliRunner().invoke(cli, ["profile", str(path), "--input-size", "224", "--json"])
    assert sized.exit_code == 0, sized.output
    assert json.loads(sized.stdout)["macs"] == pytest.approx(1.814e9, rel=0.01)


@pytest.mark.parametrize("name", ["mobilenet_v2.xml", "m.int8.tflite", "m.mnn", "m.ncnn.param"])
def test_profile_of_an_exported_non_onnx_file_points_to_the_roofline(name):
    """It said "unknown model": the file is known, and profile --roofline reads it."""
    result = CliRunner().invoke(cli, ["profile", name])
    assert result.exit_code == 2 and "unknown model" not in result.stderr
    assert f"'{name}' is a" in result.stderr and "profile --roofline" in result.stderr


def test_tensorboard_event_file_holds_the_expected_tags(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = CliRunner().invoke(cli, ["profile", "resnet18", "--tensorboard", str(tmp_path / "tb")])
    assert result.exit_code == 0, result.output
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"histograms": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "weights_before_fold/conv1" in tags["histograms"] and "weights_after_fold/conv1" in tags["histograms"]
    assert len([t for t in tags["histograms"] if t.startswith("weights_after_fold/")]) == 21  # 20 convs + fc
    assert "inputs/samples" in tags["images"] and "weight_range_growth_after_fold" in tags["scalars"]


def _plain_shufflenet(tmp_path):
    """A plain ``torch.onnx.export`` (static batch 1, no simplification): the channel shuffle stays
    Shape -> Gather -> Reshape, which ONNX shape inference cannot resolve."""
    import torch

    from cnnexport.models import create_model

    path = tmp_path / "plain.onnx"
    torch.onnx.export(create_model("shufflenet_v2_x1_0").eval(), torch.zeros(1, 3, 224, 224), str(path),
                      dynamo=False, opset_version=17)
    return path


def test_profile_of_a_plain_export_resolves_every_shape(tmp_path):
    from cnnexport.profile.onnx_profile import macs_per_image
    from cnnexport.profile.onnx_profile import profile_onnx
    from cnnexport.profile.torch_profile import profile_module
    from cnnexport.models import create_model

    prof = profile_onnx(_plain_shufflenet(tmp_path))
    torch_macs = profile_module(create_model("shufflenet_v2_x1_0"), (1, 3, 224, 224)).macs
    assert prof.complete and prof.notes == []
    assert abs(prof.macs / torch_macs - 1) < 0.01 and 140e6 < prof.macs < 150e6
    assert macs_per_image(tmp_path / "plain.onnx") == prof.macs


def _mystery_onnx(path):
    """Conv -> an op of a custom domain (no shape function, no kernel) -> Conv: shapes after it are unknowable."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    w2 = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w2")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["a"], name="conv1"),
         helper.make_node("Mystery", ["a"], ["b"], name="mystery", domain="com.example"),
         helper.make_node("Conv", ["b", "w2"], ["y"], name="conv2")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])], [w, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, str(path))
    return path


def test_unknown_costs_make_the_profile_a_lower_bound_and_bench_leaves_gmacs_empty(tmp_path):
    from cnnexport.profile.onnx_profile import macs_per_image
    from cnnexport.profile.onnx_profile import profile_onnx

    path = _mystery_onnx(tmp_path / "mystery.onnx")
    prof = profile_onnx(path)
    assert not prof.complete and prof.unknown_shape_nodes == 2 and prof.macs == 36 * 4 * 27
    assert prof.as_dict()["totals_are_lower_bounds"] and "lower bounds" in prof.notes[0]
    assert macs_per_image(path) is None  # bench: no GMAC/s or % of ceiling from a lower bound
    proc = run_cli("profile", str(path))
    assert proc.returncode == 0, proc.stderr
    macs_line = next(line for line in proc.stdout.splitlines() if "MACs" in line)
    assert ">= " in macs_line and "lower bound" in macs_line


def test_a_scalar_is_a_known_shape_not_a_hole_in_the_profile(tmp_path):
    """A rank-0 tensor (a Gather of one dimension of Shape, as an LRN or a plain export's reshape makes)
    has the known shape []: the profile stays complete and counts its one element."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from cnnexport.profile.onnx_profile import profile_onnx

    index = numpy_helper.from_array(np.array(1, "int64"), "i")
    graph = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["s"], name="shape"),
         helper.make_node("Gather", ["s", "i"], ["c"], name="channels"),
         helper.make_node("Cast", ["c"], ["cf"], name="cast", to=TensorProto.FLOAT),
         helper.make_node("Mul", ["x", "cf"], ["y"], name="scale")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])], [index])
    path = tmp_path / "scalar.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    prof = profile_onnx(path)
    assert prof.complete and prof.unknown_shape_nodes == 0
    layers = {layer.name: layer for layer in prof.layers}
    assert layers["cast"].output_shape == [] and layers["cast"].output_elements == 1
    assert layers["scale"].memory_access == 48 + 1 + 48  # x, the scalar, y

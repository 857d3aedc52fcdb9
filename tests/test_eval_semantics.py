"""Eval semantics beyond Conv+BN: dropout flavours, more BatchNorm placements, weight norm,
per-sample normalisations, folding inside ONNX files."""

import json
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import cnnexport
from cnnexport.cli import cli
from cnnexport.exporter import fold_bn_into_next_conv, fold_conv_bn, prepare_with_summary
from cnnexport.models.layers import TraditionalDropout
from conftest import randomize_bn_stats


def ops(path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def export(model, shape, tmp_path, **kw):
    return cnnexport.export(model, shape, tmp_path, name="m", photos=False, **kw)


# --- 1. dropout, both kinds --------------------------------------------------------------------------

def test_traditional_dropout_semantics():
    torch.manual_seed(0)
    d = TraditionalDropout(0.3)
    x = torch.rand(10000) + 1
    y = d.train()(x)
    kept = y != 0
    assert torch.equal(y[kept], x[kept])  # training: no rescaling of kept units
    assert 0.65 < kept.float().mean() < 0.75
    torch.testing.assert_close(d.eval()(x), x * 0.7)  # inference: scaled by 1 - p
    torch.testing.assert_close(nn.Dropout(0.3).eval()(x), x)  # inverted dropout: identity at inference


@settings(max_examples=25, deadline=None)
@given(p=st.floats(0.0, 0.95), width=st.integers(1, 24), batch=st.integers(1, 4))
def test_traditional_dropout_folds_into_the_next_linear(p, width, batch):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, width), nn.ReLU(), TraditionalDropout(p), nn.Linear(width, 3)).eval()
    prepared, summary = prepare_with_summary(model)
    assert [(d["into"], d["kind"]) for d in summary.dropout_folded] == [("3", "next_layer")]
    assert not any(isinstance(m, TraditionalDropout) for m in prepared.modules())
    x = torch.randn(batch, 8)
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), model(x), atol=1e-5, rtol=1e-5)


def test_traditional_dropout_folds_through_pooling_and_flatten_or_into_the_previous_layer(tmp_path):
    head = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), TraditionalDropout(0.4), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 2)).eval()
    tail = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5), TraditionalDropout(0.25)).eval()
    for model, into, kind in ((head, "5", "next_layer"), (tail, "2", "previous_layer")):
        report = export(model, (1, 3, 8, 8), tmp_path / kind)
        (fold,) = report["prepare"]["dropout_folded"]
        assert (fold["into"], fold["kind"]) == (into, kind)
        counts = ops(tmp_path / kind / "m.onnx")
        assert "Dropout" not in counts and "Mul" not in counts  # no extra Mul left
        assert report["equivalence"][0]["passed"] and report["equivalence"][0]["max_rel"] < 1e-5


class FunctionalDropouts(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.d2 = nn.Dropout2d(0.3)
        self.alpha = nn.AlphaDropout(0.2)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.d2(self.conv(x))
        x = F.dropout(x, 0.5, training=self.training)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(self.alpha(x))


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_dropout2d_alpha_and_functional_dropout_leave_no_node(tmp_path, exporter):
    report = export(FunctionalDropouts().train(), (1, 3, 8, 8), tmp_path, exporter=exporter)
    counts = ops(tmp_path / "m.onnx")
    assert "Dropout" not in counts and report["graph"]["dropout_nodes"] == 0
    assert report["equivalence"][0]["passed"] and report["prepare"]["was_training"]


# --- 2. more BatchNorm placements -------------------------------------------------------------------

def test_batchnorm1d_after_linear_folds_into_it():
    lin, bn = nn.Linear(6, 5), randomize_bn_stats(nn.BatchNorm1d(5)).eval()
    x = torch.randn(4, 6)
    with torch.no_grad():
        torch.testing.assert_close(fold_conv_bn(lin, bn)(x), bn(lin(x)), atol=1e-5, rtol=1e-5)


@settings(max_examples=30, deadline=None)
@given(groups=st.sampled_from([1, 2, 3]), per_group_in=st.integers(1, 3), per_group_out=st.integers(1, 3),
       stride=st.integers(1, 3), kernel=st.sampled_from([1, 2, 3]), padding=st.integers(0, 1),
       bias=st.booleans(), seed=st.integers(0, 1000))
def test_batchnorm_after_conv_transpose_folds(groups, per_group_in, per_group_out, stride, kernel, padding, bias,
                                              seed):
    torch.manual_seed(seed)
    conv = nn.ConvTranspose2d(groups * per_group_in, groups * per_group_out, kernel, stride, padding,
                              groups=groups, bias=bias)
    bn = randomize_bn_stats(nn.BatchNorm2d(groups * per_group_out), seed).eval()
    x = torch.randn(2, groups * per_group_in, 5, 4)
    with torch.no_grad():
        expected = bn(conv(x))
        torch.testing.assert_close(fold_conv_bn(conv, bn)(x), expected, atol=1e-5 * expected.abs().max().item() + 1e-6,
                                   rtol=1e-5)


@settings(max_examples=30, deadline=None)
@given(groups=st.sampled_from([1, 2, 4]), cin_g=st.integers(1, 3), cout_g=st.integers(1, 3),
       kernel=st.sampled_from([1, 3]), stride=st.integers(1, 2), seed=st.integers(0, 1000))
def test_batchnorm_before_an_unpadded_conv_folds_into_it(groups, cin_g, cout_g, kernel, stride, seed):
    torch.manual_seed(seed)
    bn = randomize_bn_stats(nn.BatchNorm2d(groups * cin_g), seed).eval()
    conv = nn.Conv2d(groups * cin_g, groups * cout_g, kernel, stride, groups=groups)
    x = torch.randn(2, groups * cin_g, 7, 6)
    with torch.no_grad():
        expected = conv(bn(x))
        torch.testing.assert_close(fold_bn_into_next_conv(bn, conv)(x), expected,
                                   atol=1e-5 * expected.abs().max().item() + 1e-6, rtol=1e-5)


class Placements(nn.Module):
    """BN before an unpadded conv that also absorbs the BN after it; ReLU -> BN -> ReLU -> conv (not
    foldable); conv -> BN; ConvTranspose -> BN; Linear -> BN1d."""

    def __init__(self):
        super().__init__()
        self.bn_in = nn.BatchNorm2d(3)
        self.conv1 = nn.Conv2d(3, 6, 1)        # unpadded: absorbs bn_in, and bn_1 after it
        self.bn_1 = nn.BatchNorm2d(6)
        self.bn_relu = nn.BatchNorm2d(6)       # between two ReLUs: becomes scale+shift
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.bn_pad = nn.BatchNorm2d(6)        # conv2 absorbs it (it follows conv2)
        self.up = nn.ConvTranspose2d(6, 4, 2, stride=2)
        self.bn_up = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)
        self.bn_fc = nn.BatchNorm1d(5)

    def forward(self, x):
        x = F.relu(self.bn_1(self.conv1(self.bn_in(x))))
        x = self.bn_pad(self.conv2(F.relu(self.bn_relu(x))))
        x = self.bn_up(self.up(x))
        return self.bn_fc(self.fc(x.mean((2, 3))))


def test_bn_placements_are_folded_or_made_scale_and_shift_and_reported(tmp_path):
    model = randomize_bn_stats(Placements()).eval()
    report = export(model, (1, 3, 8, 8), tmp_path)
    folded = {f["batchnorm"]: (f["into"], f["kind"]) for f in report["prepare"]["folded"]}
    assert folded == {"bn_in": ("conv1", "next"), "bn_1": ("conv1", "previous"), "bn_pad": ("conv2", "previous"),
                      "bn_up": ("up", "previous"), "bn_fc": ("fc", "previous")}
    (ss,) = report["prepare"]["scale_shift"]
    assert ss["batchnorm"] == "bn_relu" and "relu" in ss["reason"]
    counts = ops(tmp_path / "m.onnx")
    assert "BatchNormalization" not in counts and counts["Mul"] == 1 and counts["Add"] == 1
    kinds = Counter()
    for r in report["graph"]["folded"]:
        kinds[(r["what"], r["into"])] += r["count"]
    assert kinds[("BatchNorm2d", "Conv2d")] == 3 and kinds[("BatchNorm1d", "Linear")] == 1
    assert kinds[("BatchNorm2d", "ConvTranspose2d")] == 1 and kinds[("BatchNorm2d", "Mul+Add (scale and shift)")] == 1
    assert report["equivalence"][0]["passed"]


def test_bn_before_a_padded_conv_is_not_folded_into_it():
    model = randomize_bn_stats(nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3, padding=1))).eval()
    prepared, summary = prepare_with_summary(model)
    assert summary.folded == [] and len(summary.scale_shift) == 1
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), model(x), atol=1e-5, rtol=1e-5)


# --- 3. weight normalisation ------------------------------------------------------------------------

@pytest.mark.parametrize("api", ["parametrizations", "legacy"])
def test_weight_norm_is_removed_before_export(tmp_path, api):
    wn = torch.nn.utils.parametrizations.weight_norm if api == "parametrizations" else torch.nn.utils.weight_norm
    torch.manual_seed(0)
    model = nn.Sequential(wn(nn.Conv2d(3, 4, 3)), nn.ReLU(), nn.Flatten(), wn(nn.Linear(4 * 6 * 6, 3))).eval()
    with torch.no_grad():
        model[0].weight_g.mul_(1.7) if api == "legacy" else model[0].parametrizations.weight.original0.mul_(1.7)
    report = export(model, (1, 3, 8, 8), tmp_path)
    assert sorted(report["prepare"]["weight_norm_removed"]) == ["0.weight", "3.weight"]
    counts = ops(tmp_path / "m.onnx")
    assert set(counts) <= {"Conv", "Relu", "Flatten", "Gemm", "Reshape"}, counts  # no norm computation
    assert report["equivalence"][0]["passed"]


@pytest.mark.parametrize("api", ["parametrizations", "legacy"])
def test_spectral_norm_and_other_parametrizations_are_baked(tmp_path, api):
    """Spectral norm (both APIs: the legacy hook made the copy fail, the parametrization an internal error),
    an orthogonal map (no ONNX conversion for its Householder product) and a user's own parametrization: each
    weight baked as eval mode computes it, after training-mode steps moved the singular vectors, and listed."""
    from torch.nn.utils import parametrizations, parametrize

    class Doubled(nn.Module):
        def forward(self, w):
            return 2 * w

    sn = parametrizations.spectral_norm if api == "parametrizations" else torch.nn.utils.spectral_norm
    torch.manual_seed(0)
    model = nn.Sequential(sn(nn.Conv2d(3, 4, 3)), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 6), nn.Tanh(),
                          nn.Linear(6, 3))
    parametrizations.orthogonal(model[3])
    parametrize.register_parametrization(model[5], "weight", Doubled())
    model.train()(torch.randn(2, 3, 8, 8))  # power iterations: the stored vectors are what eval mode uses
    report = export(model.eval(), (1, 3, 8, 8), tmp_path)
    baked = {b["tensor"]: b["parametrizations"] for b in report["prepare"]["parametrizations_baked"]}
    spectral = ["_SpectralNorm"] if api == "parametrizations" else ["SpectralNorm"]
    assert baked == {"0.weight": spectral, "3.weight": ["_Orthogonal"], "5.weight": ["Doubled"]}
    assert set(ops(tmp_path / "m.onnx")) <= {"Conv", "Relu", "Flatten", "Gemm", "Tanh", "Reshape"}
    assert report["equivalence"][0]["passed"]


def test_pruned_weights_are_made_permanent(tmp_path):
    """torch.nn.utils.prune (unstructured and structured, after a forward pass) made deepcopy fail inside
    prepare, an internal error: the masks are applied for good, the zeros counted, the caller's model untouched."""
    from torch.nn.utils import prune

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 3))
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    prune.ln_structured(model[4], "weight", amount=1 / 3, n=2, dim=0)
    model.eval()(torch.randn(1, 3, 8, 8))
    report = export(model, (1, 3, 8, 8), tmp_path)
    pruned = {p["tensor"]: p for p in report["prepare"]["pruning_made_permanent"]}
    assert set(pruned) == {"0.weight", "4.weight"} and pruned["0.weight"]["method"] == "L1Unstructured"
    assert pruned["0.weight"]["zeros"] == 0.5 and pruned["4.weight"]["zeros"] == pytest.approx(1 / 3, abs=1e-4)
    assert any("pruned tensor(s)" in w and "zeros densely" in w for w in report["warnings"])
    assert report["graph"]["batchnorm_nodes"] == 0 and report["equivalence"][0]["passed"]
    assert hasattr(model[0], "weight_orig") and prune.is_pruned(model)  # the caller's model as it was


# --- 4. per-sample normalisations -------------------------------------------------------------------

class PerSampleNorms(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.gn = nn.GroupNorm(2, 8)
        self.ln = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.gn(self.inorm(self.conv(x)))
        return self.fc(self.ln(x.mean((2, 3))))


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_layer_instance_group_norm_are_kept_with_reasons(tmp_path, exporter):
    model = PerSampleNorms()
    with torch.no_grad():
        for m in (model.inorm, model.gn, model.ln):
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)
    report = export(model.eval(), (1, 3, 10, 10), tmp_path, exporter=exporter)
    counts = ops(tmp_path / "m.onnx")
    assert counts["LayerNormalization"] == 1 and counts["InstanceNormalization"] == 2  # one of them is the GroupNorm
    kept = {k["type"]: k for k in report["graph"]["kept_normalizations"]}
    assert set(kept) == {"InstanceNorm2d", "GroupNorm", "LayerNorm"}
    assert all("per sample" in k["reason"] and k["count"] == 1 for k in kept.values())
    assert report["equivalence"][0]["passed"]


def test_instance_norm_with_running_stats_folds_like_batchnorm():
    inorm = nn.InstanceNorm2d(4, affine=True, track_running_stats=True)
    with torch.no_grad():
        inorm.running_mean.uniform_(-1, 1)
        inorm.running_var.uniform_(0.5, 2)
        inorm.weight.uniform_(0.5, 1.5)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), inorm).eval()
    prepared, summary = prepare_with_summary(model)
    assert [f["type"] for f in summary.folded] == ["InstanceNorm2d"]
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), model(x), atol=1e-5, rtol=1e-5)


# --- 5. cnnexport fold on ONNX files made elsewhere --------------------------------------------------

def _external_onnx(path):
    """Conv -> BN -> Relu -> Dropout -> ConvTranspose -> BN -> Identity -> Flatten -> Gemm -> BN, written
    with onnx.helper as another tool would."""
    rng = np.random.default_rng(0)

    def init(name, *shape, positive=False):
        a = rng.uniform(0.5, 1.5, shape) if positive else rng.standard_normal(shape)
        return numpy_helper.from_array(a.astype(np.float32), name)

    def bn(prefix, c, x, y):
        inits.extend([init(f"{prefix}_s", c, positive=True), init(f"{prefix}_b", c), init(f"{prefix}_m", c),
                      init(f"{prefix}_v", c, positive=True)])
        return helper.make_node("BatchNormalization", [x, f"{prefix}_s", f"{prefix}_b", f"{prefix}_m", f"{prefix}_v"],
                                [y], epsilon=1e-3)

    inits = [init("w1", 4, 3, 3, 3), init("b1", 4), init("w2", 4, 2, 2, 2), init("w3", 5, 2 * 16 * 16)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"]), bn("bn1", 4, "c1", "n1"),
        helper.make_node("Relu", ["n1"], ["r1"]), helper.make_node("Dropout", ["r1"], ["d1"]),
        helper.make_node("ConvTranspose", ["d1", "w2"], ["t1"], strides=[2, 2], group=2), bn("bn2", 4, "t1", "n2"),
        helper.make_node("Identity", ["n2"], ["i1"]), helper.make_node("Flatten", ["i1"], ["f1"]),
    ]
    inits[3] = init("w3", 5, 4 * 16 * 16)
    nodes += [helper.make_node("Gemm", ["f1", "w3"], ["g1"], transB=1, alpha=0.5), bn("bn3", 5, "g1", "y")]
    graph = helper.make_graph(nodes, "external",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 10, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def test_fold_command_on_an_external_onnx_file(tmp_path):
    _external_onnx(tmp_path / "ext.onnx")
    result = CliRunner().invoke(cli, ["fold", str(tmp_path / "ext.onnx"), "-o", str(tmp_path / "f.onnx"), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["op_counts_before"]["BatchNormalization"] == 3 and out["nodes_before"] == 10
    assert out["op_counts_after"] == {"Conv": 1, "ConvTranspose": 1, "Flatten": 1, "Gemm": 1, "Relu": 1}
    assert out["removed"] == {"Dropout": 1, "Identity": 1}
    assert {f["into_type"] for f in out["folded"]} == {"Conv", "ConvTranspose", "Gemm"}
    assert out["equivalence"]["passed"] and out["equivalence"]["max_rel"] < 1e-5
    assert ops(tmp_path / "f.onnx") == Counter(out["op_counts_after"])
    table = CliRunner().invoke(cli, ["fold", str(tmp_path / "ext.onnx"), "-o", str(tmp_path / "g.onnx")])
    assert table.exit_code == 0 and "BatchNormalization" in table.stdout and "passed" in table.stdout


@pytest.mark.parametrize("output,message", [("missing/f.onnx", "does not exist"),
                                            ("afile.txt/f.onnx", "is a file, not a folder"),
                                            ("/proc/f.onnx", "cannot write to '/proc'")])
def test_fold_checks_its_output_folder_before_any_work(tmp_path, output, message):
    """A missing folder, a file where the folder should be, an unwritable folder: exit 4, named, not an
    internal error after the work."""
    _external_onnx(tmp_path / "ext.onnx")
    (tmp_path / "afile.txt").write_text("a file")
    target = output if output.startswith("/") else str(tmp_path / output)
    result = CliRunner().invoke(cli, ["fold", str(tmp_path / "ext.onnx"), "-o", target])
    assert result.exit_code == 4 and message in result.stderr and len(result.stderr.splitlines()) == 1, result.output


def test_fold_refuses_a_corrupt_file(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    result = CliRunner().invoke(cli, ["fold", str(tmp_path / "bad.onnx"), "-o", str(tmp_path / "out.onnx")])
    assert result.exit_code == 8 and result.stderr.startswith("error: ") and not (tmp_path / "out.onnx").exists()


# --- 7. one user-defined module mixing every layer kind --------------------------------------------

class Everything(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn_in = nn.BatchNorm2d(3)
        self.conv = torch.nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 8, 1))  # absorbs bn_in; weight norm
        self.bn = nn.BatchNorm2d(8)                                                  # folds into conv
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn_dw = nn.BatchNorm2d(8)
        self.cat_bn = nn.BatchNorm2d(16)                                             # after a concat: scale+shift
        self.gn = nn.GroupNorm(4, 16)
        self.drop2d = nn.Dropout2d(0.2)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.bn_up = nn.BatchNorm2d(8)
        self.ln = nn.LayerNorm(8)
        self.fc1 = torch.nn.utils.weight_norm(nn.Linear(8, 12))                      # legacy weight norm
        self.bn1d = nn.BatchNorm1d(12)
        self.tdrop = TraditionalDropout(0.5)
        self.fc2 = nn.Linear(12, 4)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        y = self.bn(self.conv(self.bn_in(x)))
        z = self.bn_dw(self.dw(F.relu(y)))
        x = self.drop2d(self.gn(self.cat_bn(torch.cat([y, z], 1))))
        x = self.bn_up(self.up(F.relu(x)))
        x = self.ln(x.mean((2, 3)))
        x = self.tdrop(F.relu(self.bn1d(self.fc1(x))))
        return self.fc2(self.drop(x))


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_user_module_mixing_every_layer_kind(tmp_path, exporter):
    torch.manual_seed(0)
    model = randomize_bn_stats(Everything()).train()
    report = export(model, (1, 3, 12, 12), tmp_path, exporter=exporter)
    counts = ops(tmp_path / "m.onnx")
    p = report["prepare"]
    assert {f["batchnorm"] for f in p["folded"]} == {"bn_in", "bn", "bn_dw", "bn_up", "bn1d"}
    assert [s["batchnorm"] for s in p["scale_shift"]] == ["cat_bn"]
    assert sorted(p["weight_norm_removed"]) == ["conv.weight", "fc1.weight"]
    assert [(d["dropout"], d["into"]) for d in p["dropout_folded"]] == [("tdrop", "fc2")]
    assert p["was_training"]
    assert counts["Conv"] == 2 and counts["ConvTranspose"] == 1 and counts["Gemm"] == 2
    assert counts["LayerNormalization"] == 1 and counts["InstanceNormalization"] == 1
    assert "BatchNormalization" not in counts and "Dropout" not in counts
    assert not {"ReduceL2", "Sqrt", "Div", "Pow"} & set(counts)  # weight norm left nothing
    kept = {k["type"] for k in report["graph"]["kept_normalizations"]}
    assert kept == {"GroupNorm", "LayerNorm"}
    assert report["equivalence"][0]["passed"] and report["equivalence"][0]["cosine"] > 0.99999


def test_fold_writes_a_batchnorm_nothing_absorbs_as_one_mul_and_one_add(tmp_path):
    """A BN after a concatenation (and one on a flattened (N, C) tensor) has no conv to fold into: as in
    prepare, it becomes its eval-mode scale and shift, so the file holds no BatchNormalization."""
    from cnnexport.exporter.onnx_fold_file import fold_file

    class AfterConcat(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.bn1d = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(8), nn.BatchNorm1d(8)

        def forward(self, x):
            y = self.conv(x)
            return self.bn1d(self.bn(torch.cat([y, y * 0.5], 1)).mean((2, 3)))

    model = AfterConcat().eval()
    for bn in (model.bn, model.bn1d):
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
    src = tmp_path / "cat.onnx"
    torch.onnx.export(model, torch.randn(1, 3, 8, 8), str(src), dynamo=False, opset_version=18,
                      do_constant_folding=False, dynamic_axes={"input": {0: "N"}}, input_names=["input"])
    assert ops(src)["BatchNormalization"] == 2
    result = fold_file(src, tmp_path / "folded.onnx")
    assert result.equivalence["passed"] and result.equivalence["max_rel"] < 1e-5
    assert [f["kind"] for f in result.folded] == ["scale_shift", "scale_shift"]
    after = ops(tmp_path / "folded.onnx")
    assert "BatchNormalization" not in after and after["Mul"] == ops(src)["Mul"] + 2 and after["Add"] == 2
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    import onnxruntime as ort

    got = ort.InferenceSession(str(tmp_path / "folded.onnx")).run(None, {"input": x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)


def test_fold_takes_a_per_channel_mul_and_add_after_a_conv(tmp_path):
    """What an unfolded BN leaves when it is exported as arithmetic: Conv -> Mul -> Add by per-channel
    constants. The ONNX-level fold (the export's last line of defence) puts both into the conv."""
    from cnnexport.exporter.onnx_fold import count_affine_after_conv
    from cnnexport.exporter.onnx_fold_file import fold_file

    class ConvAffine(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.other = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3)
            self.register_buffer("scale", torch.rand(1, 4, 1, 1) + 0.5)
            self.register_buffer("shift", torch.randn(4, 1, 1))
            self.register_buffer("not_per_channel", torch.rand(1, 1, 6, 6))

        def forward(self, x):
            y = self.conv(x) * self.scale + self.shift
            return (self.other(x) + self.not_per_channel) * 2 + y  # varies per pixel: must stay

    src = tmp_path / "affine.onnx"
    torch.onnx.export(ConvAffine().eval(), torch.randn(1, 3, 8, 8), str(src), dynamo=False, opset_version=18)
    assert count_affine_after_conv(onnx.load(str(src))) == 1  # the first conv's Mul (+ Add); the other's Add varies per pixel
    result = fold_file(src, tmp_path / "folded.onnx")
    assert result.equivalence["passed"] and result.equivalence["max_rel"] < 1e-5
    assert sorted(f["what"] for f in result.folded) == ["Add", "Mul"]
    assert count_affine_after_conv(onnx.load(str(tmp_path / "folded.onnx"))) == 0
    after = ops(tmp_path / "folded.onnx")
    assert after["Mul"] == ops(src)["Mul"] - 1 and after["Add"] == ops(src)["Add"] - 1


class StdConvLayerScale(nn.Module):
    """What nf_resnet and convnext leave in a file: a conv whose weight is standardised at run time
    (``F.batch_norm`` in training mode over the weight, as timm's ScaledStdConv2d), a layer scale
    reshaped at run time, and two convs sharing one weight (the exporter routes it through Identity)."""

    def __init__(self):
        super().__init__()
        self.std = nn.Conv2d(3, 8, 3, padding=1)
        self.gain = nn.Parameter(torch.rand(8) + 0.5)
        self.fc = nn.Conv2d(8, 8, 1)
        self.gamma = nn.Parameter(torch.rand(8) + 0.1)
        self.twin = nn.Conv2d(8, 8, 1)
        self.twin.weight = self.fc.weight

    def forward(self, x):
        w = F.batch_norm(self.std.weight.reshape(1, 8, -1), None, None, weight=self.gain, training=True,
                         momentum=0.0, eps=1e-6).reshape_as(self.std.weight)
        y = torch.relu(F.conv2d(x, w, self.std.bias, padding=1))
        return self.fc(y) * self.gamma.reshape(1, -1, 1, 1) + self.twin(y)


def test_weights_computed_at_run_time_are_precomputed_and_folded_without_onnxsim(tmp_path):
    from cnnexport.exporter.onnx_fold import count_affine_after_conv

    report = export(StdConvLayerScale().eval(), (1, 3, 12, 12), tmp_path, simplify=False)
    path = tmp_path / "m.onnx"
    counts = ops(path)
    assert "BatchNormalization" not in counts and "ReduceMean" not in counts and "Identity" not in counts
    assert counts.get("Mul", 0) == 0  # the layer scale went into fc
    assert count_affine_after_conv(onnx.load(str(path))) == 0
    assert report["graph"]["precomputed_constant_nodes"] >= 5  # the standardisation and the reshape
    assert report["equivalence"][0]["passed"] and report["equivalence"][0]["max_rel"] < 1e-5
    weights = {i.name for i in onnx.load(str(path)).graph.initializer}
    assert len(weights) >= 4  # computed weights are stored, not recomputed

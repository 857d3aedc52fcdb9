"""BatchNorm folding and dropout removal: exact eval semantics on a copy."""

import copy

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from cnnexport.exporter.prepare import ScaleShift, fold_conv_bn, prepare, prepare_with_summary
from conftest import SmallNet, randomize_bn_stats


@st.composite
def conv_configs(draw):
    groups = draw(st.sampled_from([1, 2, 4, "depthwise"]))
    base = draw(st.integers(1, 4))
    if groups == "depthwise":
        cin = draw(st.integers(1, 12))
        groups, cout = cin, cin * draw(st.integers(1, 2))
    else:
        cin, cout = groups * base, groups * draw(st.integers(1, 4))
    return dict(
        in_channels=cin, out_channels=cout, groups=groups,
        kernel_size=draw(st.sampled_from([1, 3, 5])),
        stride=draw(st.integers(1, 3)),
        dilation=draw(st.integers(1, 2)),
        padding=draw(st.integers(0, 2)),
        bias=draw(st.booleans()),
    )


@settings(max_examples=60, deadline=None)
@given(cfg=conv_configs(), seed=st.integers(0, 2**16), eps=st.sampled_from([1e-5, 1e-3, 0.1]))
def test_fold_conv_bn_matches_conv_then_bn(cfg, seed, eps):
    torch.manual_seed(seed)
    conv = nn.Conv2d(**cfg)
    bn = randomize_bn_stats(nn.BatchNorm2d(cfg["out_channels"], eps=eps), seed).eval()
    x = torch.randn(2, cfg["in_channels"], 13, 11)
    with torch.no_grad():
        expected = bn(conv(x))
        got = fold_conv_bn(conv, bn)(x)
    assert got.shape == expected.shape
    scale = expected.abs().max().item() + 1e-6
    assert (got - expected).abs().max().item() <= 1e-5 * scale
    assert conv.bias is None or not torch.equal(conv.bias, fold_conv_bn(conv, bn).bias)


def test_prepare_folds_every_conv_bn_and_leaves_original_untouched(small_net):
    before = copy.deepcopy(small_net.state_dict())
    prepared, summary = prepare_with_summary(small_net)
    assert {f["batchnorm"] for f in summary.folded} == {"features.1", "features.4"}
    assert [s["batchnorm"] for s in summary.scale_shift] == ["post"]
    assert summary.dropout_removed == ["drop"]
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout)) for m in prepared.modules())
    assert isinstance(prepared.post, ScaleShift)
    # the caller's module: same state, same types
    assert all(torch.equal(before[k], v) for k, v in small_net.state_dict().items())
    assert isinstance(small_net.features[1], nn.BatchNorm2d) and isinstance(small_net.drop, nn.Dropout)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(prepared(x), small_net(x), atol=1e-5, rtol=1e-5)


def test_training_mode_model_is_prepared_in_eval_mode():
    model = randomize_bn_stats(SmallNet()).train()
    prepared, summary = prepare_with_summary(model)
    assert summary.was_training and any("training mode" in w for w in summary.warnings)
    assert not prepared.training and model.training  # the caller's mode is kept
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        reference = copy.deepcopy(model).eval()(x)
        assert torch.allclose(prepared(x), reference, atol=1e-5)
        # a training-mode forward would differ (batch statistics, dropout): the test can fail
        assert not torch.allclose(copy.deepcopy(model)(x), reference, atol=1e-3)


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())

    def forward(self, x):
        if x.sum() > 0:
            return self.body(x)
        return self.body(-x)


def test_untraceable_model_folds_inside_sequential_with_warning():
    model = randomize_bn_stats(Untraceable()).eval()
    prepared, summary = prepare_with_summary(model)
    assert [(f["batchnorm"], f["into"], f["kind"]) for f in summary.folded] == [("body.1", "body.0", "previous")]
    assert any("torch.fx could not trace" in w for w in summary.warnings)
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        assert torch.allclose(prepared(x), model(x), atol=1e-5)


def test_conv_used_twice_is_not_folded():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # the conv output is used outside the BN too

    model = randomize_bn_stats(Shared()).eval()
    prepared, summary = prepare_with_summary(model)
    assert summary.folded == [] and [s["batchnorm"] for s in summary.scale_shift] == ["bn"]
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        assert torch.allclose(prepared(x), model(x), atol=1e-5)


def test_no_fold_keeps_batchnorm_but_removes_dropout(small_net):
    prepared = prepare(small_net, fold_bn=False)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in prepared.modules()) == 3
    assert not any(isinstance(m, nn.Dropout) for m in prepared.modules())


@pytest.mark.parametrize("drop", [nn.Dropout(0.3), nn.Dropout2d(0.3), nn.AlphaDropout(0.3)])
def test_every_dropout_kind_becomes_identity(drop):
    model = nn.Sequential(nn.Conv2d(3, 3, 1), drop)
    prepared = prepare(model)
    assert isinstance(prepared[1], nn.Identity)


# --- model code the project did not write (timm's blocks, users' own) ---------------------------------

class BatchNormAct(nn.BatchNorm2d):
    """A BatchNorm subclass whose forward adds an activation (timm's BatchNormAct2d does this)."""

    def __init__(self, n):
        super().__init__(n)
        self.act = nn.Hardswish()

    def forward(self, x):
        torch._assert(x.ndim == 4, "expected NCHW")  # reads the conv's output's shape: folding must not mind it
        x = nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                     self.training, self.momentum, self.eps)
        return self.act(x)


class ConvNormAct(nn.Module):
    """A conv-norm-act block: the BN sits in a submodule whose forward is not torch's."""

    def __init__(self, cin, cout, stride=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False)
        self.bn = BatchNormAct(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class FunctionalBN(nn.Module):
    """A block calling F.conv2d and F.batch_norm on its own parameters and buffers."""

    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.2)
        for name, value in (("mean", torch.randn(cout) * 0.3), ("var", torch.rand(cout) + 0.2),
                            ("gamma", torch.rand(cout) + 0.5), ("beta", torch.randn(cout) * 0.1)):
            self.register_buffer(name, value)

    def forward(self, x):
        y = nn.functional.conv2d(x, self.weight, None, 1, 1)  # no bias: folding adds one
        return torch.relu(nn.functional.batch_norm(y, self.mean, self.var, self.gamma, self.beta, False, 0.1, 1e-3))


class RepBlock(nn.Module):
    """RepVGG's idea: 3x3 + 1x1 branches in training, one 3x3 conv after ``reparameterize()``."""

    def __init__(self, c):
        super().__init__()
        self.k3 = nn.Conv2d(c, c, 3, padding=1)
        self.k1 = nn.Conv2d(c, c, 1)
        self.fused = None

    def reparameterize(self):
        fused = nn.Conv2d(self.k3.in_channels, self.k3.out_channels, 3, padding=1)
        with torch.no_grad():
            fused.weight.copy_(self.k3.weight + nn.functional.pad(self.k1.weight, [1, 1, 1, 1]))
            fused.bias.copy_(self.k3.bias + self.k1.bias)
        self.fused, self.k3, self.k1 = fused, None, None

    def forward(self, x):
        if self.fused is not None:
            return torch.relu(self.fused(x))
        return torch.relu(self.k3(x) + self.k1(x))


class ForeignNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = ConvNormAct(3, 8, stride=2)
        self.dw = ConvNormAct(8, 8, groups=8)
        self.func = FunctionalBN(8, 8)
        self.rep = RepBlock(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.rep(self.func(self.dw(self.stem(x))))
        return self.head(x.mean((2, 3)))


def foreign_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_bn_stats(ForeignNet(), seed).eval()


def test_batchnorm_subclass_with_its_own_forward_keeps_its_activation():
    model = nn.Sequential(nn.Conv2d(3, 6, 3), BatchNormAct(6)).eval()
    randomize_bn_stats(model)
    prepared, summary = prepare_with_summary(model)
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        assert torch.allclose(prepared(x), model(x), atol=1e-5)
    assert [(f["into"], f["level"]) for f in summary.folded] == [("0", "graph")]
    assert not summary.scale_shift
    # the activation stays (the subclass became its own forward without the batch_norm call)
    assert any(isinstance(m, nn.Hardswish) for m in prepared.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in prepared.modules())


class FrozenBatchNorm2d(nn.Module):
    """torchvision's FrozenBatchNorm2d (detection backbones; timm's freeze_batch_norm_2d makes it): buffers, and
    the arithmetic in its own forward."""

    def __init__(self, c: int, eps: float = 1e-5, scale_only: bool = False):
        super().__init__()
        for name, value in (("weight", torch.rand(c) + 0.5), ("bias", torch.randn(c)), ("running_mean", torch.randn(c)),
                            ("running_var", torch.rand(c) + 0.5)):
            self.register_buffer(name, value)
        self.eps, self.scale_only = eps, scale_only

    def forward(self, x):
        scale = self.weight.reshape(1, -1, 1, 1) * (self.running_var.reshape(1, -1, 1, 1) + self.eps).rsqrt()
        if self.scale_only:  # a class of the same name that computes something else
            return x * scale
        return x * scale + (self.bias - self.running_mean * scale.flatten()).reshape(1, -1, 1, 1)


def test_a_frozen_batchnorm_folds_and_an_impostor_is_left_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), FrozenBatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 4, 3),
                          FrozenBatchNorm2d(4, scale_only=True)).eval()
    prepared, summary = prepare_with_summary(model)
    assert summary.frozen_batchnorms == [{"module": "1", "type": "FrozenBatchNorm2d"}]
    assert [f["into"] for f in summary.folded] == ["0"]
    assert isinstance(prepared[4], FrozenBatchNorm2d) and not isinstance(prepared[1], FrozenBatchNorm2d)
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        assert torch.allclose(prepared(x), model(x), atol=1e-5)
    unfolded, kept = prepare_with_summary(model, fold_bn=False)
    assert kept.frozen_batchnorms == [] and isinstance(unfolded[1], FrozenBatchNorm2d)


def test_conv_norm_act_functional_bn_and_reparameterisation_fold_exactly():
    model = foreign_net()
    prepared, summary = prepare_with_summary(model)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
        assert (prepared(x) - expected).abs().max() <= 1e-5 * expected.abs().max()
    into = {f["into"] for f in summary.folded}
    assert into == {"stem.conv", "dw.conv", "func"}, into  # func: its own conv2d call's weight
    assert summary.reparameterized == [{"module": "rep", "type": "RepBlock", "method": "reparameterize",
                                        "became": "RepBlock"}]
    assert model.rep.fused is None  # the caller's model is untouched
    plain, plain_summary = prepare_with_summary(model, reparameterize=False)
    assert plain_summary.reparameterized == [] and plain.rep.fused is None


def test_a_module_with_a_hook_is_not_replaced():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    randomize_bn_stats(model)
    model[1].register_forward_hook(lambda m, i, o: o * 2)
    prepared, summary = prepare_with_summary(model)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(prepared(x), model(x), atol=1e-5)
    assert not summary.folded
    assert any("hook" in k["reason"] for k in summary.kept_normalizations)


def test_untraceable_module_is_kept_whole_and_its_children_still_fold():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))

        def forward(self, x):
            return self.inner(x) if x.sum() > -1e9 else x  # control flow on values: fx cannot trace it

    model = nn.Sequential(nn.Conv2d(3, 4, 3), BatchNormAct(4), DataDependent()).eval()
    randomize_bn_stats(model)
    prepared, summary = prepare_with_summary(model)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(prepared(x), model(x), atol=1e-5)
    assert {f["into"] for f in summary.folded} == {"0", "2.inner.0"}
    assert any("'2'" in w and "could not trace" in w for w in summary.warnings)


def test_bn_after_a_concatenation_of_convs_folds_into_each():
    class Mixed(nn.Module):  # timm's MixedConv2d: channel groups through different kernels, concatenated
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(3, 3, 5, padding=2)
            self.bn = nn.BatchNorm2d(5)

        def forward(self, x):
            return self.bn(torch.cat([self.a(x), self.b(x)], 1))

    model = randomize_bn_stats(Mixed()).eval()
    prepared, summary = prepare_with_summary(model)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(prepared(x), model(x), atol=1e-5)
    assert [(f["into"], f["channels"]) for f in summary.folded] == [("a", [0, 2]), ("b", [2, 5])]
    assert isinstance(prepared.bn, nn.Identity)


def test_prepare_limit_makes_only_the_first_changes():
    model = foreign_net()
    _, full = prepare_with_summary(model)
    assert len(full.changes) >= 4
    _, first_two = prepare_with_summary(model, limit=2)
    assert first_two.changes == full.changes[:2]


def test_a_random_op_that_is_not_the_identity_at_eval_is_kept(tmp_path):
    import torch
    from torch import nn

    from cnnexport.exporter.prepare import prepare_with_summary

    class NoisyDropout(nn.Module):  # its name says dropout, but it adds noise at eval too
        def forward(self, x):
            return x + 0.1

    model = nn.Sequential(nn.Conv2d(3, 4, 3), NoisyDropout(), nn.Dropout(0.5)).eval()
    prepared, summary = prepare_with_summary(model)
    assert summary.as_dict()["train_only_removed"] == {"Dropout": 1}
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(prepared(x), model(x))

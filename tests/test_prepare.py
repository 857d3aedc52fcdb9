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

"""The model zoo: shapes, published parameter counts, torchvision's layout and outputs, family details."""

import json
import math
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnexport.exporter import prepare_with_summary
from cnnexport.models import create_model, list_models, model_info
from cnnexport.models.inception import GOOGLENET_AUX_WEIGHT, aux_loss
from cnnexport.models.layers import channel_shuffle
from cnnexport.models.lenet import C3_TABLE, PartialConv

ALL = list_models()
TORCHVISION_VERSION = "0.28.0"


def test_registry_holds_every_family_of_the_seed_notes():
    families = {model_info(n).family for n in ALL}
    assert {"lenet", "alexnet", "vgg", "googlenet", "inception", "resnet", "resnet_cifar", "resnext", "densenet",
            "squeezenet", "mobilenet_v1", "mobilenet_v2", "shufflenet_v1", "shufflenet_v2"} <= families
    expected = {"lenet5", "alexnet", "alexnet_lrn", "googlenet", "inception_v3", "resnet20", "resnet32", "resnet56",
                "resnext50_32x4d", "resnext101_32x8d", "densenet121", "densenet169", "densenet201",
                "squeezenet1_0", "squeezenet1_1", "mobilenet_v1", "mobilenet_v1_0_5", "mobilenet_v1_0_25",
                "mobilenet_v1_0_75", "mobilenet_v2", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
                "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"}
    expected |= {f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")}
    expected |= {f"shufflenet_v1_g{g}{s}" for g in (1, 2, 3, 4, 8) for s in ("_0_5", "", "_1_5", "_2_0")}
    assert expected <= set(ALL)
    for name in ALL:
        info = model_info(name)
        assert info.paper and info.source, name
        assert info.params or info.macs or info.source.startswith("none published"), name


@pytest.mark.parametrize("name", ALL)
def test_forward_shape(name):
    info = model_info(name)
    model = create_model(name, num_classes=7)
    with torch.no_grad():
        out = model(torch.randn(2, *info.input_size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def _rounds_to(value: int, published: int) -> bool:
    """True when ``value`` rounded to the published figure's significant digits is that figure."""
    digits = len(str(published).rstrip("0"))
    magnitude = 10 ** (len(str(published)) - digits)
    return round(value / magnitude) * magnitude == published


@pytest.mark.parametrize("name", [n for n in ALL if model_info(n).params])
def test_params_match_the_published_figure(name):
    info = model_info(name)
    model = create_model(name)
    aux = [getattr(model, h) for h in getattr(model, "aux_heads", ())]  # training-only heads are not counted
    params = sum(p.numel() for p in model.parameters()) - sum(p.numel() for h in aux for p in h.parameters())
    if info.torchvision_compatible:
        assert params == info.params
    else:  # a paper's figure: within 2%, or equal once rounded as the paper rounds it
        assert abs(params - info.params) <= 0.02 * info.params or _rounds_to(params, info.params), params


def test_parameter_count_rounding_rule():
    assert _rounds_to(470_072, 500_000) and _rounds_to(4_231_976, 4_200_000)
    assert not _rounds_to(560_000, 500_000) and not _rounds_to(4_260_000, 4_200_000)


TV_NAMES = [n for n in ALL if model_info(n).torchvision_compatible]


def test_every_reference_model_is_registered(torchvision_reference):
    assert set(torchvision_reference) <= set(TV_NAMES)


# vgg13, vgg13_bn and vgg19_bn are not in the stored reference: the torchvision output test covers them.
@pytest.mark.parametrize("name", [n for n in TV_NAMES if n in json.loads(
    (Path(__file__).parent / "data" / "torchvision_state_dicts.json").read_text())["models"]])
def test_state_dict_equals_torchvision(name, torchvision_reference):
    ours = {k: list(v.shape) for k, v in create_model(name).state_dict().items()}
    assert ours == torchvision_reference[name]["state_dict"]
    assert list(ours) == list(torchvision_reference[name]["state_dict"])


@pytest.fixture(scope="session")
def torchvision_src(tmp_path_factory) -> Path:
    """torchvision's pure-Python source (its wheel, unpacked; no compiled part is used)."""
    cache = Path(os.environ.get("CNNEXPORT_CACHE", Path.home() / ".cache" / "cnnexport")) / \
        f"torchvision-{TORCHVISION_VERSION}-src"
    if (cache / "torchvision" / "models" / "resnet.py").is_file():
        return cache
    wheel_dir = tmp_path_factory.mktemp("tvwheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                           f"torchvision=={TORCHVISION_VERSION}", "-d", str(wheel_dir)],
                          capture_output=True, text=True, timeout=300)
    wheels = list(wheel_dir.glob("torchvision-*.whl"))
    if proc.returncode or not wheels:
        pytest.skip(f"cannot fetch torchvision {TORCHVISION_VERSION}'s wheel to read its model source: "
                    f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no wheel'}")
    staging = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(wheels[0]) as zf:
        zf.extractall(staging, [m for m in zf.namelist() if m.startswith("torchvision/") and m.endswith(".py")])
    try:
        os.rename(staging, cache)  # atomic: a parallel worker sees all of it or none
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another worker got there first
    return cache


def test_outputs_equal_torchvision_for_the_same_checkpoint(torchvision_src):
    """torchvision's own model code (run from its wheel's source) and ours, loaded with the same
    state_dict (strict=True, non-trivial BN statistics), give the same outputs; GoogLeNet and
    Inception v3 also with torchvision's pretrained input transform."""
    script = Path(__file__).with_name("tv_compare.py")
    proc = subprocess.run([sys.executable, str(script), str(torchvision_src), *TV_NAMES], capture_output=True,
                          text=True, timeout=1200, cwd=Path(__file__).parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert {r["model"] for r in rows} == set(TV_NAMES)
    assert sum(r["transform_input"] for r in rows) == 2
    for r in rows:
        assert r["max_abs"] <= 1e-5 * max(r["scale"], 1.0) and r["same_top1"], r


# --- family details -------------------------------------------------------------------------------

def test_shufflenet_v2_split_order_and_shuffle():
    """Stride-1 unit: the first half of the channels passes through unchanged and, after the shuffle
    with 2 groups, lands on the even channels (torchvision's order)."""
    block = create_model("shufflenet_v2_x0_5").stage2[1]
    x = torch.randn(2, 48, 7, 7)
    with torch.no_grad():
        out = block(x)
    assert torch.equal(out[:, 0::2], x[:, :24])
    assert not torch.equal(out[:, 1::2], x[:, 24:])


@pytest.mark.parametrize("batch", [1, 3, 5])
def test_channel_shuffle_is_batch_independent(batch):
    x = torch.arange(batch * 6 * 2 * 2, dtype=torch.float32).reshape(batch, 6, 2, 2)
    out = channel_shuffle(x, 3)
    assert [int(c) for c in out[0, :, 0, 0] // 4] == [0, 2, 4, 1, 3, 5]
    assert torch.equal(out[-1], channel_shuffle(x[-1:], 3)[0])


def test_lenet5_partial_connections_equal_a_masked_full_conv():
    torch.manual_seed(0)
    c3 = PartialConv()
    assert sum(p.numel() for p in c3.parameters()) == 1516  # the paper's figure
    full = nn.Conv2d(6, 16, 5)
    with torch.no_grad():
        full.weight.zero_()
        for conv, fan_in in zip(c3.convs, c3.fan_ins):
            rows = [r for r in C3_TABLE if len(r) == fan_in]
            for k, row in enumerate(rows):
                out = C3_TABLE.index(row)
                full.weight[out, list(row)] = conv.weight[k].reshape(fan_in, 5, 5)
                full.bias[out] = conv.bias[k]
        x = torch.randn(2, 6, 14, 14)
        torch.testing.assert_close(c3(x), full(x), atol=1e-5, rtol=1e-5)


def test_lenet5_layout():
    m = create_model("lenet5")
    assert [n for n, _ in m.named_children()][:7] == ["c1", "s2", "c3", "s4", "c5", "f6", "output"]
    assert model_info("lenet5").input_size == (1, 32, 32)


def test_alexnet_lrn_follows_the_paper():
    m = create_model("alexnet_lrn")
    lrns = [(i, l) for i, l in enumerate(m.features) if isinstance(l, nn.LocalResponseNorm)]
    assert [i for i, _ in lrns] == [2, 6]  # after conv1+ReLU and conv2+ReLU
    for _, l in lrns:
        assert (l.size, l.beta, l.k) == (5, 0.75, 2.0) and math.isclose(l.alpha / l.size, 1e-4)
    pools = [l for l in m.features if isinstance(l, nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size == 3 and p.stride == 2 for p in pools)  # overlapping
    assert [l.p for l in m.classifier if isinstance(l, nn.Dropout)] == [0.5, 0.5]


def test_lrn_computes_the_papers_formula():
    m = create_model("alexnet_lrn").features[2]
    a = torch.rand(1, 8, 3, 3) * 10
    sq = torch.nn.functional.pad(a.pow(2), (0, 0, 0, 0, 2, 2))
    window = sum(sq[:, i:i + 8] for i in range(5))
    torch.testing.assert_close(m(a), a / (2.0 + 1e-4 * window) ** 0.75)


def test_googlenet_aux_heads_train_only():
    m = create_model("googlenet", num_classes=5).train()
    out = m(torch.randn(2, 3, 224, 224))
    assert len(out) == 3 and all(o.shape == (2, 5) for o in out)
    target = torch.tensor([1, 2])
    expected = sum(w * nn.functional.cross_entropy(o, target) for w, o in zip((1, 0.3, 0.3), out))
    torch.testing.assert_close(aux_loss(out, target), expected)
    assert GOOGLENET_AUX_WEIGHT == 0.3
    prepared, summary = prepare_with_summary(m)
    assert summary.aux_removed == ["aux1", "aux2"] and prepared.aux1 is None
    assert not any("aux" in n for n, _ in prepared.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(prepared(torch.ones(1, 3, 224, 224)), m.eval()(torch.ones(1, 3, 224, 224)),
                                   atol=1e-4, rtol=1e-4)


def test_inception_v3_factorised_convolutions():
    m = create_model("inception_v3")
    kernels = {tuple(c.kernel_size) for c in m.modules() if isinstance(c, nn.Conv2d)}
    assert {(1, 7), (7, 1), (1, 3), (3, 1)} <= kernels
    assert model_info("inception_v3").input_size == (3, 299, 299)


def test_cifar_resnet_shortcut_options():
    a, b = create_model("resnet20"), create_model("resnet20", shortcut="B")
    assert sum(p.numel() for p in b.parameters()) > sum(p.numel() for p in a.parameters())
    block = a.layer2[0]
    assert block.option_a and block.downsample is None
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        block.eval().bn2.weight.zero_()
        block.bn2.bias.zero_()  # residual branch now 0: the output is ReLU(shortcut)
        out = block(x)
    # option A: x subsampled by 2 and zero-padded from 16 to 32 channels, 8 zero maps on each side
    expected = torch.relu(nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8)))
    torch.testing.assert_close(out, expected)
    assert sum(p.numel() for p in block.parameters()) == sum(
        p.numel() for m in (block.conv1, block.bn1, block.conv2, block.bn2) for p in m.parameters())
    assert isinstance(b.layer2[0].downsample[0], nn.Conv2d)


@pytest.mark.parametrize("shape", [(1, 58, 7, 5), (3, 24, 4, 4)])
def test_concat_shuffle_is_cat_then_channel_shuffle(shape):
    from cnnexport.models.layers import concat_shuffle

    a, b = torch.randn(shape), torch.randn(shape)
    expected = channel_shuffle(torch.cat((a, b), 1), 2)
    assert torch.equal(concat_shuffle(a, b), expected)


def test_papers_and_arxiv_ids_name_the_same_paper():
    from cnnexport.models import model_info

    tv, orig = model_info("alexnet"), model_info("alexnet_lrn")
    assert tv.arxiv == "1404.5997" and "One weird trick" in tv.paper
    assert orig.arxiv == "" and "NeurIPS 2012" in orig.paper and "Krizhevsky" in orig.paper

"""ResNets: torchvision's state_dict layout, parameter counts, checkpoint loading."""

import pytest
import torch

from cnnexport.errors import UnknownModelError, WeightsError
from cnnexport.models import create_model, list_models, load_weights, model_info, read_state_dict

RESNETS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


def test_registry_lists_resnets_with_wildcards():
    assert set(RESNETS) <= set(list_models())
    assert list_models("resnet1*") == ["resnet101", "resnet152", "resnet18"]


@pytest.mark.parametrize("name", RESNETS)
def test_state_dict_names_and_shapes_equal_torchvision(name, torchvision_reference):
    ref = torchvision_reference[name]
    model = create_model(name)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(ours) == list(ref["state_dict"])  # same names, same order
    assert ours == ref["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == ref["params"] == model_info(name).params


def test_resnet50_has_exactly_the_published_parameter_count():
    assert sum(p.numel() for p in create_model("resnet50").parameters()) == 25_557_032


def test_initialisation_is_he_for_convs_and_identity_for_bn():
    model = create_model("resnet50")
    w = model.layer3[0].conv2.weight  # fan_out = 256 * 3 * 3
    assert abs(w.std().item() - (2 / (256 * 9)) ** 0.5) < 0.1 * (2 / (256 * 9)) ** 0.5
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".safetensors"])
def test_saved_state_dict_loads_back_strictly(tmp_path, suffix):
    torch.manual_seed(1)
    src = create_model("resnet18")
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(src.state_dict(), str(path))
    else:
        torch.save(src.state_dict(), path)
    torch.manual_seed(2)
    dst = create_model("resnet18", weights=path)
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(src.eval()(x), dst(x))


def test_a_hub_snapshot_folder_loads_its_weights_file(tmp_path):
    """A Hugging Face Hub snapshot (model.safetensors beside config.json, maybe pytorch_model.bin) or a folder
    with one checkpoint: its file is read and named; an empty folder or several candidates are refused."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    src = create_model("resnet18")
    hub = tmp_path / "resnet18.tv_in1k"
    hub.mkdir()
    save_file(src.state_dict(), str(hub / "model.safetensors"))
    torch.save(create_model("resnet18").state_dict(), hub / "pytorch_model.bin")  # other weights: not read
    (hub / "config.json").write_text("{}")
    notes = []
    sd = read_state_dict(hub, notes=notes)
    assert all(torch.equal(v, sd[k]) for k, v in src.state_dict().items())
    assert notes == [f"weights read from {hub / 'model.safetensors'}"]
    one = tmp_path / "one"
    one.mkdir()
    torch.save(src.state_dict(), one / "best.pth")
    assert torch.equal(read_state_dict(one)["fc.weight"], src.fc.weight)
    torch.save(src.state_dict(), one / "last.pth")
    with pytest.raises(WeightsError, match=r"holds 2 weights files \(best.pth, last.pth\); pass the one"):
        read_state_dict(one)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="holds no weights file"):
        read_state_dict(tmp_path / "empty")
    run = tmp_path / "train" / "20261207-resnet18"  # timm's train.py output folder: its best checkpoint is read
    run.mkdir(parents=True)
    for name in ("last.pth.tar", "checkpoint-3.pth.tar"):
        torch.save({"state_dict": create_model("resnet18").state_dict(), "epoch": 3}, run / name)
    torch.save({"state_dict": src.state_dict(), "epoch": 2}, run / "model_best.pth.tar")
    assert torch.equal(read_state_dict(run)["fc.weight"], src.fc.weight)


@pytest.mark.parametrize("wrap", ["state_dict", "model"])
def test_checkpoint_dicts_are_unwrapped(tmp_path, wrap):
    src = create_model("resnet18")
    path = tmp_path / "ckpt.pth"
    sd = {f"module.{k}": v for k, v in src.state_dict().items()}  # DataParallel prefix too
    torch.save({wrap: sd, "epoch": 3}, path)
    assert set(read_state_dict(path)) == set(src.state_dict())


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module._orig_mod."])
def test_wrapper_prefixes_are_stripped(tmp_path, prefix):
    src = create_model("resnet18")  # torch.compile's module, inside DDP's for the second
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {prefix + k: v for k, v in src.state_dict().items()}}, path)
    assert set(read_state_dict(path)) == set(src.state_dict())


def test_a_prefix_that_fits_the_model_is_taken(tmp_path):
    src = create_model("resnet18", num_classes=10).eval()
    path = tmp_path / "lightning.ckpt"  # a LightningModule holding the network as self.model
    torch.save({"epoch": 3, "state_dict": {f"model.{k}": v for k, v in src.state_dict().items()}}, path)
    model = create_model("resnet18", num_classes=10, weights=path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), src(x))


def test_two_prefixes_that_fit_are_named_not_guessed(tmp_path):
    """Two networks that both fit (a distillation's student and teacher) are named; an EMA copy beside the
    network is no such guess: the plain weights load (with a note), its own with --use-ema."""
    sd = create_model("resnet18").state_dict()
    path = tmp_path / "distill.ckpt"
    torch.save({"state_dict": {**{f"student.{k}": v for k, v in sd.items()},
                               **{f"teacher.{k}": v for k, v in sd.items()}}}, path)
    with pytest.raises(WeightsError, match=r"the keys under 'student\.' and 'teacher\.' fit it"):
        create_model("resnet18", weights=path)


def test_a_training_scripts_checkpoint_loads_and_a_pickled_model_is_named(tmp_path):
    """timm's train.py stores its argparse.Namespace beside the weights, many scripts a numpy best accuracy:
    both were refused as 'Python objects beyond tensors'. A whole pickled model still is, and is named."""
    import argparse

    import numpy as np

    src = create_model("resnet18", num_classes=10)
    path = tmp_path / "checkpoint-3.pth.tar"
    torch.save({"epoch": 3, "arch": "resnet18", "state_dict": src.state_dict(), "version": 2,
                "args": argparse.Namespace(lr=0.1, model="resnet18"), "best_acc1": np.float64(71.2),
                "steps": np.int64(300)}, path)
    model = create_model("resnet18", num_classes=10, weights=path)
    assert torch.equal(model.fc.weight, src.fc.weight)
    torch.save(src, tmp_path / "whole.pt")
    with pytest.raises(WeightsError, match=r"beyond tensors \(cnnexport\.models\.resnet\.ResNet\)"):
        read_state_dict(tmp_path / "whole.pt")


def test_a_checkpoints_ema_weights_load_with_use_ema_and_are_noted_without(tmp_path):
    """timm's train.py keeps state_dict and state_dict_ema: the first by default (a note says the EMA weights
    are there), the EMA ones with use_ema, as timm's --use-ema; use_ema on a file without them is refused."""
    src, ema = create_model("resnet18", num_classes=10), create_model("resnet18", num_classes=10)
    path = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 9, "state_dict": src.state_dict(), "state_dict_ema": ema.state_dict()}, path)
    notes = []
    assert torch.equal(read_state_dict(path, notes=notes)["fc.weight"], src.fc.weight)
    assert len(notes) == 1 and "state_dict_ema" in notes[0] and "--use-ema" in notes[0]
    model = create_model("resnet18", num_classes=10, weights=path)
    assert torch.equal(model.fc.weight, src.fc.weight) and model.cnnexport_notes == notes
    model = create_model("resnet18", num_classes=10, weights=path, use_ema=True)
    assert torch.equal(model.fc.weight, ema.fc.weight) and not hasattr(model, "cnnexport_notes")
    torch.save({"model": src.state_dict(), "model_ema": {"module." + k: v for k, v in ema.state_dict().items()}},
               tmp_path / "other.pt")  # another script's names, the EMA module wrapped
    assert torch.equal(read_state_dict(tmp_path / "other.pt", use_ema=True)["fc.weight"], ema.fc.weight)
    lightning = {**{"model." + k: v for k, v in src.state_dict().items()},
                 **{"model_ema.module." + k: v for k, v in ema.state_dict().items()}}  # an EMA submodule beside
    torch.save({"state_dict": lightning, "epoch": 3}, tmp_path / "epoch=3.ckpt")
    model = create_model("resnet18", num_classes=10, weights=tmp_path / "epoch=3.ckpt")  # model.: the one fitting
    assert torch.equal(model.fc.weight, src.fc.weight) and "the keys under 'model_ema.'" in model.cnnexport_notes[0]
    model = create_model("resnet18", num_classes=10, weights=tmp_path / "epoch=3.ckpt", use_ema=True)
    assert torch.equal(model.fc.weight, ema.fc.weight)
    torch.save(src.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(WeightsError, match="holds no EMA weights .*drop --use-ema"):
        read_state_dict(tmp_path / "plain.pt", use_ema=True)
    notes = []
    read_state_dict(tmp_path / "plain.pt", notes=notes)
    assert notes == []


def test_mismatch_names_the_keys_and_shapes(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(create_model("resnet18", num_classes=10).state_dict(), path)
    with pytest.raises(WeightsError) as exc:
        create_model("resnet18", weights=path)
    msg = str(exc.value)
    assert "fc.weight (file [10, 512] vs model [1000, 512])" in msg and "--num-classes" in msg
    with pytest.raises(WeightsError, match=r"not in model: layer1\.2\.conv1\.weight.*\(\+\d+ more\)"):
        load_weights(create_model("resnet18"), create_model("resnet34").state_dict())
    with pytest.raises(WeightsError, match=r"missing in file: layer1\.2\.conv1\.weight"):
        load_weights(create_model("resnet34"), create_model("resnet18").state_dict())


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError, match="did you mean .*resnet50"):
        create_model("resnet5O")

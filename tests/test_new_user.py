"""Regressions found when cnnexport was tried as a new user would (issue 14): each test failed
before its fix."""

import json
import subprocess
import sys
from pathlib import Path

import cnnexport
from cnnexport.calib import sample_image_paths


CNNEXPORT = str(Path(sys.executable).with_name("cnnexport"))  # the console script, as a user runs it


def _cli(*args, cwd=None, env=None, timeout=600):
    # Not `python -m cnnexport`: that puts the current folder on sys.path by itself.
    return subprocess.run([CNNEXPORT, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def _cli_without(package, *args, cwd=None):
    """The CLI in a process where importing ``package`` fails, as on a machine without it."""
    block = ("import sys, importlib.abc\n"
             "class Absent(importlib.abc.MetaPathFinder):\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             f"        if name.split('.')[0] == {package!r}: raise ModuleNotFoundError(name, name=name)\n"
             "sys.meta_path.insert(0, Absent())\n"
             "from cnnexport.cli import main; sys.argv = ['cnnexport'] + sys.argv[1:]; main()\n")
    return subprocess.run([sys.executable, "-c", block, *args], capture_output=True, text=True, timeout=600, cwd=cwd)


def test_photo_check_runs_without_scikit_image(tmp_path):
    """The quick start's `pip install .` has no scikit-image: the real-photograph check must still run."""
    assert len(sample_image_paths()) == 6
    assert all("cnnexport" in p.parts and p.stat().st_size < 100_000 for p in sample_image_paths())
    proc = _cli_without("skimage", "lenet5", "--weights", "digits", "-o", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (eq,) = report["equivalence"]
    photos = [p for p in eq["per_input"] if p["input"] == "photos"]
    assert photos and photos[0]["samples"] == 6 and eq["samples"] == 1 + 3 + 6
    assert report["warnings"] == []


def test_an_input_photographs_cannot_fill_is_a_warning_not_a_silent_skip(tmp_path):
    import torch

    two_channel = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    two_channel(torch.zeros(1, 2, 16, 16))
    report = cnnexport.export(two_channel.eval(), (1, 2, 16, 16), tmp_path, name="m")
    assert {p["input"] for p in report["equivalence"][0]["per_input"]} == {"random_b1", "random_b3"}
    assert any("random inputs only" in w for w in report["warnings"])


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
    from cnnexport.exporter.profile_onnx import macs_per_image
    from cnnexport.exporter.profile_onnx import profile_onnx
    from cnnexport.exporter.profile_torch import profile_module
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
    from cnnexport.exporter.profile_onnx import macs_per_image
    from cnnexport.exporter.profile_onnx import profile_onnx

    path = _mystery_onnx(tmp_path / "mystery.onnx")
    prof = profile_onnx(path)
    assert not prof.complete and prof.unknown_shape_nodes == 2 and prof.macs == 36 * 4 * 27
    assert prof.as_dict()["totals_are_lower_bounds"] and "lower bounds" in prof.notes[0]
    assert macs_per_image(path) is None  # bench: no GMAC/s or % of ceiling from a lower bound
    proc = _cli("profile", str(path))
    assert proc.returncode == 0, proc.stderr
    macs_line = next(line for line in proc.stdout.splitlines() if "MACs" in line)
    assert ">= " in macs_line and "lower bound" in macs_line


def test_bench_measures_files_whose_input_size_is_dynamic(small_net, tmp_path):
    """An OpenVINO IR converted from a torch module (every input dimension dynamic) and an ONNX file
    with dynamic height and width: ``--input-size`` fills what they leave open."""
    import openvino as ov
    import torch

    ov.save_model(ov.convert_model(small_net, example_input=torch.zeros(1, 3, 32, 32)), str(tmp_path / "net.xml"))
    torch.onnx.export(small_net, torch.zeros(1, 3, 32, 32), str(tmp_path / "net.onnx"), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    files = [str(tmp_path / "net.xml"), str(tmp_path / "net.onnx")]
    quick = ["--runs", "3", "--min-time", "0", "--warmup", "1", "--rounds", "1", "--no-ceiling"]
    refused = _cli("bench", files[0], *quick)
    assert refused.returncode == 2 and "--input-size" in refused.stderr and "Traceback" not in refused.stderr
    proc = _cli("bench", *files, "--input-size", "32", "--batch", "2", *quick, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert {r["runtime"] for r in rows} == {"openvino", "onnxruntime"} and all(r["batch"] == 2 for r in rows)
    onnx_row = next(r for r in rows if r["runtime"] == "onnxruntime")
    from cnnexport.exporter.profile_torch import profile_module

    assert onnx_row["macs"] == profile_module(small_net, (1, 3, 32, 32)).macs  # profiled at the size given
    wrong = _cli("bench", files[1], "--input-size", "1,32,32", *quick)
    assert wrong.returncode == 2 and "does not fit" in wrong.stderr


def test_export_int8_summary_shows_the_gated_mean_cosine_and_the_accuracy(tmp_path):
    proc = _cli("lenet5", "--weights", "digits", "--int8", "--calib", "digits", "--calib-count", "100", "-o",
                str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    eq = next(e for e in report["equivalence"] if e["artifact"] == "lenet5.int8.onnx")
    assert eq["tolerance"].startswith("mean cosine >=") and eq["cosine_min"] <= eq["cosine_mean"]
    cosine_row = next(line for line in proc.stdout.splitlines() if line.startswith("│ cosine"))
    assert f"mean {eq['cosine_mean']:.4f} (min {eq['cosine_min']:.4f})" in cosine_row
    assert eq["samples"] == 450 and 0.9 < eq["accuracy_int8"] <= 1
    accuracy_row = next(line for line in proc.stdout.splitlines() if line.startswith("│ accuracy"))
    assert f"int8 {eq['accuracy_int8']:.2%}" in accuracy_row and f"fp32 {eq['accuracy_fp32']:.2%}" in accuracy_row


def _convnext_like():
    """Two ConvNeXt blocks: depthwise conv, permute to NHWC, LayerNorm over the last axis,
    Linear-GELU-Linear, permute back, layer scale, in-place residual add. A batch-1 example made
    torch.export pin the batch here ("Invalid ranges [2:1]")."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c=8):
            super().__init__()
            self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
            self.norm = nn.LayerNorm(c)
            self.fc1, self.act, self.fc2 = nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c)
            self.layer_scale = nn.Parameter(torch.full((c, 1, 1), 0.5))

        def forward(self, x):
            y = self.dw(x).permute(0, 2, 3, 1)
            y = self.fc2(self.act(self.fc1(self.norm(y)))).permute(0, 3, 1, 2)
            y = self.layer_scale * y
            y += x
            return y

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 4, 4), Block(), Block(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 5)).eval()


def test_dynamo_keeps_the_batch_dynamic_through_permute_layernorm_linear(tmp_path):
    from cnnexport.exporter.graph import check

    report = cnnexport.export(_convnext_like(), (1, 3, 32, 32), tmp_path, name="cnx", exporter="dynamo")
    assert check(tmp_path / "cnx.onnx").dynamic_batch
    assert report["equivalence"][0]["passed"]
    assert {p["input"] for p in report["equivalence"][0]["per_input"]} >= {"random_b1", "random_b3"}


def test_dynamo_failure_names_its_cause_without_the_banner(tmp_path):
    import pytest
    import torch
    from torch import nn

    from cnnexport.errors import ExportError

    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = self.conv(x)
            return (y * 2 if y.sum() > 0 else y).mean((2, 3))

    class BranchesOnBatch(DataDependent):
        def forward(self, x):
            y = self.conv(x)
            return (y * 2 if x.shape[0] == 2 else y).mean((2, 3))

    with pytest.raises(ExportError) as info:
        cnnexport.export(DataDependent().eval(), (1, 3, 16, 16), tmp_path / "a", exporter="dynamo")
    message = str(info.value)
    assert "data-dependent" in message and "\x1b" not in message and "step 1/3" not in message
    assert "--exporter torchscript" in message and "--batch" not in message
    with pytest.raises(ExportError) as info:
        cnnexport.export(BranchesOnBatch().eval(), (1, 3, 16, 16), tmp_path / "b", exporter="dynamo")
    assert "batch" in str(info.value) and "--batch N" in str(info.value)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    static = cnnexport.export(BranchesOnBatch().eval(), (2, 3, 16, 16), tmp_path / "c", exporter="dynamo",
                              dynamic_batch=False)
    assert static["equivalence"][0]["passed"]


_USER_PACKAGE = '''
import torch
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """ConvNeXt's: a LayerNorm over the channels of an NCHW tensor (a subclass of nn.LayerNorm)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class StochasticDepth(nn.Module):
    """torchvision's: drops whole residual branches while training, the identity at eval."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = torch.empty([x.shape[0]] + [1] * (x.dim() - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class DropPath(StochasticDepth):
    """timm's name for the same thing."""


class Net(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = LayerNorm2d(8)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.sd1, self.sd2, self.dp = StochasticDepth(0.1), StochasticDepth(0.2), DropPath(0.1)
        self.head_norm = nn.LayerNorm(8)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.norm(self.stem(x))
        x = x + self.sd1(self.body(x))
        x = x + self.sd2(self.body(x)) + self.dp(x)
        return self.fc(self.drop(self.head_norm(x.mean((2, 3)))))


def build_net(num_classes=5):
    torch.manual_seed(0)
    return Net(num_classes)  # nn.Module's default: training mode
'''


def _user_project(root):
    """A user's project folder: ``mypkg/models.py`` with ``build_net``, not installed."""
    (root / "mypkg").mkdir(parents=True)
    (root / "mypkg" / "__init__.py").write_text("")
    (root / "mypkg" / "models.py").write_text(_USER_PACKAGE)
    return root


def test_export_from_the_users_own_project_folder(tmp_path):
    """`cnnexport export mypkg.models:build_net` run in the folder that holds mypkg: subclassed
    normalisations counted, stochastic depth listed, the training mode recorded as handed over."""
    project = _user_project(tmp_path / "project")
    proc = _cli("export", "mypkg.models:build_net", "--input-size", "16", "-o", str(tmp_path / "out"), "--json",
                cwd=project)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    kept = {k["type"]: k for k in report["graph"]["kept_normalizations"]}
    assert kept["LayerNorm2d"]["count"] == 1 and kept["LayerNorm2d"]["kind"] == "LayerNorm"
    assert kept["LayerNorm"]["count"] == 1
    assert sum(k["count"] for k in kept.values()) == report["graph"]["op_counts"]["LayerNormalization"]
    prep = report["prepare"]
    assert prep["train_only_removed"] == {"Dropout": 1, "DropPath": 1, "StochasticDepth": 2}
    assert prep["dropout_removed"] == 4
    assert {m["module"] for m in prep["train_only_modules"]} == {"sd1", "sd2", "dp", "drop"}
    assert prep["was_training"] is True
    assert any("training mode" in w for w in report["warnings"])
    assert report["equivalence"][0]["passed"]


def test_a_module_that_cannot_be_imported_names_the_fix(tmp_path):
    proc = _cli("export", "mypkg.models:build_net", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "PYTHONPATH" in proc.stderr and "pip install -e ." in proc.stderr and len(proc.stderr.splitlines()) == 1
    project = _user_project(tmp_path / "p")
    proc = _cli("export", "mypkg.models:no_such_builder", cwd=project)
    assert proc.returncode != 0 and "has no 'no_such_builder'" in proc.stderr


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


def test_missing_optional_extras_exit_6_and_samples_need_none(tmp_path):
    cnnexport.export(__import__("cnnexport.models", fromlist=["x"]).create_model("lenet5", weights="digits"),
                     (1, 1, 32, 32), tmp_path, name="lenet5", photos=False)
    digits = _cli_without("sklearn", "quantize", str(tmp_path / "lenet5.onnx"), "--calib", "digits")
    assert digits.returncode == 6 and "scikit-learn" in digits.stderr and "Traceback" not in digits.stderr
    samples = _cli_without("skimage", "quantize", str(tmp_path / "lenet5.onnx"), "--calib", "samples",
                           "--calib-count", "20", "-o", str(tmp_path / "s.int8.onnx"))
    assert samples.returncode == 0, samples.stderr
    plot = _cli_without("matplotlib", "study", "zoo", "--models", "lenet5")
    assert plot.returncode == 6 and "matplotlib" in plot.stderr and "Traceback" not in plot.stderr


def test_no_arguments_print_the_help():
    proc = _cli()
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("Usage: cnnexport") and "Commands:" in proc.stdout and "verify" in proc.stdout


def _invoke(*args):
    from click.testing import CliRunner

    from cnnexport.cli import cli

    return CliRunner().invoke(cli, list(args))


def test_a_mistyped_command_is_not_read_as_a_model_name():
    for typo, command in (("verfy", "verify"), ("lsit", "list"), ("benhc", "bench"), ("profil", "profile")):
        result = _invoke(typo, "x.onnx")
        assert result.exit_code == 2 and f"did you mean `cnnexport {command}`?" in result.stderr, result.stderr
    unknown = _invoke("resnt50")  # close to a model, not to a command: the model suggestion stays
    assert unknown.exit_code == 2 and "resnet50" in unknown.stderr and "cnnexport list`?" not in unknown.stderr


def test_weights_that_are_no_checkpoint_or_another_models_bundle(tmp_path):
    import torch

    text = tmp_path / "notes.pth"
    text.write_text("this is not a checkpoint\n")
    proc = _cli("lenet5", "--weights", str(text), "-o", str(tmp_path / "o"))
    assert proc.returncode == 3 and "is not a PyTorch checkpoint" in proc.stderr and "run code" not in proc.stderr
    whole = tmp_path / "whole.pth"
    torch.save({"w": torch.zeros(3)}, whole)
    (tmp_path / "cut.pth").write_bytes(whole.read_bytes()[:300])
    proc = _cli("lenet5", "--weights", str(tmp_path / "cut.pth"), "-o", str(tmp_path / "o"))
    line = proc.stderr.strip()
    assert proc.returncode == 3 and "corrupt" in line and len(proc.stderr.splitlines()) == 1
    inner = line.split("checkpoint (", 1)[1]
    if inner.endswith("...)"):  # cut: at a word boundary, never mid-word
        kept, whole = inner[:-4], whole_message(tmp_path / "cut.pth")
        assert whole.startswith(kept) and whole[len(kept)] in " ,;:."
    proc = _cli("resnet50", "--weights", "digits", "-o", str(tmp_path / "o"))
    assert proc.returncode == 3 and "ship for lenet5, shufflenet_v2_x0_5 only" in proc.stderr
    assert not (tmp_path / "o").exists()


def whole_message(path):
    """The error torch.load gives for ``path``, whole and on one line."""
    import torch

    try:
        torch.load(path, weights_only=True)
    except Exception as exc:
        return " ".join(str(exc).split())
    return ""


def test_verify_names_a_reference_made_for_another_model(tmp_path):
    from cnnexport.models import create_model

    cnnexport.export(create_model("lenet5", weights="digits"), (1, 1, 32, 32), tmp_path / "a", name="lenet5",
                     photos=False, formats=("onnx", "openvino"))
    cnnexport.export(create_model("lenet5"), (1, 1, 32, 32), tmp_path / "b", name="untrained", photos=False)
    cnnexport.export(create_model("resnet18"), (1, 3, 32, 32), tmp_path / "c", name="resnet18", photos=False)
    ref = str(tmp_path / "a" / "reference.npz")
    same_shape = _cli("verify", str(tmp_path / "b" / "untrained.onnx"), "--reference", ref)
    assert same_shape.returncode == 5 and "made for model 'lenet5'" in same_shape.stderr
    assert "not for 'untrained.onnx'" in same_shape.stderr
    other_shape = _cli("verify", str(tmp_path / "c" / "resnet18.onnx"), "--reference", ref)
    assert other_shape.returncode == 2 and "1x32x32 inputs for model 'lenet5'" in other_shape.stderr
    assert "takes 3x32x32" in other_shape.stderr
    assert _cli("verify", str(tmp_path / "a" / "lenet5.onnx"), "--reference", ref).returncode == 0
    odd = tmp_path / "lenet5.weird"
    odd.write_bytes((tmp_path / "a" / "lenet5.onnx").read_bytes())
    proc = _cli("verify", str(odd), "--reference", ref)
    assert proc.returncode == 2 and "None" not in proc.stderr and "'.weird' files" in proc.stderr


def test_a_truncated_openvino_file_names_the_cause(tmp_path):
    from cnnexport.models import create_model

    cnnexport.export(create_model("lenet5"), (1, 1, 32, 32), tmp_path, name="lenet5", photos=False,
                     formats=("onnx", "openvino"))
    xml = tmp_path / "lenet5.xml"
    data = xml.read_bytes()  # cut after the first whole layer: the parser's message then does not depend on
    xml.write_bytes(data[:data.index(b"</layer>") + len(b"</layer>")])  # what a fixed byte offset falls in
    proc = _cli("verify", str(xml), "--reference", str(tmp_path / "reference.npz"))
    assert proc.returncode == 8 and "mismatch" in proc.stderr and "core.cpp" not in proc.stderr


def test_list_with_no_match_is_an_error():
    result = _invoke("list", "foo*")
    assert result.exit_code == 2 and "no model matches 'foo*'" in result.stderr and result.stdout == ""


def test_papers_and_arxiv_ids_name_the_same_paper():
    from cnnexport.models import model_info

    tv, orig = model_info("alexnet"), model_info("alexnet_lrn")
    assert tv.arxiv == "1404.5997" and "One weird trick" in tv.paper
    assert orig.arxiv == "" and "NeurIPS 2012" in orig.paper and "Krizhevsky" in orig.paper


def test_the_api_names_files_after_the_registry_name(tmp_path):
    from cnnexport.models import create_model

    report = cnnexport.export(create_model("resnet18"), (1, 3, 32, 32), tmp_path, photos=False)
    assert report["model"] == "resnet18" and (tmp_path / "resnet18.onnx").is_file()


def test_repository_hygiene():
    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text()
    for link in ("DESIGN.md",):
        assert link not in readme or (root / link).is_file()
    ignored = (root / ".gitignore").read_text().split()
    assert "out/" in ignored and "exports/" in ignored  # the README's example output folders


def test_tiny_outputs_get_a_relative_tolerance_and_a_warning(tmp_path):
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e-5)
    report = cnnexport.export(model, (1, 3, 8, 8), tmp_path / "o", name="tiny", photos=False)
    (eq,) = report["equivalence"]
    assert eq["output_scale"] < 1e-6 and eq["tolerance"] == eq["output_scale"] * 1e-4
    assert eq["tolerance_rule"] == "1e-04 x max |output|"
    assert any("near zero" in w for w in report["warnings"])
    big = cnnexport.export(nn.Sequential(nn.Conv2d(3, 4, 3)).eval(), (1, 3, 8, 8), tmp_path / "b", photos=False)
    assert not any("near zero" in w for w in big["warnings"])


def test_the_cli_never_forks_itself(tmp_path):
    """Libraries' multiprocessing children (OpenVINO telemetry) must not be forks of a process that runs
    JAX (LiteRT) and thread pools: no at-fork handler may run in the CLI's process, through an OpenVINO
    export and an explicit multiprocessing.Process."""
    script = ("import os, sys, multiprocessing\n"
              "os.register_at_fork(before=lambda: os.write(2, b'FORKED\\n'))\n"
              "from cnnexport.cli import main\n"
              "sys.argv = ['cnnexport'] + sys.argv[1:]\n"
              "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
              "p = multiprocessing.Process(target=os.getpid); p.start(); p.join()\n"
              "print(multiprocessing.get_start_method())\n")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    proc = subprocess.run([sys.executable, "-c", script, "lenet5", "--openvino", "-o", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "FORKED" not in proc.stderr and "os.fork() was called" not in proc.stderr
    assert proc.stdout.strip().splitlines()[-1] in ("forkserver", "spawn")


def _frames_on_a_terminal(*args, cwd=None):
    """Run the CLI on a pseudo-terminal; (seconds since start, status text) of every spinner frame drawn."""
    import os
    import pty
    import re
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI, with the terminal as stdin, stdout and stderr
        if cwd:
            os.chdir(cwd)
        os.execv(CNNEXPORT, [CNNEXPORT, *args])
    frames, start = [], time.monotonic()
    while True:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # the CLI exited and the terminal closed
            break
        if not data:
            break
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", data.decode(errors="replace"))
        frames += [(time.monotonic() - start, m.group(1).strip())
                   for m in re.finditer(r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]\s*([^\r\n]*)", text)]
    _, status = os.waitpid(pid, 0)
    return frames, os.waitstatus_to_exitcode(status)


def test_the_spinner_names_every_stage_and_keeps_turning_through_converters(tmp_path):
    """The TFLite and ncnn converters run with fds 1 and 2 redirected and some native code holds the
    GIL: the spinner (drawn by its own process) must still show each stage while it runs."""
    frames, code = _frames_on_a_terminal("lenet5", "--weights", "digits", "--tflite", "--ncnn", "-o",
                                         str(tmp_path / "o"))
    assert code == 0
    stages = [text.split(": ", 1)[1] for _, text in frames if ": " in text]
    for stage in ("load", "export", "simplify", "convert tflite", "convert ncnn", "verify"):
        assert stage in stages, (stage, sorted(set(stages)))
    order = [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s]
    assert order.index("convert tflite") < order.index("convert ncnn") < order.index("verify")
    # frames keep coming (rich draws ~12 a second); a frozen display left gaps of 9-17 s
    gaps = [b[0] - a[0] for a, b in zip(frames, frames[1:])]
    assert max(gaps) < 3.0, max(gaps)

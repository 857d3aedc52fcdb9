"""The command line: the headline export, the registry table, and one line per bad input."""

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cnnexport.cli import cli
from cnnexport.errors import EXIT_CODES
from cnnexport.models import create_model
from conftest import CNNEXPORT, randomize_bn_stats, run_cli, run_cli_without, shared_build


def run(*args, cwd=None):
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(cli, list(args))
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(cli, list(args))
    finally:
        os.chdir(old)


def assert_one_line_error(result, code):
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_model_name_first_means_export(tmp_path):
    a = run("resnet18", "--fold-bn", "--onnx", "--input-size", "64", "-o", str(tmp_path / "a"), "--json")
    b = run("export", "resnet18", "--fold-bn", "--onnx", "--input-size", "64", "-o", str(tmp_path / "b"), "--json")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ra, rb = json.loads(a.stdout), json.loads(b.stdout)  # --json: nothing but JSON on stdout
    for key in ("model", "params", "input_shape", "graph", "fold_bn", "exporter", "opset"):
        assert ra[key] == rb[key]
    assert ra["input_shape"] == [1, 3, 64, 64] and ra["graph"]["batchnorm_nodes"] == 0
    assert (tmp_path / "a" / "resnet18.onnx").is_file() and (tmp_path / "a" / "report.json").is_file()


def test_default_output_dir_and_summary_table(tmp_path):
    result = run("resnet18", "--input-size", "3,64,48", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    out = tmp_path / "exports" / "resnet18"
    report = json.loads((out / "report.json").read_text())
    assert report["input_shape"] == [1, 3, 64, 48]
    assert "passed" in result.stdout and "resnet18.onnx" in result.stdout and "max abs error" in result.stdout


def test_the_export_tables_heading_is_one_line_however_narrow_the_table(tmp_path, monkeypatch):
    """The heading (model, params, input, batch) is a line of its own: a table title would wrap to the
    table's width, mid-phrase."""
    from rich.console import Console

    from cnnexport.cli.render import export as render

    result = run("lenet5", "-o", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    console = Console(width=90, record=True)
    monkeypatch.setattr(render, "out_console", lambda: console)
    render.print_export_summary(json.loads(result.stdout))
    first = console.export_text().splitlines()[0]
    assert first.startswith("lenet5: ") and first.endswith("(dynamic batch)"), first


def test_an_export_of_many_files_is_summarised_a_row_per_file_that_fits_120_columns(tmp_path, monkeypatch):
    """Eleven files as eleven columns squeezed every cell to a few characters at a terminal's width: past four
    files the summary has a row per file, each name whole."""
    from rich.console import Console

    from cnnexport.cli.render import export as render

    result = run("lenet5", "--weights", "digits", "--openvino", "--tflite", "--ncnn", "--mnn", "-o", str(tmp_path),
                 "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["artifacts"]) > render.FILES_AS_COLUMNS
    console = Console(width=120, record=True)
    monkeypatch.setattr(render, "out_console", lambda: console)
    render.print_export_summary(report)
    lines = console.export_text().splitlines()
    for a in report["artifacts"]:
        name = Path(a["path"]).name
        [row] = [ln for ln in lines if ln.startswith(f"│ {name} ")]  # a row each, the name whole
        assert "passed" in row and "fp32" in row
    assert max(map(len, lines[:len(report["artifacts"]) + 4])) <= 120


def test_a_long_line_stays_one_line_off_a_terminal(capsys):
    """Off a terminal (a pipe, a log), a line of text longer than the console's 200 columns is printed whole:
    verify's OpenVINO note ran past 200 columns and broke in two, and a script's grep found half of it."""
    from cnnexport.cli.render import out_console

    line = "note: " + " ".join(f"word{i}" for i in range(60))
    assert len(line) > 300
    out_console().print(line, markup=False, highlight=False)
    assert capsys.readouterr().out == line + "\n"


def test_no_fold_bn_dynamo_static_batch(tmp_path):
    result = run("resnet18", "--no-fold-bn", "--exporter", "dynamo", "--batch", "2", "--input-size", "64",
                 "--num-classes", "7", "-o", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["graph"]["batchnorm_nodes"] == 20 and report["input_shape"] == [2, 3, 64, 64]
    assert report["graph"]["outputs"][0]["shape"] == [2, 7]


def test_weights_option_loads_a_checkpoint(tmp_path):
    torch.manual_seed(3)
    model = create_model("resnet18", num_classes=5)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "ckpt.pth")
    result = run("resnet18", "--weights", str(tmp_path / "ckpt.pth"), "--num-classes", "5", "--input-size", "64",
                 "-o", str(tmp_path / "o"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["graph"]["outputs"][0]["shape"] == ["batch", 5]


def test_user_callable_model(tmp_path):
    result = run("conftest:make_small_net", "--input-size", "32", "--num-classes", "4", "-o", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"] == "make_small_net" and len(report["prepare"]["scale_shift"]) == 1


def test_a_users_factory_that_raises_or_needs_arguments_is_a_usage_error(tmp_path, monkeypatch):
    """The user's own code failing is not cnnexport's bug: exit 2, the factory and the exception named."""
    (tmp_path / "user_factories.py").write_text(
        "def needs_depth(depth):\n    raise AssertionError('not reached')\n\n"
        "def raises():\n    raise RuntimeError('weights.pt not found on this machine')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    line = assert_one_line_error(run("user_factories:needs_depth", "-o", str(tmp_path / "a")), 2)
    assert "'user_factories:needs_depth' cannot be called with no arguments" in line and "depth" in line
    line = assert_one_line_error(run("user_factories:raises", "-o", str(tmp_path / "b")), 2)
    assert "'user_factories:raises' raised RuntimeError" in line and "weights.pt not found" in line
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_list_table_and_json():
    result = run("list")
    assert result.exit_code == 0 and "resnet50" in result.stdout and "25,557,032" in result.stdout
    rows = json.loads(run("list", "resnet*", "--json").stdout)
    assert {r["name"] for r in rows} >= {"resnet18", "resnet50"}
    assert next(r for r in rows if r["name"] == "resnet50")["arxiv"] == "1512.03385"


# --- errors: one line on stderr, a documented exit code, nothing written -------------------------

def test_unknown_model_suggests(tmp_path):
    line = assert_one_line_error(run("resnet5", "-o", str(tmp_path / "o")), 2)
    assert "did you mean" in line and "resnet50" in line
    assert not (tmp_path / "o").exists()


def test_bad_input_size():
    assert "input-size" in assert_one_line_error(run("resnet18", "--input-size", "2x2x2x2"), 2)
    assert "input-size" in assert_one_line_error(run("resnet18", "--input-size", "0"), 2)
    for half_typed in ("224x", "x224", "224,,224", "3,224,"):  # not read as 224x224
        assert "give H, HxW or C,H,W" in assert_one_line_error(run("resnet18", "--input-size", half_typed), 2)
    assert "each dimension must be 1..16384" in assert_one_line_error(run("resnet18", "--input-size", "99999"), 2)
    from cnnexport.cli.options import parse_input_size

    assert parse_input_size("224x192", 3) == parse_input_size("224, 192", 3) == (3, 224, 192)
    assert parse_input_size("1x32x32", None) == (1, 32, 32)


@pytest.mark.parametrize("args,message", [
    (["bench", "x.onnx", "--runs", "0"], "--runs"), (["bench", "x.onnx", "--rounds", "0"], "--rounds"),
    (["bench", "x.onnx", "--warmup", "-1"], "--warmup"), (["bench", "x.onnx", "--min-time", "-1"], "--min-time"),
    (["verify", "x.onnx", "--reference", "r.npz", "--atol", "-1"], "--atol"),
    (["lenet5", "--atol", "-1"], "--atol"), (["lenet5", "--int8", "--calib", "digits", "--calib-count", "0"],
                                              "--calib-count"),
    (["study", "zoo", "--threads", "0"], "--threads"),
])
def test_out_of_range_options_are_refused_by_their_type(args, message):
    """Ranges checked by click's own types, in one place: the same rule for every command."""
    line = assert_one_line_error(run(*args), 2)
    assert message in line and "range" in line


@pytest.mark.parametrize("args,needs", [
    (["--tflite-layout", "nchw"], "--tflite"), (["--calib", "digits"], "--int8"), (["--fp16-io"], "--fp16"),
    (["--calib-method", "entropy"], "--int8"), (["--int8-min-cosine", "0.9"], "--int8"),
    (["--executorch-max-batch", "4"], "--executorch"),
])
def test_an_option_without_the_one_it_needs_is_refused(args, needs, tmp_path):
    """Every dependent option the same way: refused, never silently ignored."""
    line = assert_one_line_error(run("lenet5", *args, "-o", str(tmp_path / "o")), 2)
    assert f"applies only with {needs}" in line or needs in line
    assert not (tmp_path / "o").exists()


def test_input_size_the_model_cannot_take(tmp_path):
    line = assert_one_line_error(run("resnet18", "--input-size", "1,64,64", "-o", str(tmp_path / "o")), 2)
    assert "cannot take input shape 1x1x64x64" in line and not (tmp_path / "o").exists()


def test_click_usage_errors_are_one_line():
    assert "--batch" in assert_one_line_error(run("resnet18", "--batch", "many"), 2)
    assert "--batch" in assert_one_line_error(run("resnet18", "--batch", "0"), 2)
    assert "no such option" in assert_one_line_error(run("resnet18", "--frobnicate"), 2).lower()


def test_missing_weights_file(tmp_path):
    line = assert_one_line_error(run("resnet18", "--weights", str(tmp_path / "nope.pt")), 3)
    assert "does not exist" in line


def test_corrupt_weights_file(tmp_path):
    for name in ("bad.pt", "bad.safetensors"):
        (tmp_path / name).write_bytes(b"\x00garbage" * 100)
        line = assert_one_line_error(run("resnet18", "--weights", str(tmp_path / name), "-o", str(tmp_path / "o")), 3)
        assert name in line
    assert not (tmp_path / "o").exists()


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    _Payload.marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"conv1.weight": _Payload()}, f)
    line = assert_one_line_error(run("resnet18", "--weights", str(tmp_path / "evil.pt")), 3)
    assert "refusing to load" in line
    assert not _Payload.marker.exists()
    assert "--trust-pickle" in line  # the way to load it, for a file the user trusts


_PICKLED_NET = """
import torch.nn as nn


class PickledNet(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Conv2d(1, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, 3))
"""


def test_a_whole_pickled_model_loads_with_trust_pickle(tmp_path, monkeypatch):
    """torch.save(model) and an Ultralytics-style checkpoint ({'model': fp16 module, 'ema': None, ...}) are
    models with --trust-pickle (named after the file, their classes imported from beside it), and their
    weights load into the architecture with --weights; without it they are refused naming the flag, and a
    pickle whose class cannot be imported is named in one line."""
    import importlib.util

    (tmp_path / "pickled_net.py").write_text(_PICKLED_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.util.spec_from_file_location("pickled_net", tmp_path / "pickled_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "pickled_net", module)
    net = module.PickledNet()
    randomize_bn_stats(net)
    torch.save(net, tmp_path / "whole.pt")
    torch.save({"epoch": 9, "model": module.PickledNet().half(), "ema": None, "train_args": {"imgsz": 16}},
               tmp_path / "best.pt")
    line = assert_one_line_error(run(str(tmp_path / "whole.pt"), "-o", str(tmp_path / "no")), 2)
    assert "--trust-pickle" in line and not (tmp_path / "no").exists()
    result = run(str(tmp_path / "whole.pt"), "--trust-pickle", "--input-size", "16", "-o", str(tmp_path / "a"),
                 "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["model"] == "whole" and report["input_shape"] == [1, 1, 16, 16]
    assert report["equivalence"][0]["passed"] and report["graph"]["batchnorm_nodes"] == 0
    from cnnexport.exporter.verify import load_reference

    sets, refs, _ = load_reference(tmp_path / "a" / "reference.npz")
    with torch.no_grad():  # the file's weights, not a fresh model's
        got = net.eval()(torch.from_numpy(np.concatenate(sets[0].batches))).numpy()
    assert np.allclose(got, refs[0], atol=1e-5)
    result = run(str(tmp_path / "best.pt"), "--trust-pickle", "--input-size", "16", "-o", str(tmp_path / "b"),
                 "--json")
    assert result.exit_code == 0, result.output
    assert any("float16" in w for w in json.loads(result.output)["warnings"])
    result = run("pickled_net:PickledNet", "--weights", str(tmp_path / "whole.pt"), "--trust-pickle",
                 "--input-size", "16", "-o", str(tmp_path / "c"), "--json", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["equivalence"][0]["passed"]
    (tmp_path / "pickled_net.py").unlink()
    monkeypatch.delitem(sys.modules, "pickled_net")
    line = assert_one_line_error(run(str(tmp_path / "whole.pt"), "--trust-pickle", "-o", str(tmp_path / "d")), 3)
    assert "module 'pickled_net'" in line and not (tmp_path / "d").exists()


def test_weights_that_do_not_fit(tmp_path):
    torch.save(create_model("resnet18", num_classes=10).state_dict(), tmp_path / "w.pt")
    line = assert_one_line_error(run("resnet18", "--weights", str(tmp_path / "w.pt")), 3)
    assert "fc.weight (file [10, 512] vs model [1000, 512])" in line


def test_unwritable_output_dir(tmp_path):
    (tmp_path / "file").write_text("x")
    line = assert_one_line_error(run("resnet18", "--input-size", "32", "-o", str(tmp_path / "file" / "sub")), 4)
    assert "cannot write to output directory" in line


def test_verification_failure_exit_code(tmp_path):
    line = assert_one_line_error(run("test_export:TraceUnsafe", "--input-size", "16", "-o", str(tmp_path / "o")), 5)
    assert "does not give the same outputs twice" in line and not (tmp_path / "o").exists()


def test_every_exit_code_used_is_documented():
    from cnnexport import errors

    codes = {cls.exit_code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, Exception)}
    assert codes <= set(EXIT_CODES)


@pytest.mark.slow
def test_installed_script_runs_the_headline_export(tmp_path):
    """The literal headline command, as a cold process of the installed console script, at 224x224."""
    exe = shutil.which("cnnexport", path=str(Path(sys.executable).parent)) or shutil.which("cnnexport")
    assert exe, "the cnnexport console script is not installed"
    proc = subprocess.run([exe, "resnet50", "--fold-bn", "--onnx"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "exports" / "resnet50" / "report.json").read_text())
    assert report["params"] == 25_557_032 and report["input_shape"] == [1, 3, 224, 224]
    assert report["graph"]["batchnorm_nodes"] == 0 and report["graph"]["dropout_nodes"] == 0
    assert report["equivalence"][0]["passed"] and report["equivalence"][0]["top1_agreement"] == 1.0
    assert "resnet50.onnx" in proc.stdout


def test_script_help_and_error_in_subprocess(tmp_path):
    exe = shutil.which("cnnexport", path=str(Path(sys.executable).parent)) or shutil.which("cnnexport")
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "export" in proc.stdout
    proc = subprocess.run([exe, "vgg99"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown model 'vgg99'")
    assert "Traceback" not in proc.stderr


class _ConvBn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x))


def test_a_file_given_as_model_is_named_for_what_it_is(tmp_path):
    """`cnnexport model.pth --onnx`: a checkpoint or an exported file as MODEL gets a line saying what it is and
    what to give instead, not "unknown model"."""
    torch.save(_ConvBn().state_dict(), tmp_path / "weights.pth")
    (tmp_path / "damaged.pt").write_bytes(b"")
    expected = {"weights.pth": "is no model file cnnexport reads (a TorchScript archive is one): MODEL names",
                "damaged.pt": "is no model file cnnexport reads",
                "net.onnx": "names an exported file (onnxruntime), not a model to export"}
    for name, message in expected.items():
        result = CliRunner().invoke(cli, [str(tmp_path / name), "--onnx", "-o", str(tmp_path / "out")])
        assert result.exit_code == 2 and message in result.stderr, (name, result.output)
        assert len(result.stderr.strip().splitlines()) == 1
        assert ("--weights" in result.stderr) == (name != "net.onnx")  # the fix for a checkpoint: --weights
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(cli, ["eval", "--model", "net.onnx", "--data", "digits"])
    assert result.exit_code == 2 and "names an exported file (onnxruntime)" in result.stderr, result.output


@pytest.mark.parametrize("capture", ["script", "trace"])
def test_a_torchscript_file_exports_through_onnx(tmp_path, capture):
    """`cnnexport model.pt --openvino` for a torch.jit.save archive: the ONNX-converted formats, named after the
    file, verified against the TorchScript module; what needs the Python module is one line, nothing written."""
    module = _ConvBn().eval()
    module.bn.running_var.uniform_(0.5, 2)
    scripted = torch.jit.script(module) if capture == "script" else torch.jit.trace(module, torch.randn(1, 3, 8, 8))
    scripted.save(str(tmp_path / "net.pt"))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [str(tmp_path / "net.pt"), "--input-size", "16", "--openvino", "-o", str(out),
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"] == "net" and report["prepare"]["torchscript"] and report["graph"]["batchnorm_nodes"] == 0
    assert [e["artifact"] for e in report["equivalence"]] == ["net.onnx", "net.xml"]
    assert all(e["passed"] for e in report["equivalence"])
    refused = {("--tflite",): "--tflite converts the Python module, which a TorchScript file does not hold",
               ("--weights", str(tmp_path / "w.pth")): "is a TorchScript file: its weights and classes are inside",
               ("--input-size", "1,16,16"): "cannot take input shape 1x1x16x16 (RuntimeError: Given groups=1"}
    for args, message in refused.items():
        result = CliRunner().invoke(cli, [str(tmp_path / "net.pt"), *args, "-o", str(tmp_path / "no")])
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
    assert not (tmp_path / "no").exists()
    result = CliRunner().invoke(cli, ["profile", str(tmp_path / "net.pt")])
    assert result.exit_code == 2 and "profile its ONNX file" in result.stderr, result.output
    result = CliRunner().invoke(cli, ["bench", str(tmp_path / "net.pt")])
    assert result.exit_code == 2 and "is a TorchScript file: bench measures exported files" in result.stderr
    import zipfile

    with zipfile.ZipFile(tmp_path / "broken.pt", "w") as archive:  # TorchScript's layout, nothing loadable in it
        archive.writestr("broken/code/__torch__.py", "not python")
    result = CliRunner().invoke(cli, [str(tmp_path / "broken.pt"), "-o", str(tmp_path / "no")])
    assert result.exit_code == 3 and "cannot load TorchScript file" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "no").exists()


def test_help_does_not_import_torch():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom cnnexport.cli import cli\n"
            "r = CliRunner().invoke(cli, ['--help'])\nassert r.exit_code == 0\n"
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'openvino') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("args", [["lenet5"], ["profile", "resnet50"], ["bench", "lenet5"]])
def test_a_command_that_needs_torch_on_a_torch_free_install_says_so(args, tmp_path):
    """The deploy install has no torch: a model name (export, profile, bench) needs it; exit 6, one line."""
    proc = run_cli_without("torch", *args, cwd=tmp_path)
    assert proc.returncode == 6 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "needs PyTorch" in line and "pip install torch" in line


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
    proc = run_cli("export", "mypkg.models:build_net", "--input-size", "16", "-o", str(tmp_path / "out"), "--json",
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
    proc = run_cli("export", "mypkg.models:build_net", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "PYTHONPATH" in proc.stderr and "pip install -e ." in proc.stderr and len(proc.stderr.splitlines()) == 1
    project = _user_project(tmp_path / "p")
    proc = run_cli("export", "mypkg.models:no_such_builder", cwd=project)
    assert proc.returncode != 0 and "has no 'no_such_builder'" in proc.stderr


_SIBLING_BLOCKS = """
import torch.nn as nn


class Block(nn.Sequential):
    def __init__(self, c_in, c_out):
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())
"""
_NET_BESIDE_ITS_BLOCKS = """
import torch.nn as nn
from blocks import Block  # a sibling module, as `python nets/net.py` finds it


class Net(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.body = nn.Sequential(Block(3, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))

    def forward(self, x):
        return self.body(x)
"""


def test_export_from_a_python_file_by_its_path(tmp_path):
    """`cnnexport nets/net.py:Net`: the file imported as `python nets/net.py` runs it (its sibling imports
    work), from a relative path and from another folder by its absolute path; the file alone names its classes."""
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "blocks.py").write_text(_SIBLING_BLOCKS)
    (tmp_path / "nets" / "net.py").write_text(_NET_BESIDE_ITS_BLOCKS)
    proc = run_cli("nets/net.py:Net", "--input-size", "16", "-o", str(tmp_path / "out"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["equivalence"][0]["passed"] and report["graph"]["batchnorm_nodes"] == 0
    assert report["graph"]["folded"][0]["what"] == "BatchNorm2d" and report["graph"]["folded"][0]["count"] == 1
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_cli(f"{tmp_path}/nets/net.py:Net", "--input-size", "16", "-o", str(elsewhere / "out"), cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert (elsewhere / "out" / "Net.onnx").is_file()
    proc = run_cli("nets/net.py", "-o", str(tmp_path / "o2"), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "nets/net.py:Net" in proc.stderr
    proc = run_cli("nets/net.py:net", "-o", str(tmp_path / "o2"), cwd=tmp_path)
    assert proc.returncode == 2 and "did you mean 'nets/net.py:Net'" in proc.stderr
    proc = run_cli("nets/none.py:Net", "-o", str(tmp_path / "o2"), cwd=tmp_path)
    assert proc.returncode == 2 and "no file 'nets/none.py'" in proc.stderr
    assert not (tmp_path / "o2").exists()


_NETS_OF_OTHER_INPUTS = """
import torch.nn as nn


class Gray(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


class Audio(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Conv1d(1, 8, 9, stride=4), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                         nn.Linear(8, 4))


class Lazy(nn.Sequential):
    def __init__(self):
        super().__init__(nn.LazyConv2d(8, 3), nn.LazyBatchNorm2d(), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))
"""


def test_a_users_model_is_given_the_input_its_layers_take(tmp_path):
    """A grayscale model is exported at its first convolution's one channel (--input-size gives H and W only);
    a 1-D model is refused in one line naming its Conv1d; lazy layers get their shapes from the input
    size, and loaded lazy weights are folded like any others."""
    (tmp_path / "other_inputs.py").write_text(_NETS_OF_OTHER_INPUTS)
    result = run("other_inputs.py:Gray", "--input-size", "20", "-o", str(tmp_path / "gray"), "--json", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["input_shape"] == [1, 1, 20, 20] and report["equivalence"][0]["passed"]
    line = assert_one_line_error(run("other_inputs.py:Audio", "-o", str(tmp_path / "audio"), cwd=tmp_path), 2)
    assert "Conv1d" in line and "N x C x H x W" in line and not (tmp_path / "audio").exists()

    result = run("other_inputs.py:Lazy", "--input-size", "12", "-o", str(tmp_path / "lazy"), "--json", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["input_shape"] == [1, 3, 12, 12] and report["equivalence"][0]["passed"]
    assert any("lazy layers (LazyBatchNorm2d, LazyConv2d, LazyLinear)" in w for w in report["warnings"])
    import importlib.util

    spec = importlib.util.spec_from_file_location("other_inputs_copy", tmp_path / "other_inputs.py")
    nets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nets)
    trained = nets.Lazy()
    trained(torch.zeros(1, 3, 12, 12))
    torch.save(trained.state_dict(), tmp_path / "lazy.pt")
    result = run("other_inputs.py:Lazy", "--input-size", "12", "--weights", str(tmp_path / "lazy.pt"),
                 "-o", str(tmp_path / "loaded"), "--json", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["graph"]["batchnorm_nodes"] == 0 and report["graph"]["folded"][0]["count"] == 1
    assert not any("lazy layers" in w or "could not trace" in w for w in report["warnings"])


def test_user_code_that_fails_while_imported_is_the_users_error(tmp_path):
    """A module that raises or does not parse is named with its cause, exit 2, not called a cnnexport bug;
    CNNEXPORT_DEBUG=1 shows where in the user's file it raised."""
    (tmp_path / "broken.py").write_text("import torch\nraise RuntimeError('no GPU here')\n")
    (tmp_path / "typo.py").write_text("import torch\n\ndef build(:\n    pass\n")
    for spec, words in (("broken:Net", ["'broken' raised RuntimeError while being imported", "no GPU here"]),
                        ("broken.py:Net", ["'broken.py' raised RuntimeError", "no GPU here"]),
                        ("typo:build", ["'typo' has a syntax error", "typo.py, line 3"])):
        proc = run_cli(spec, "-o", str(tmp_path / "out"), cwd=tmp_path)
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, (spec, proc.stderr)
        assert all(w in proc.stderr for w in words) and "internal error" not in proc.stderr, (spec, proc.stderr)
    env = {**os.environ, "CNNEXPORT_DEBUG": "1"}
    proc = run_cli("broken:Net", "-o", str(tmp_path / "out"), cwd=tmp_path, env=env)
    assert proc.returncode == 2 and "Traceback" in proc.stderr and 'broken.py", line 2' in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("error: 'broken' raised RuntimeError")
    assert not (tmp_path / "out").exists()


def test_no_arguments_print_the_help():
    proc = run_cli()
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("Usage: cnnexport") and "Commands:" in proc.stdout and "verify" in proc.stdout


def _invoke(*args):
    from click.testing import CliRunner

    from cnnexport.cli import cli

    return CliRunner().invoke(cli, list(args))


def test_other_tools_option_names_get_ours():
    """--half, --imgsz, --format (Ultralytics), --checkpoint (timm), ORT's --calibrate_method: the equivalent
    here in one line, where click guessed by spelling (--half: did you mean --atol?). Every flag a hint names is
    an option of its command."""
    import re

    from cnnexport.cli import cli
    from cnnexport.cli.foreign_options import FOREIGN_OPTIONS

    for option, (_, equivalents) in FOREIGN_OPTIONS.items():
        for command, text in equivalents.items():
            params = cli.commands[command].params
            have = {o for p in params for o in (*p.opts, *p.secondary_opts)}
            assert set(re.findall(r"(?<![\w-])-{1,2}[a-z][a-z0-9-]*", text)) <= have, (option, command, text)
    for args, words in ((["export", "lenet5", "--half"], ["'--half' (Ultralytics' name)", "export: --fp16"]),
                        (["lenet5", "--imgsz=64"], ["'--imgsz'", "--input-size"]),
                        (["export", "lenet5", "--format", "onnx"], ["--openvino --tflite"]),
                        (["bench", "lenet5", "--half"], ["bench: --precision fp16"]),
                        (["quantize", "x.onnx", "--calibrate_method", "entropy"], ["quantize: --calib-method"]),
                        (["export", "lenet5", "--checkpoint", "w.pth"], ["(timm's name)", "--weights"])):
        result = _invoke(*args)
        assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, (args, result.stderr)
        assert all(w in result.stderr for w in words) and "Did you mean" not in result.stderr, (args, result.stderr)
    plain = _invoke("export", "lenet5", "--halff")  # no other tool's: click's own message
    assert plain.exit_code == 2 and "No such option '--halff'" in plain.stderr


def test_a_mistyped_command_is_not_read_as_a_model_name():
    for typo, command in (("verfy", "verify"), ("lsit", "list"), ("benhc", "bench"), ("profil", "profile")):
        result = _invoke(typo, "x.onnx")
        assert result.exit_code == 2 and f"did you mean `cnnexport {command}`?" in result.stderr, result.stderr
    unknown = _invoke("resnt50")  # close to a model, not to a command: the model suggestion stays
    assert unknown.exit_code == 2 and "resnet50" in unknown.stderr and "cnnexport list`?" not in unknown.stderr


def test_list_with_no_match_is_an_error():
    result = _invoke("list", "foo*")
    assert result.exit_code == 2 and "no model matches 'foo*'" in result.stderr and result.stdout == ""


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


def _wait_for_staged(out, proc, pattern: str, timeout: float = 600.0) -> bool:
    """Poll the run's staging folder until a file matching ``pattern`` is there (True) or the run ends."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(out.glob(f".cnnexport-staging-*/{pattern}" if pattern else ".cnnexport-staging-*")):
            return True
        time.sleep(0.005)
    return False


def _killed_export_command(out) -> list[str]:
    exe = shutil.which("cnnexport", path=str(Path(sys.executable).parent)) or "cnnexport"
    return [exe, "resnet18", "--input-size", "96", "--openvino", "-o", str(out), "--exporter", "dynamo"]


@pytest.fixture(scope="session")
def earlier_export(tmp_path_factory, worker_id):
    """The earlier run's files that each killed run must leave as they are: made once per test run (shared by
    the xdist workers), copied into each test's own folder."""
    return shared_build(tmp_path_factory, worker_id, "earlier-resnet18", lambda out: subprocess.run(
        _killed_export_command(out), check=True, capture_output=True, timeout=600))


@pytest.mark.slow
@pytest.mark.parametrize("sig,staged", [("SIGTERM", ""), ("SIGINT", "resnet18.onnx"), ("SIGKILL", "resnet18.xml")])
def test_killed_export_leaves_no_artifact_and_keeps_the_earlier_one(tmp_path, sig, staged, foreground_signals,
                                                                     earlier_export):
    """Kill a real `cnnexport` process at several points (as the ONNX export starts, once the ONNX file is
    staged, once the OpenVINO file is staged and verification runs): no new file under a final name, the
    earlier run's files byte-identical; after SIGKILL, the one kill that leaves its staging folder behind, a
    re-run removes it and succeeds (the other kills leave nothing a re-run could trip on: asserted here). The
    kill waits for the staged file rather than a fraction of a timed run: a warm second run is faster than the
    first."""
    import signal

    out = tmp_path / "out"
    cmd = _killed_export_command(out)
    shutil.copytree(earlier_export, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=foreground_signals)
    assert _wait_for_staged(out, proc, staged), "the run ended before the kill point"
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    if sig != "SIGKILL":
        assert b"Traceback" not in err
    visible = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")}
    assert visible == before
    if sig != "SIGKILL":
        assert not list(out.glob(".cnnexport-staging-*"))  # cleaned up on the way out
        return
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    assert not list(out.glob(".cnnexport-staging-*"))  # a killed run's staging folder is removed by the next run
    assert set(p.name for p in out.iterdir()) == set(before)


def test_export_use_ema_exports_the_ema_weights_and_without_it_says_they_are_there(tmp_path):
    """`--use-ema`: the files compute the checkpoint's EMA weights (the reference is theirs); without it, a
    warning names them; --use-ema without --weights is one line."""
    import numpy as np

    src, ema = create_model("lenet5"), create_model("lenet5")
    ckpt = tmp_path / "last.pth"
    torch.save({"state_dict": src.state_dict(), "state_dict_ema": ema.state_dict()}, ckpt)
    for use_ema, expected in ((False, src), (True, ema)):
        out = tmp_path / f"ema-{use_ema}"
        result = run("lenet5", "--weights", str(ckpt), *(["--use-ema"] if use_ema else []), "-o", str(out), "--json")
        assert result.exit_code == 0, result.output
        warned = [w for w in json.loads(result.stdout)["warnings"] if "EMA weights" in w]
        assert bool(warned) != use_ema, warned
        with np.load(out / "reference.npz") as ref:
            x, y = ref["input__random_b1"], ref["output__random_b1"]
        with torch.no_grad():
            assert np.allclose(expected(torch.from_numpy(x)).numpy(), y, atol=1e-5)
    line = assert_one_line_error(run("lenet5", "--use-ema", "-o", str(tmp_path / "none")), 2)
    assert "--use-ema" in line and "--weights" in line
    assert not (tmp_path / "none").exists()


def test_verify_finds_the_reference_beside_the_file(tmp_path):
    """`verify FILE` without --reference reads the reference.npz the export wrote beside FILE."""
    import cnnexport

    cnnexport.export(create_model("lenet5"), (1, 1, 32, 32), tmp_path, name="lenet5", photos=False)
    result = run("verify", str(tmp_path / "lenet5.onnx"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["passed"] is True
    threads = run("verify", str(tmp_path / "lenet5.onnx"), "--threads", "3", "--json")  # the runtime's threads
    assert json.loads(threads.stdout)["runtime"]["threads"] == 3, threads.output
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(tmp_path / "lenet5.onnx", tmp_path / "elsewhere" / "lenet5.onnx")
    line = assert_one_line_error(run("verify", str(tmp_path / "elsewhere" / "lenet5.onnx")), 2)
    assert "no reference.npz beside" in line and "--reference" in line


def test_export_keep_going_writes_what_converts_names_what_does_not_and_exits_with_its_code(tmp_path):
    """MNN has no IsNaN: --keep-going writes the ONNX and OpenVINO files (fp32 and int8), names the MNN files it
    left out (the int8 one because its fp32 file was) and exits 7 with one line; the files it wrote verify
    (``verify DIR``: the files its report.json lists)."""
    pytest.importorskip("MNN", reason="MNN is not installed (pip install 'cnnexport[mnn]')")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["conftest:make_nan_guard_net", "--input-size", "3,16,16", "--openvino", "--mnn",
                                      "--int8", "--calib", "samples", "--keep-going", "-o", str(out)])
    assert result.exit_code == 7, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 2 file(s) left out (the others are written), first "
                                                   "make_nan_guard_net.mnn: MNN's converter"), lines
    assert "left out: make_nan_guard_net.mnn (fp32, convert failed)" in result.stdout
    assert "left out: make_nan_guard_net.int8.mnn (int8, quantize failed): not made: it starts from " \
           "make_nan_guard_net.mnn" in result.stdout
    written = sorted(p.name for p in out.iterdir() if p.suffix in (".onnx", ".xml", ".mnn"))
    assert written == ["make_nan_guard_net.int8.onnx", "make_nan_guard_net.int8.xml", "make_nan_guard_net.onnx",
                       "make_nan_guard_net.xml"]
    assert [f["file"] for f in json.loads((out / "report.json").read_text())["failed"]] == [
        "make_nan_guard_net.mnn", "make_nan_guard_net.int8.mnn"]
    check = CliRunner().invoke(cli, ["verify", str(out), "--json"])  # the folder: the files its report lists
    assert check.exit_code == 0, check.output
    assert sorted(Path(f["artifact"]).name for f in json.loads(check.stdout)["files"]) == written

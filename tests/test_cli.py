"""The command line: the headline export, the registry table, and one line per bad input."""

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cnnexport.cli import cli
from cnnexport.errors import EXIT_CODES
from cnnexport.models import create_model


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

    from cnnexport.cli import render

    result = run("lenet5", "-o", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    console = Console(width=90, record=True)
    monkeypatch.setattr(render, "out_console", lambda: console)
    render.print_export_summary(json.loads(result.stdout))
    first = console.export_text().splitlines()[0]
    assert first.startswith("lenet5: ") and first.endswith("(dynamic batch)"), first


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
    from cnnexport.cli.commands import parse_input_size

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
    from test_new_user import _cli_without

    proc = _cli_without("torch", *args, cwd=tmp_path)
    assert proc.returncode == 6 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "needs PyTorch" in line and "pip install torch" in line

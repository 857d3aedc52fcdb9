"""Every documented exit code, produced by a real bad input, with its one-line message; and the
README documents exactly the codes the CLI uses."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import cnnexport
from cnnexport.cli import cli
from cnnexport.errors import EXIT_CODES, cause_line
from conftest import run_cli, run_cli_without

ROOT = Path(__file__).resolve().parents[1]


class Histogram(nn.Module):
    """Runs in PyTorch, but aten::histc has no ONNX export: the exporter fails (exit 7)."""

    def forward(self, x):
        return torch.histc(x, bins=4).unsqueeze(0)


class _RaisesSignalWhenCollected:
    def __init__(self, sig: int):
        self.sig = sig

    def __del__(self):
        signal.raise_signal(self.sig)  # the handler's exception is raised here, where Python drops it


class SignalSwallowed(nn.Module):
    """A signal arrives where its exception is lost (as in JAX's garbage-collector callback)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.fc = nn.Linear(64, num_classes)
        _RaisesSignalWhenCollected(getattr(signal, os.environ["SIGNAL_UNDER_TEST"]))

    def forward(self, x):
        return self.fc(x.flatten(1))


class SignalWrapped(SignalSwallowed):
    """A library turns the signal's exception into its own error (as OpenVINO's frontend does)."""

    def __init__(self, num_classes: int = 10):
        try:
            signal.raise_signal(getattr(signal, os.environ["SIGNAL_UNDER_TEST"]))
        except BaseException as exc:
            raise RuntimeError("Check 'false' failed at input_model.cpp") from exc


def _internal_bug(*args, **kwargs):
    raise AssertionError("an invariant of cnnexport's own code does not hold")


def _cases(tmp: Path) -> dict[int, list[str]]:
    (tmp / "file").write_text("not a folder")
    (tmp / "corrupt.onnx").write_bytes(b"\x08\x07garbage")
    return {
        0: ["list", "lenet*"],
        1: ["lenet5", "-o", str(tmp / "o1")],  # with a bug put into the pipeline: see _internal_bug
        2: ["vgg99"],
        3: ["lenet5", "--weights", str(tmp / "missing.safetensors")],
        4: ["lenet5", "-o", str(tmp / "file" / "sub")],
        5: ["test_export:TraceUnsafe", "--input-size", "16", "-o", str(tmp / "o5")],
        6: ["bench", "lenet5", "--device", "cuda"],
        7: ["test_exit_codes:Histogram", "--input-size", "1,8,8", "-o", str(tmp / "o7")],
        8: ["fold", str(tmp / "corrupt.onnx")],
    }


@pytest.mark.parametrize("code", [0, 1, 2, 3, 4, 5, 6, 7, 8])
def test_each_documented_exit_code(tmp_path, code, monkeypatch):
    if code == 6 and torch.cuda.is_available():
        pytest.skip("a CUDA device is present: --device cuda is not a missing dependency here")
    if code == 1:  # a bug of cnnexport's own (a user's model that raises is a usage error: exit 2)
        monkeypatch.setattr("cnnexport.exporter.pipeline.export", _internal_bug)
    result = CliRunner().invoke(cli, _cases(tmp_path)[code])
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    if code:
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for folder in ("o1", "o5", "o7"):
        assert not (tmp_path / folder).exists() or not any((tmp_path / folder).iterdir())


@pytest.mark.parametrize("sig,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_interrupt_exit_codes(tmp_path, sig, code, foreground_signals):
    exe = shutil.which("cnnexport", path=str(Path(sys.executable).parent)) or "cnnexport"
    proc = subprocess.Popen([exe, "resnet50", "--openvino", "--tflite", "-o", str(tmp_path / "o")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=foreground_signals)
    time.sleep(6)  # past the imports, inside a run that takes half a minute or more
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nothing half-written" in lines[0], err
    assert not (tmp_path / "o").exists() or not [p for p in (tmp_path / "o").iterdir()]


@pytest.mark.parametrize("model", ["SignalSwallowed", "SignalWrapped"])
@pytest.mark.parametrize("sig,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_interrupt_lost_inside_a_library_still_stops_the_run(tmp_path, model, sig, code, foreground_signals):
    exe = shutil.which("cnnexport", path=str(Path(sys.executable).parent)) or "cnnexport"
    env = {**os.environ, "SIGNAL_UNDER_TEST": sig, "PYTHONPATH": str(ROOT / "tests")}
    proc = subprocess.run([exe, f"test_exit_codes:{model}", "--input-size", "1,8,8", "-o", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, timeout=300, preexec_fn=foreground_signals)
    assert proc.returncode == code, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "nothing half-written" in lines[0], proc.stderr
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_an_ignored_sigint_stays_ignored(tmp_path):
    """As a shell's background job: the run ignores Ctrl-C and finishes its files."""
    exe = shutil.which("cnnexport", path=str(Path(sys.executable).parent)) or "cnnexport"
    proc = subprocess.Popen([exe, "lenet5", "-o", str(tmp_path / "o")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert (tmp_path / "o" / "lenet5.onnx").is_file() and (tmp_path / "o" / "report.json").is_file()


def test_readme_documents_exactly_the_exit_codes():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(c) for row in re.findall(r"^\| ([\d /]+) \|", section, re.M) for c in row.split("/")}
    assert documented == set(EXIT_CODES)


def test_missing_optional_extras_exit_6_and_samples_need_none(tmp_path):
    cnnexport.export(__import__("cnnexport.models", fromlist=["x"]).create_model("lenet5", weights="digits"),
                     (1, 1, 32, 32), tmp_path, name="lenet5", photos=False)
    digits = run_cli_without("sklearn", "quantize", str(tmp_path / "lenet5.onnx"), "--calib", "digits")
    assert digits.returncode == 6 and "scikit-learn" in digits.stderr and "Traceback" not in digits.stderr
    samples = run_cli_without("skimage", "quantize", str(tmp_path / "lenet5.onnx"), "--calib", "samples",
                           "--calib-count", "20", "-o", str(tmp_path / "s.int8.onnx"))
    assert samples.returncode == 0, samples.stderr
    plot = run_cli_without("matplotlib", "study", "zoo", "--models", "lenet5")
    assert plot.returncode == 6 and "matplotlib" in plot.stderr and "--no-plot" in plot.stderr
    assert "Traceback" not in plot.stderr
    # --no-plot skips that check: the run goes on to the next one (a runtime name, here a wrong one, for speed)
    tables = run_cli_without("matplotlib", "study", "zoo", "--models", "lenet5", "--no-plot", "--runtime", "nosuch")
    assert tables.returncode == 2 and "nosuch" in tables.stderr and "matplotlib" not in tables.stderr, tables.stderr


def test_weights_that_are_no_checkpoint_or_another_models_bundle(tmp_path):
    import torch

    text = tmp_path / "notes.pth"
    text.write_text("this is not a checkpoint\n")
    proc = run_cli("lenet5", "--weights", str(text), "-o", str(tmp_path / "o"))
    assert proc.returncode == 3 and "is not a PyTorch checkpoint" in proc.stderr and "run code" not in proc.stderr
    whole = tmp_path / "whole.pth"
    torch.save({"w": torch.zeros(3)}, whole)
    (tmp_path / "cut.pth").write_bytes(whole.read_bytes()[:300])
    proc = run_cli("lenet5", "--weights", str(tmp_path / "cut.pth"), "-o", str(tmp_path / "o"))
    line = proc.stderr.strip()
    assert proc.returncode == 3 and "corrupt" in line and len(proc.stderr.splitlines()) == 1
    inner = line.split("checkpoint (", 1)[1]
    if inner.endswith("...)"):  # cut: at a word boundary, never mid-word
        kept, whole = inner[:-4], whole_message(tmp_path / "cut.pth")
        assert whole.startswith(kept) and whole[len(kept)] in " ,;:."
    proc = run_cli("resnet50", "--weights", "digits", "-o", str(tmp_path / "o"))
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


def test_a_library_error_without_a_cause_line_is_named_by_its_failed_check():
    """OpenVINO's ARM plugin refused shufflenet_v2_x1_0.int8.xml with where-lines only: the one line is the check
    that failed, not the outermost "Exception from ..." frame; a cause line, where one follows, still wins."""
    where_only = RuntimeError("Exception from src/inference/src/cpp/core.cpp:117:\n"
                              "Exception from src/inference/src/dev/plugin.cpp:54:\n"
                              "Check 'any_of(scale.size(), OC, 1U)' failed at src/plugins/intel_cpu/src/x.cpp:526\n\n")
    assert cause_line(where_only) == "Check 'any_of(scale.size(), OC, 1U)' failed at src/plugins/intel_cpu/src/x.cpp:526"
    with_cause = RuntimeError("Exception from a.cpp:1:\nCheck 'x' failed at b.cpp:2:\nUnsupported operation Foo\n")
    assert cause_line(with_cause) == "Unsupported operation Foo"

"""Every documented exit code, produced by a real bad input, with its one-line message; and the
README documents exactly the codes the CLI uses."""

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

from cnnexport.cli import cli
from cnnexport.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[1]


class BrokenConstructor(nn.Module):
    """A user's model whose constructor hits a bug: the CLI reports an internal error (exit 1)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        raise ZeroDivisionError("division by zero in the user's model")


class Histogram(nn.Module):
    """Runs in PyTorch, but aten::histc has no ONNX export: the exporter fails (exit 7)."""

    def forward(self, x):
        return torch.histc(x, bins=4).unsqueeze(0)


def _cases(tmp: Path) -> dict[int, list[str]]:
    (tmp / "file").write_text("not a folder")
    (tmp / "corrupt.onnx").write_bytes(b"\x08\x07garbage")
    return {
        0: ["list", "lenet*"],
        1: ["test_exit_codes:BrokenConstructor", "--input-size", "1,8,8", "-o", str(tmp / "o1")],
        2: ["vgg99"],
        3: ["lenet5", "--weights", str(tmp / "missing.safetensors")],
        4: ["lenet5", "-o", str(tmp / "file" / "sub")],
        5: ["test_export:TraceUnsafe", "--input-size", "16", "-o", str(tmp / "o5")],
        6: ["bench", "lenet5", "--device", "cuda"],
        7: ["test_exit_codes:Histogram", "--input-size", "1,8,8", "-o", str(tmp / "o7")],
        8: ["fold", str(tmp / "corrupt.onnx")],
    }


@pytest.mark.parametrize("code", [0, 1, 2, 3, 4, 5, 6, 7, 8])
def test_each_documented_exit_code(tmp_path, code):
    if code == 6 and torch.cuda.is_available():
        pytest.skip("a CUDA device is present: --device cuda is not a missing dependency here")
    result = CliRunner().invoke(cli, _cases(tmp_path)[code])
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    if code:
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for folder in ("o1", "o5", "o7"):
        assert not (tmp_path / folder).exists() or not any((tmp_path / folder).iterdir())


@pytest.mark.parametrize("sig,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_interrupt_exit_codes(tmp_path, sig, code):
    exe = shutil.which("cnnexport", path=str(Path(sys.executable).parent)) or "cnnexport"
    proc = subprocess.Popen([exe, "resnet50", "--openvino", "--tflite", "-o", str(tmp_path / "o")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(6)  # past the imports, inside a run that takes half a minute or more
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nothing half-written" in lines[0], err
    assert not (tmp_path / "o").exists() or not [p for p in (tmp_path / "o").iterdir()]


def test_readme_documents_exactly_the_exit_codes():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(c) for row in re.findall(r"^\| ([\d /]+) \|", section, re.M) for c in row.split("/")}
    assert documented == set(EXIT_CODES)

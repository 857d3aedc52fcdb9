import json
import subprocess
import sys
import signal
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

DATA = Path(__file__).parent / "data"


def pytest_configure(config):
    """One file of this CPU's limits for the whole run (``CNNEXPORT_CPU_LIMITS``): the first bench, study or
    roofline that needs a limit measures it, the others read it (each measurement is ~25 s of fresh workers).
    Set before xdist starts its workers, which inherit it; the test of the file itself names its own."""
    import os
    import tempfile

    if not hasattr(config, "workerinput") and "CNNEXPORT_CPU_LIMITS" not in os.environ:
        folder = tempfile.mkdtemp(prefix="cnnexport-limits-")
        os.environ["CNNEXPORT_CPU_LIMITS"] = str(Path(folder) / "cpu_limits.json")
        config._cnnexport_limits_dir = folder


def pytest_collection_modifyitems(config, items):
    """Tests marked ``last`` go to the end of the run (xdist hands tests out in this order)."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


def pytest_unconfigure(config):
    import shutil

    folder = getattr(config, "_cnnexport_limits_dir", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def shared_build(tmp_path_factory, worker_id: str, name: str, build) -> Path:
    """The folder ``name`` made once per test run and shared by the xdist workers (a lock in the run's common
    temporary folder): ``build(folder)`` runs where no worker has written ``folder/report.json`` yet."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base if worker_id == "master" else base.parent  # the parent is this run's, shared by its workers
    out = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not (out / "report.json").is_file():
            build(out)
    return out


@pytest.fixture(scope="session")
def torchvision_reference() -> dict:
    """torchvision's own state_dict names/shapes and param counts (copied from shared/reference)."""
    return json.loads((DATA / "torchvision_state_dicts.json").read_text())["models"]


def randomize_bn_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model


def trained_bn_stats(model: nn.Module, shape, seed: int = 0) -> nn.Module:
    """Random BatchNorm affine parameters and the running statistics a short training run leaves (its
    inputs' means and variances over a few random batches): random statistics that do not match the
    activations make a deep net chaotic, where fp32 itself is far from float64."""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in norms:
            m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for _ in range(3):
            model(torch.randn(4, *shape[1:], generator=g))
    for m in norms:
        m.momentum = 0.1
        m.eval()
    return model


class SmallNet(nn.Module):
    """Conv-BN-ReLU, a depthwise conv with BN, dropout, a BN nothing can absorb, and a classifier."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
        )
        self.post = nn.BatchNorm2d(16)  # after a concatenation: no conv to fold into
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        y = self.features(x)
        y = self.post(torch.cat([y, y * 0.5], dim=1))
        return self.fc(self.drop(torch.flatten(self.pool(y), 1)))


@pytest.fixture
def small_net() -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn_stats(SmallNet()).eval()


def make_small_net(num_classes: int = 10) -> nn.Module:
    """Entry point for 'package.module:callable' tests."""
    torch.manual_seed(0)
    return randomize_bn_stats(SmallNet(num_classes))


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture
def foreground_signals():
    """A ``preexec_fn`` that starts a child the way a shell starts a foreground command, with SIGINT and
    SIGTERM at their defaults: a harness that runs the suite in the background has SIGINT ignored, children
    inherit that, and a process started so keeps ignoring it (as it should)."""
    return _default_signals


def export_uncapturable(tmp_path: Path, flag: str):
    """``cnnexport export`` of a model whose forward branches on a tensor's value (torch.export cannot
    capture it) with ``flag``, in a child process: the result and the non-blank stderr lines."""
    import subprocess
    import sys

    (tmp_path / "datadep.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.conv = nn.Conv2d(3, 4, 3)\n\n"
        "    def forward(self, x):\n        y = self.conv(x)\n"
        "        if y.sum() > 0:\n            return y.flatten(1)\n        return -y.flatten(1)\n")
    proc = subprocess.run([sys.executable, "-m", "cnnexport", "export", "datadep:Net", "--input-size", "3,16,16",
                           flag, "-o", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    return proc, [ln for ln in proc.stderr.splitlines() if ln.strip()]


CNNEXPORT = str(Path(sys.executable).with_name("cnnexport"))  # the console script, as a user runs it


def run_cli(*args, cwd=None, env=None, timeout=600):
    """The installed console script in a child process, as a user runs it (not `python -m cnnexport`:
    that puts the current folder on sys.path by itself)."""
    return subprocess.run([CNNEXPORT, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def run_cli_without(package, *args, cwd=None):
    """The CLI in a process where importing ``package`` fails, as on a machine without it."""
    block = ("import sys, importlib.abc\n"
             "class Absent(importlib.abc.MetaPathFinder):\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             f"        if name.split('.')[0] == {package!r}: raise ModuleNotFoundError(name, name=name)\n"
             "sys.meta_path.insert(0, Absent())\n"
             "from cnnexport.cli import main; sys.argv = ['cnnexport'] + sys.argv[1:]; main()\n")
    return subprocess.run([sys.executable, "-c", block, *args], capture_output=True, text=True, timeout=600, cwd=cwd)


class SELayer(nn.Module):
    """Squeeze-and-excitation as senet.pytorch writes it (and as users copy it): the gate expanded to x's shape."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels, bias=False), nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)
        return x * y.expand_as(x)


class SEBottleneck(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4)
        self.relu, self.se = nn.ReLU(inplace=True), SELayer(planes * 4)
        self.downsample = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        out += self.downsample(x)
        return self.relu(out)


class GlobalContext(nn.Module):
    """GCNet's context block as timm writes it: attention pooling by a matrix-vector product of 4-D tensors."""

    def __init__(self, channels: int):
        super().__init__()
        self.attn = nn.Conv2d(channels, 1, 1)
        self.transform = nn.Sequential(nn.Conv2d(channels, channels // 4, 1), nn.ReLU(),
                                       nn.Conv2d(channels // 4, channels, 1))

    def forward(self, x):
        b, c, h, w = x.shape
        attn = self.attn(x).reshape(b, 1, h * w).softmax(-1).unsqueeze(3)  # (B, 1, HW, 1)
        context = (x.reshape(b, c, h * w).unsqueeze(1) @ attn).view(b, c, 1, 1)
        return x + self.transform(context)


class CBAM(nn.Module):
    """CBAM as users write it: channel attention from average- and max-pooled planes, spatial attention from the
    channels' mean and max."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(channels, channels // reduction, 1), nn.ReLU(),
                                 nn.Conv2d(channels // reduction, channels, 1))
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x):
        x = x * torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1)))
        planes = torch.cat([x.mean(1, keepdim=True), x.max(1, keepdim=True)[0]], 1)
        return x * torch.sigmoid(self.spatial(planes))


class UsersNet(nn.Module):
    """Blocks users write, as they write them: two SE bottlenecks (the second strided), a global-context block
    and CBAM. Converters refuse each: litert-torch 0.10 the bottlenecks ('tfl.mul' op operands don't have
    broadcast-compatible shapes; a single one converts), the context block ('tfl.batch_matmul' op found invalid
    output rank) and CBAM's adaptive max-pool (no lowering); ExecuTorch CBAM's adaptive max-pool (not Core ATen)
    and its max over the channels (XNNPACK takes H or W only)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(SEBottleneck(16, 8), SEBottleneck(32, 16, 2), GlobalContext(64), CBAM(64))
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class RadixAttention(nn.Module):
    """ResNeSt's split attention reduced to its softmax over the radix axis: channel logits as (N, radix, 1, C),
    gain and offset putting them beyond 87, as resnest14d's reached -125 and -93 on a photo. MNN's kernel for a
    softmax over a middle axis omits the shift by the maximum, so MNN's converter alone writes a wrong file."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3)

    def forward(self, x):
        logits = self.conv(x).mean((2, 3)).view(x.shape[0], 2, 1, 16) * 100 + 150
        return torch.softmax(logits, dim=1).flatten(1)


class NanGuardNet(nn.Module):
    """A conv whose NaN outputs are zeroed: torch.isnan exports ONNX's IsNaN, which neither MNN's converter nor
    ncnn has (every other format converts it)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

    def forward(self, x):
        y = self.conv(x)
        y = torch.where(torch.isnan(y), torch.zeros_like(y), y)
        return self.fc(y.mean((2, 3)))


def make_nan_guard_net(num_classes: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return NanGuardNet().eval()


def one_line_export_failure(factory: str, flag: str, out: Path, code: int = 7) -> str:
    """Export ``factory`` ('module:function') with ``flag`` into ``out`` through the CLI, expecting exit ``code``,
    one line on stderr and nothing written; that line."""
    from click.testing import CliRunner

    from cnnexport.cli import cli

    result = CliRunner().invoke(cli, [factory, "--input-size", "3,8,8", flag, "-o", str(out)])
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], lines
    assert not out.exists()
    return lines[0]

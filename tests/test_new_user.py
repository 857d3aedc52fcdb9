"""Regressions found when cnnexport was tried as a new user would (issue 14): each test failed
before its fix."""

import json
import subprocess
import sys

import cnnexport
from cnnexport.calib import sample_image_paths


def _cli(*args, cwd=None, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "cnnexport", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


def test_photo_check_runs_without_scikit_image(tmp_path):
    """The quick start's `pip install .` has no scikit-image: the real-photograph check must still run."""
    assert len(sample_image_paths()) == 6
    assert all("cnnexport" in p.parts and p.stat().st_size < 100_000 for p in sample_image_paths())
    block = ("import sys, importlib.abc\n"
             "class NoSkimage(importlib.abc.MetaPathFinder):\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] == 'skimage': raise ImportError('blocked')\n"
             "sys.meta_path.insert(0, NoSkimage())\n"
             "from cnnexport.cli import main; sys.argv = ['cnnexport'] + sys.argv[1:]; main()\n")
    proc = subprocess.run([sys.executable, "-c", block, "lenet5", "--weights", "digits", "-o", str(tmp_path),
                           "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (eq,) = report["equivalence"]
    photos = [p for p in eq["per_input"] if p["input"] == "photos"]
    assert photos and photos[0]["samples"] == 6 and eq["samples"] == 1 + 3 + 6
    assert report["warnings"] == []


def test_an_input_photographs_cannot_fill_is_a_warning_not_a_silent_skip(small_net, tmp_path):
    import torch

    two_channel = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    two_channel(torch.zeros(1, 2, 16, 16))
    report = cnnexport.export(two_channel.eval(), (1, 2, 16, 16), tmp_path, name="m")
    assert {p["input"] for p in report["equivalence"][0]["per_input"]} == {"random_b1", "random_b3"}
    assert any("random inputs only" in w for w in report["warnings"])

"""Untrusted model files and bad inputs: refused with one line, nothing read or written."""

import numpy as np
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from cnnexport.cli import cli
from cnnexport.errors import InvalidModelFileError
from cnnexport.runtimes import load


def _model_with_external(tmp_path, location: str):
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    for key, value in (("location", location), ("offset", "0"), ("length", "64")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    path = tmp_path / "m.onnx"
    with open(path, "wb") as f:
        f.write(helper.make_model(graph).SerializeToString())
    return path


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "sub/../../outside.bin"])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, location):
    path = _model_with_external(tmp_path, location)
    with pytest.raises(InvalidModelFileError, match="outside its folder"):
        load(path)
    for args in (["fold", str(path), "-o", str(tmp_path / "f.onnx")], ["profile", str(path)],
                 ["bench", str(path)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 8 and "outside its folder" in result.stderr, (args, result.output)
    assert not (tmp_path / "f.onnx").exists()


def test_external_data_inside_the_folder_is_read(tmp_path):
    np.ones((4, 4), np.float32).tofile(tmp_path / "w.bin")
    path = _model_with_external(tmp_path, "w.bin")
    out = load(path).run(np.ones((1, 4), np.float32))[0]
    np.testing.assert_allclose(out, np.full((1, 4), 4.0))


def _wait_for_staged(out, proc, pattern: str, timeout: float = 600.0) -> bool:
    """Poll the run's staging folder until a file matching ``pattern`` is there (True) or the run ends."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(out.glob(f".cnnexport-staging-*/{pattern}" if pattern else ".cnnexport-staging-*")):
            return True
        time.sleep(0.005)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("sig,staged", [("SIGTERM", ""), ("SIGINT", "resnet18.onnx"), ("SIGKILL", "resnet18.xml")])
def test_killed_export_leaves_no_artifact_and_keeps_the_earlier_one(tmp_path, sig, staged, foreground_signals):
    """Kill a real `cnnexport` process at several points (as the ONNX export starts, once the ONNX file is
    staged, once the OpenVINO file is staged and verification runs): no new file under a final name, the
    earlier run's files byte-identical, and a re-run succeeds. The kill waits for the staged file rather than
    a fraction of a timed run: a warm second run is faster than the first."""
    import shutil
    import signal
    import subprocess
    import sys
    from pathlib import Path

    exe = shutil.which("cnnexport", path=str(Path(sys.executable).parent)) or "cnnexport"
    out = tmp_path / "out"
    cmd = [exe, "resnet18", "--input-size", "96", "--openvino", "-o", str(out), "--exporter", "dynamo"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
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
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    assert not list(out.glob(".cnnexport-staging-*"))  # a killed run's staging folder is removed by the next run
    assert set(p.name for p in out.iterdir()) == set(before)


def _with_file_size_limit(limit_bytes: int):
    """preexec_fn: the kernel refuses writes past ``limit_bytes`` (EFBIG), like a full small disk."""
    import resource
    import signal

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


@pytest.mark.parametrize("limit", [200_000, 3_000_000])
def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, limit):
    """A write that the file system refuses (kernel file-size limit: the ONNX file at 200 kB, the
    OpenVINO weights at 3 MB) ends with exit 4, one line, and no file, staged or final."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    exe = shutil.which("cnnexport", path=str(Path(sys.executable).parent)) or "cnnexport"
    out = tmp_path / "out"
    proc = subprocess.run([exe, "resnet18", "--input-size", "64", "--openvino", "-o", str(out)],
                          capture_output=True, text=True, timeout=600, preexec_fn=_with_file_size_limit(limit))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 4, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: no room to write") and "File too large" in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_model_over_the_protobuf_limit_is_refused_before_writing(tmp_path):
    """A 2.5 GiB model (meta tensors: no memory used) gets a clear error and no output folder."""
    import torch

    import cnnexport
    from cnnexport.errors import UsageError

    with torch.device("meta"):
        big = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 224 * 224, 4400))
    with pytest.raises(UsageError, match="2 GiB single-file limit"):
        cnnexport.export(big, (1, 3, 224, 224), tmp_path / "out")
    assert not (tmp_path / "out").exists()

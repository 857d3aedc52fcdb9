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


@pytest.mark.slow
@pytest.mark.parametrize("sig,when", [("SIGTERM", 0.25), ("SIGINT", 0.5), ("SIGKILL", 0.7)])
def test_killed_export_leaves_no_artifact_and_keeps_the_earlier_one(tmp_path, sig, when):
    """Kill a real `cnnexport` process at several points (export, simplify, conversion, verification):
    no new file under a final name, the earlier run's files byte-identical, and a re-run succeeds."""
    import shutil
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    exe = shutil.which("cnnexport", path=str(Path(sys.executable).parent)) or "cnnexport"
    out = tmp_path / "out"
    cmd = [exe, "resnet18", "--input-size", "96", "--openvino", "-o", str(out), "--exporter", "dynamo"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    duration = time.perf_counter() - start  # the kill lands at a fraction of a whole run: export, convert, verify
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(when * duration)
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

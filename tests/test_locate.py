"""verify --locate: the operator where a converted file first departs from its ONNX file, found by comparing
the tensors both hold, each suspect run alone on the file's own inputs."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import cnnexport
from cnnexport.cli import cli
from conftest import RadixAttention


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The ONNX file and reference.npz of RadixAttention, as the export writes them; MNN's converter alone
    writes a file of it that departs at the Softmax (test_mnn)."""
    out = tmp_path_factory.mktemp("locate")
    torch.manual_seed(0)
    cnnexport.export(RadixAttention().eval(), (1, 3, 8, 8), out, name="radix", photos=False)
    return out


def test_locate_names_the_operator_mnn_computes_wrongly(exported):
    pytest.importorskip("MNN", reason="MNN is not installed (pip install 'cnnexport[mnn]')")
    from cnnexport.exporter.formats.mnn import to_mnn

    mnn = exported / "radix.mnn"  # MNN's converter on the plain ONNX file: no shift added
    to_mnn(exported / "radix.onnx", mnn, (1, 3, 8, 8))
    try:
        result = CliRunner().invoke(cli, ["verify", str(mnn), "--locate", "--json"])
        assert result.exit_code == 5, result.output
        found = json.loads(result.stdout)["locate"]
        first = found["first_departure"]
        assert first["op"] == "Softmax" and first["error"] > 0.1
        assert first["on_its_inputs"] > 0.1  # ONNX Runtime's Softmax on MNN's own logits disagrees too
        assert all(i["error"] < 1e-4 for i in first["inputs"])  # the logits reaching it were right
        assert found["compared"] >= 3 and found["input"].startswith("random_b")
        text = CliRunner().invoke(cli, ["verify", str(mnn), "--locate"]).stdout
        assert "first departure: Softmax" in text and "run alone on the file's own inputs" in text
    finally:
        mnn.unlink()


def test_locate_finds_no_departure_in_a_right_file(tmp_path):
    """The file the export writes (the softmax shifted first) holds every tensor it compares within 1e-4, or
    passes on its inputs' rounding: no operator is blamed."""
    pytest.importorskip("MNN", reason="MNN is not installed (pip install 'cnnexport[mnn]')")
    torch.manual_seed(0)
    cnnexport.export(RadixAttention().eval(), (1, 3, 8, 8), tmp_path, name="radix", formats=("mnn",), photos=False)
    result = CliRunner().invoke(cli, ["verify", str(tmp_path / "radix.mnn"), "--locate", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)["locate"]
    assert found["first_departure"] is None and found["compared"] >= 3


def test_locate_on_openvino(tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is not installed")
    torch.manual_seed(0)
    cnnexport.export(RadixAttention().eval(), (1, 3, 8, 8), tmp_path, name="radix", formats=("openvino",),
                     photos=False)
    result = CliRunner().invoke(cli, ["verify", str(tmp_path / "radix.xml"), "--locate", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)["locate"]
    assert found["first_departure"] is None and found["compared"] >= 3 and found["onnx"] == "radix.onnx"


def test_locate_refuses_what_it_cannot_compare(exported, tmp_path):
    """A runtime that does not keep the ONNX names, and a file whose ONNX file is not beside it: one line
    each, naming what to do."""
    result = CliRunner().invoke(cli, ["verify", str(exported / "radix.onnx"), "--locate"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--locate" in result.stderr and ".mnn" in result.stderr
    pytest.importorskip("MNN", reason="MNN is not installed (pip install 'cnnexport[mnn]')")
    from cnnexport.exporter.formats.mnn import to_mnn

    alone = tmp_path / "radix.mnn"
    to_mnn(exported / "radix.onnx", alone, (1, 3, 8, 8))
    result = CliRunner().invoke(cli, ["verify", str(alone), "--reference", str(exported / "reference.npz"),
                                      "--locate"])
    assert result.exit_code == 2 and "--onnx" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = CliRunner().invoke(cli, ["verify", str(alone), "--reference", str(exported / "reference.npz"),
                                      "--locate", "--onnx", str(exported / "radix.onnx")])
    assert result.exit_code == 5 and "first departure: Softmax" in result.stdout
    assert Path(exported / "radix.onnx").is_file()


def test_a_failed_export_says_where_its_file_departs(tmp_path, monkeypatch):
    """The failed export writes nothing, so verify --locate has no file to read: the failure line says where
    the MNN file departs itself (here the softmax left unshifted, as MNN's converter alone leaves it)."""
    pytest.importorskip("MNN", reason="MNN is not installed (pip install 'cnnexport[mnn]')")
    from cnnexport.errors import VerificationError

    monkeypatch.setattr("cnnexport.exporter.formats.mnn.onnx_softmax.stabilize_softmaxes", lambda model: 0)
    torch.manual_seed(0)
    with pytest.raises(VerificationError) as failure:
        cnnexport.export(RadixAttention().eval(), (1, 3, 8, 8), tmp_path / "out", name="radix", formats=("mnn",),
                         photos=False)
    assert "radix.mnn does not match PyTorch" in str(failure.value)
    assert "it first departs from radix.onnx at Softmax" in str(failure.value)
    entry = next(e for e in failure.value.report["equivalence"] if e["artifact"] == "radix.mnn")
    assert entry["locate"]["first_departure"]["on_its_inputs"] > 0.1
    assert not (tmp_path / "out").exists()

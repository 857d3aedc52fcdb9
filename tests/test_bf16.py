"""bf16 on purpose: --bf16 writes <model>.bf16.xml, which OpenVINO computes in bf16 (its config file and
rt_info say so), checked by bf16's own rule; verify and bench read it; the rule on fixed facts; the
refusals (no format with a bf16 file, a CPU without bf16 arithmetic)."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'cnnexport[openvino]')")

from cnnexport.cli import cli  # noqa: E402
from cnnexport.exporter.verify import BF16_MIN_COSINE, BF16_RTOL, Equivalence, reduced_verdict  # noqa: E402
from cnnexport.runtimes import load  # noqa: E402
from cnnexport.runtimes.openvino import config_path, cpu_has_bf16  # noqa: E402

needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 arithmetic (AVX512-BF16, AMX-BF16)")


@pytest.fixture(scope="module")
def lenet_bf16(tmp_path_factory):
    out = tmp_path_factory.mktemp("bf16")
    result = CliRunner().invoke(cli, ["lenet5", "--weights", "digits", "--openvino", "--bf16", "-o", str(out),
                                      "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


@needs_bf16
def test_bf16_writes_an_ir_computed_in_bf16_and_checked_by_bf16s_rule(lenet_bf16):
    out, report = lenet_bf16
    arts = {Path(a["path"]).name: a for a in report["artifacts"]}
    art = arts["lenet5.bf16.xml"]
    assert art["precision"] == "bf16" and "lenet5.bf16.config.json" in art["files"]
    assert art["load_as_verified"] == 'core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})'
    assert json.loads(config_path(out / "lenet5.bf16.xml").read_text()) == {"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}}
    eq = {e["artifact"]: e for e in report["equivalence"]}
    e = eq["lenet5.bf16.xml"]
    assert e["passed"] and e["precision"] == "bf16" and e["bf16_check"]["min_cosine"] == BF16_MIN_COSINE
    # bf16's rounding, larger than fp32's (the fp32 IR beside it) and far inside its bound
    assert eq["lenet5.xml"]["max_rel"] < 1e-5 < e["max_rel"] < BF16_RTOL
    model = load(out / "lenet5.bf16.xml")
    assert model.precision == "bf16" and model.runtime_default() is None  # bf16 is also OpenVINO's default here
    assert model.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"


@needs_bf16
def test_verify_and_bench_read_the_bf16_file(lenet_bf16, tmp_path):
    out, _ = lenet_bf16
    result = CliRunner().invoke(cli, ["verify", str(out / "lenet5.bf16.xml"), "--reference", str(out / "reference.npz"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    checked = json.loads(result.stdout)
    assert checked["passed"] and checked["precision"] == "bf16" and "bf16_check" in checked
    bench = CliRunner().invoke(cli, ["bench", "lenet5", "--runtime", "openvino", "--precision", "fp32,bf16", "--runs",
                                     "3", "--min-time", "0", "--rounds", "1", "--no-ceiling", "-o", str(tmp_path),
                                     "--json"])
    assert bench.exit_code == 0, bench.output
    rows = json.loads(bench.stdout)["rows"]
    assert {(r["artifact"], r["precision"]) for r in rows} == {("lenet5.xml", "fp32"), ("lenet5.bf16.xml", "bf16")}


def _equivalence(cosine: float, top1: float, max_abs: float, ties: int = 0) -> Equivalence:
    photos = {"input": "photos", "cosine": cosine, "top1_agreement": top1, "max_abs": max_abs, "max_rel": 0.0,
              "samples": 6, "tie_flips": ties}
    return Equivalence("m.bf16.xml", max_abs, 0.0, 0.9, 0.9, True, BF16_RTOL, 6, [photos], 1.0, "1e-01 x max |output|")


@pytest.mark.parametrize("cosine,top1,max_abs,ties,passed", [
    (0.995, 1.0, 0.02, 0, True),      # bf16's rounding through resnet50: under fp16's cosine, within bf16's
    (0.98, 1.0, 0.02, 0, False),      # a wrong file
    (0.995, 5 / 6, 0.02, 1, True),    # the one change is a tie
    (0.9995, 1.0, 0.2, 0, False),     # over the max-abs bound
])
def test_the_bf16_rule(cosine, top1, max_abs, ties, passed):
    entry = reduced_verdict(_equivalence(cosine, top1, max_abs, ties), "bf16")
    assert entry["passed"] is passed and entry["precision"] == "bf16" and "fp16_check" not in entry
    assert entry["bf16_check"]["min_cosine"] == BF16_MIN_COSINE and entry["bf16_check"]["cosine"] == cosine
    assert ("failure" in entry) is not passed
    if not passed:
        assert entry["failure"].startswith("bf16 does not match PyTorch")


def test_bf16_needs_a_format_with_a_bf16_file(tmp_path):
    result = CliRunner().invoke(cli, ["lenet5", "--bf16", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--bf16 applies to --openvino" in result.stderr
    assert not (tmp_path / "o").exists()


def test_bf16_is_refused_before_any_work_on_a_cpu_without_bf16(tmp_path, monkeypatch):
    import cnnexport.runtimes.openvino as adapter

    monkeypatch.setattr(adapter, "cpu_has_bf16", lambda: False)  # what OpenVINO reports on a CPU without bf16
    result = CliRunner().invoke(cli, ["lenet5", "--openvino", "--bf16", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "bf16 arithmetic" in result.stderr and not (tmp_path / "o").exists()
    bench = CliRunner().invoke(cli, ["bench", "lenet5", "--runtime", "openvino", "--precision", "fp32,bf16", "--runs",
                                     "2", "--min-time", "0", "--rounds", "1", "--no-ceiling", "-o", str(tmp_path / "b")])
    assert bench.exit_code == 0 and "no bf16 rows" in bench.stdout, bench.output

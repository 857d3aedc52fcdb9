"""AOTInductor: --aoti through the CLI (fp32, fp16 and bf16 packages verified, then verify, bench and eval
on the .pt2 package), a dynamic batch, and the refusals: a model torch.export cannot capture, no C++
compiler, a corrupt or foreign package, --device cuda without a GPU. On a GPU machine (marker ``gpu``, run by
benchmarks/run_gpu.sh): CUDA packages at the three precisions exported, verified and benchmarked, and
torch.compile with CUDA graphs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from cnnexport.cli import cli
from cnnexport.exporter.formats import ConvertSource
from cnnexport.exporter.formats import aoti
from cnnexport.runtimes import load, runtime_for
from conftest import export_uncapturable, shared_build

pytestmark = pytest.mark.skipif(not any(__import__("shutil").which(c) for c in ("g++", "c++", "clang++")),
                                reason="AOTInductor compiles C++: no C++ compiler here")


@pytest.fixture(scope="session")
def lenet_package(tmp_path_factory, worker_id):
    """One CLI export of the digits LeNet-5 with --aoti (fp32, fp16, bf16) per test run, shared by the xdist
    workers."""
    def build(out):
        result = CliRunner().invoke(cli, ["lenet5", "--weights", "digits", "--aoti", "--fp16", "--bf16", "-o",
                                          str(out), "--json"])
        assert result.exit_code == 0, result.output

    out = shared_build(tmp_path_factory, worker_id, "aoti-lenet5", build)
    return out, json.loads((out / "report.json").read_text())


@pytest.mark.xdist_group("aoti-lenet")  # on one worker: another would wait on the build
def test_export_writes_a_verified_package(lenet_package):
    out, report = lenet_package
    art = next(a for a in report["artifacts"] if a["format"] == "aoti")
    assert Path(art["path"]).name == "lenet5.pt2" and (out / "lenet5.pt2").is_file()
    assert art["runtime"] == "aoti" and art["static_batch"] == 1 and art["device"] == "cpu"
    eq = next(e for e in report["equivalence"] if e["artifact"] == "lenet5.pt2")
    assert eq["passed"] and eq["max_rel"] < 1e-5 and eq["top1_agreement"] == 1.0
    assert runtime_for(out / "lenet5.pt2") == "aoti"


@pytest.mark.xdist_group("aoti-lenet")  # on one worker: another would wait on the build
def test_fp16_and_bf16_packages_compute_in_their_type_and_pass_their_own_rule(lenet_package):
    out, report = lenet_package
    arts = {a["precision"]: a for a in report["artifacts"] if a["format"] == "aoti"}
    assert set(arts) == {"fp32", "fp16", "bf16"}
    assert Path(arts["fp16"]["path"]).name == "lenet5.fp16.pt2" and Path(arts["bf16"]["path"]).name == "lenet5.bf16.pt2"
    eqs = {e["artifact"]: e for e in report["equivalence"]}
    errors = {p: eqs[Path(arts[p]["path"]).name]["max_rel"] for p in arts}
    assert all(eqs[Path(a["path"]).name]["passed"] for a in arts.values())
    # each computes in its own type: fp16 (10-bit mantissa) well above fp32's error, bf16 (7-bit) above fp16's
    assert errors["fp32"] < 1e-5 < errors["fp16"] < errors["bf16"] < 0.05
    for precision in ("fp16", "bf16"):  # fp32 in and out: callers need not change
        model = load(out / f"lenet5.{precision}.pt2")
        assert model.inputs[0].dtype == "float32" and model.describe()["precision"] == precision
        x = np.zeros((1, 1, 32, 32), np.float32)
        assert model.run(x)[0].dtype == np.float32


@pytest.mark.xdist_group("aoti-lenet")  # on one worker: another would wait on the build
def test_the_adapter_reads_the_shapes_from_the_package(lenet_package):
    out, _ = lenet_package
    model = load(out / "lenet5.pt2", threads=1)
    assert model.inputs[0].shape == (1, 1, 32, 32) and model.outputs[0].shape == (1, 10)
    assert model.describe()["threads"] == 1 and model.describe()["device"] == "cpu"
    ref = np.load(out / "reference.npz")
    key = next(k for k in ref.files if k.startswith("input__"))
    x = ref[key][:3]
    np.testing.assert_allclose(model.run_batches(x), ref[key.replace("input__", "output__")][:3], rtol=1e-4,
                               atol=1e-4)  # a batch of 3 runs as three calls of the static batch
    assert model.calls_per_batch(3) == 3


@pytest.mark.xdist_group("aoti-lenet")  # on one worker: another would wait on the build
def test_verify_bench_and_eval_read_a_package(lenet_package, tmp_path):
    out, _ = lenet_package
    runner = CliRunner()
    verified = runner.invoke(cli, ["verify", str(out / "lenet5.pt2"), "--reference", str(out / "reference.npz")])
    assert verified.exit_code == 0, verified.output
    assert "aoti" in verified.output and "passed" in verified.output
    bench = runner.invoke(cli, ["bench", str(out / "lenet5.pt2"), "--runs", "5", "--min-time", "0",
                                "--save", str(tmp_path / "rows.json")])
    assert bench.exit_code == 0, bench.output
    row = json.loads((tmp_path / "rows.json").read_text())["rows"][0]
    assert row["runtime"] == "aoti" and row["median_ms"] > 0 and row["precision"] == "fp32"
    from cnnexport.calib.digits import write_image_folder

    write_image_folder(tmp_path / "digits")
    evaluated = runner.invoke(cli, ["eval", str(out / "lenet5.pt2"), "--data", str(tmp_path / "digits"),
                                    "--save", str(tmp_path / "eval.json")])
    assert evaluated.exit_code == 0, evaluated.output
    scores = json.loads((tmp_path / "eval.json").read_text())["models"][0]
    assert scores["images"] == 450 and scores["top1"] > 0.98


def test_a_dynamic_batch_package_runs_any_batch_up_to_its_bound(tmp_path):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    module.eval()
    artifact = aoti.convert(ConvertSource(module, tmp_path / "unused.onnx", (1, 3, 12, 12), {"aoti_max_batch": 4}),
                            tmp_path / "m.pt2")
    assert artifact.details["max_batch"] == 4 and "static_batch" not in artifact.details
    model = load(tmp_path / "m.pt2")
    assert model.inputs[0].shape == (None, 3, 12, 12) and model.max_batch == 4
    x = torch.randn(6, 3, 12, 12)  # more than the bound: two calls (4 + 2)
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(model.run_batches(x.numpy()), expected, atol=1e-5)
    np.testing.assert_allclose(model.run(x[:3].numpy())[0], expected[:3], atol=1e-5)
    assert model.calls_per_batch(6) == 2


def test_a_model_torch_export_cannot_capture_is_refused_and_nothing_is_written(tmp_path):
    out = tmp_path / "out"
    proc, lines = export_uncapturable(tmp_path, "--aoti")
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "torch.export cannot capture Net for AOTInductor" in lines[0], lines
    assert not out.exists() or not any(out.iterdir())


def test_no_cpp_compiler_is_one_line_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler on it
    result = CliRunner().invoke(cli, ["lenet5", "--aoti", "-o", str(tmp_path / "out")])
    assert result.exit_code == 6, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no C++ compiler" in lines[0] and "apt install g++" in lines[0], lines
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.xdist_group("aoti-lenet")  # on one worker: another would wait on the build
def test_a_corrupt_package_is_one_line_naming_the_file(lenet_package, tmp_path):
    out, _ = lenet_package
    bad = tmp_path / "broken.pt2"
    bad.write_bytes((out / "lenet5.pt2").read_bytes()[:300])  # a truncated download
    result = CliRunner().invoke(cli, ["verify", str(bad), "--reference", str(out / "reference.npz")])
    assert result.exit_code not in (0, 1) and "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "broken.pt2" in lines[0] and "AOTInductor package" in lines[0], lines


def test_device_cuda_without_a_gpu_is_one_line_and_nothing_is_written(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the refusal is for machines without one")
    result = CliRunner().invoke(cli, ["lenet5", "--aoti", "--device", "cuda", "-o", str(tmp_path / "out")])
    assert result.exit_code == 6, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--device cuda" in lines[0] and "sees none here" in lines[0], lines
    assert not (tmp_path / "out").exists()
    alone = CliRunner().invoke(cli, ["lenet5", "--device", "cuda", "-o", str(tmp_path / "out")])
    assert alone.exit_code == 2 and "--device" in alone.stderr and "--aoti" in alone.stderr


@pytest.mark.xdist_group("aoti-lenet")  # on one worker: another would wait on the build
def test_a_package_runs_only_on_the_device_it_was_compiled_for(lenet_package):
    from cnnexport.errors import UsageError
    from cnnexport.runtimes.aoti import compiled_device

    out, _ = lenet_package
    assert compiled_device(out / "lenet5.pt2") == "cpu" and compiled_device(out / "reference.npz") is None
    with pytest.raises(UsageError, match="compiled for cpu, not cuda"):
        load(out / "lenet5.pt2", device="cuda")  # bench --device cuda on a CPU package: refused, not timed on the CPU
    assert load(out / "lenet5.pt2", device="cpu").describe()["device"] == "cpu"


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/run_gpu.sh)")


@pytest.mark.gpu
@needs_cuda
def test_cuda_packages_at_three_precisions_verify_and_bench_on_the_gpu(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["lenet5", "--weights", "digits", "--aoti", "--device", "cuda", "--fp16", "--bf16",
                                      "--aoti-max-batch", "8", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    arts = {a["precision"]: a for a in report["artifacts"] if a["format"] == "aoti"}
    assert set(arts) == {"fp32", "fp16", "bf16"}
    assert all(a["device"] == "cuda" and a["gpu"] and a["max_batch"] == 8 for a in arts.values())
    assert "allow_tf32" in arts["fp32"]["load_as_verified"]  # fp32 verified with TF32 off, and the report says so
    from cnnexport.runtimes.aoti import compiled_device

    assert compiled_device(out / "lenet5.pt2") == "cuda"
    eqs = {e["artifact"]: e for e in report["equivalence"]}
    assert all(eqs[Path(a["path"]).name]["passed"] for a in arts.values())
    assert eqs["lenet5.pt2"]["max_rel"] < 1e-5  # fp32's rule: not TF32's error
    files = [str(out / Path(a["path"]).name) for a in arts.values()]
    bench = CliRunner().invoke(cli, ["bench", *files, "--device", "cuda", "--batch", "1,8", "--rounds", "1", "--runs",
                                     "5", "--min-time", "0", "--save", str(tmp_path / "rows.json")])
    assert bench.exit_code == 0, bench.output
    data = json.loads((tmp_path / "rows.json").read_text())
    rows = data["rows"]
    assert {(r["precision"], r["batch"]) for r in rows} == {(p, b) for p in arts for b in (1, 8)}
    assert all(r["device"] == "cuda" and r["runtime"] == "aoti" and r["calls_per_batch"] == 1 for r in rows)
    assert set(data["ceilings_by_precision"]["1"]) >= {"fp32", "fp16", "bf16"}


@pytest.mark.gpu
@needs_cuda
def test_torch_compile_with_cuda_graphs_and_the_package_beside_eager_on_the_gpu(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "lenet5", "--runtime", "torch,torch-compile,aoti", "--device", "cuda",
                                      "--precision", "fp32,fp16", "--batch", "1,4", "--rounds", "1", "--runs", "5",
                                      "--min-time", "0", "--save", str(tmp_path / "rows.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    got = {(r["runtime"], r["precision"], r["batch"]) for r in rows}
    assert {(rt, "fp32", b) for rt in ("torch", "torch-cudagraph", "torch-compile", "aoti") for b in (1, 4)} <= got
    assert {("aoti", "fp16", 1), ("aoti", "fp16", 4)} <= got
    compiled = next(r for r in rows if r["runtime"] == "torch-compile")
    assert compiled["device"] == "cuda" and compiled["median_ms"] > 0
    assert all(r["calls_per_batch"] == 1 for r in rows if r["runtime"] == "aoti")  # a dynamic batch up to 4

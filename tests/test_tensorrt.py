"""TensorRT: on a machine without a CUDA GPU, --tensorrt is one line, exit 2, before any work; an engine
benched on the CPU is one line. On a GPU machine (marker ``gpu``, run by
benchmarks/run_gpu.sh): fp32 / fp16 / int8 engines built, verified against PyTorch and benchmarked
beside ONNX Runtime's CUDA and TensorRT execution providers."""

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnexport.cli import cli


def _cuda_usable() -> bool:
    try:
        from cnnexport.runtimes.cuda import gpu_facts

        gpu_facts()
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return True


CUDA = _cuda_usable()
# an NVIDIA driver without TensorRT or cuda-python refuses --tensorrt naming the package instead (exit 6)
GPU_HERE = CUDA or Path("/proc/driver/nvidia/version").is_file()
needs_gpu = pytest.mark.skipif(not CUDA, reason="needs an NVIDIA GPU with CUDA, tensorrt and cuda-python "
                                                "(pip install 'cnnexport[gpu]')")


@pytest.mark.skipif(GPU_HERE, reason="an NVIDIA GPU is here")
def test_tensorrt_without_a_gpu_is_one_line_exit_2_and_nothing_written(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["lenet5", "--tensorrt", "-o", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--tensorrt" in lines[0] and "GPU" in lines[0] and "Traceback" not in result.output
    assert not out.exists()


def test_tensorrt_max_batch_needs_tensorrt(tmp_path):
    result = CliRunner().invoke(cli, ["lenet5", "--tensorrt-max-batch", "8", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--tensorrt" in result.stderr and not (tmp_path / "o").exists()


def test_an_engine_benched_on_the_cpu_is_one_line(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    result = CliRunner().invoke(cli, ["bench", str(engine), "--runs", "1", "--rounds", "1"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--device cuda" in lines[0] and "Traceback" not in result.output


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    out = tmp_path_factory.mktemp("trt")
    result = CliRunner().invoke(cli, ["shufflenet_v2_x0_5", "--weights", "digits", "--tensorrt", "--fp16", "--int8",
                                      "--calib", "digits", "--calib-count", "100", "--tensorrt-max-batch", "16",
                                      "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


@pytest.mark.gpu
@needs_gpu
def test_engines_are_built_verified_and_carry_their_build_facts(engines):
    out, report = engines
    arts = {Path(a["path"]).name: a for a in report["artifacts"]}
    eq = {e["artifact"]: e for e in report["equivalence"]}
    for name, precision in (("shufflenet_v2_x0_5.engine", "fp32"), ("shufflenet_v2_x0_5.fp16.engine", "fp16"),
                            ("shufflenet_v2_x0_5.int8.engine", "int8")):
        assert arts[name]["precision"] == precision and eq[name]["passed"]
        facts = arts[name]["engine"]
        assert facts["precision"] == precision and facts["tensorrt"] and facts["gpu"] and facts["compute_capability"]
        assert facts["profile"]["min"][0] == 1 and facts["profile"]["max"][0] == 16
        assert json.loads((out / f"{name}.json").read_text()) == facts
    assert eq["shufflenet_v2_x0_5.engine"]["max_rel"] < 1e-4
    assert eq["shufflenet_v2_x0_5.int8.engine"]["accuracy_drop_points"] <= 1.0


@pytest.mark.gpu
@needs_gpu
def test_bench_on_cuda_measures_engines_and_both_onnx_runtime_providers(engines):
    out, _ = engines
    files = [str(out / f) for f in ("shufflenet_v2_x0_5.onnx", "shufflenet_v2_x0_5.engine",
                                    "shufflenet_v2_x0_5.fp16.engine")]
    result = CliRunner().invoke(cli, ["bench", *files, "--device", "cuda", "--batch", "1,8", "--runs", "5",
                                      "--min-time", "0", "--rounds", "1", "--pick", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert {(r["runtime"], r["precision"], r["batch"]) for r in rows} >= {
        ("onnxruntime", "fp32", 1), ("onnxruntime-trt", "fp32", 1), ("tensorrt", "fp32", 8), ("tensorrt", "fp16", 8)}
    assert all(r["gpu"] and r["device"] == "cuda" for r in rows)
    if os.environ.get("CNNEXPORT_GPU_ROWS"):  # run_gpu.sh keeps them
        Path(os.environ["CNNEXPORT_GPU_ROWS"]).write_text(json.dumps(rows, indent=1))

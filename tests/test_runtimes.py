"""Runtime adapters, conversion to every format, NHWC handling, the torch-free deploy side."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import cnnexport
from cnnexport.cli import cli
from cnnexport.errors import InvalidModelFileError, UsageError
from cnnexport.models import create_model
from cnnexport.runtimes import load, run_nchw
from conftest import SmallNet, randomize_bn_stats, run_cli

ALL_FORMATS = ("onnx", "openvino", "tflite", "ncnn")
RUNTIME_OF = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "tflite", "ncnn": "ncnn"}


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    torch.manual_seed(0)
    model = randomize_bn_stats(SmallNet()).eval()
    report = cnnexport.export(model, (1, 3, 32, 32), out, name="small", formats=ALL_FORMATS)
    return out, report, model


def test_every_format_is_written_listed_and_verified(small_export):
    out, report, _ = small_export
    assert [a["format"] for a in report["artifacts"]] == list(ALL_FORMATS)
    for a in report["artifacts"]:
        assert a["runtime"] == RUNTIME_OF[a["format"]] and a["precision"] == "fp32"
        assert all((out / f).is_file() for f in a["files"])
        assert a["size_bytes"] == sum((out / f).stat().st_size for f in a["files"])
    assert {Path(a["path"]).name for a in report["artifacts"]} == {"small.onnx", "small.xml", "small.tflite",
                                                                     "small.ncnn.param"}
    eq = {e["artifact"]: e for e in report["equivalence"]}
    assert len(eq) == 4 and all(e["passed"] and e["top1_agreement"] == 1.0 for e in eq.values())
    assert (out / "reference.npz").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_each_adapter_runs_and_describes_itself(small_export, fmt):
    out, report, model = small_export
    artifact = next(a for a in report["artifacts"] if a["format"] == fmt)
    rt = load(out / artifact["files"][0], threads=1)
    info = rt.describe()
    assert info["runtime"] == RUNTIME_OF[fmt] and info["version"] and info["threads"] == 1
    x = np.random.default_rng(5).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_nchw(rt, x).reshape(2, -1), expected, atol=1e-4)


def test_wrong_shape_or_dtype_names_expected_and_given(small_export):
    out, _, _ = small_export
    for name in ("small.onnx", "small.xml", "small.tflite", "small.ncnn.param"):
        rt = load(out / name)  # ncnn: the input shape comes from the report.json beside the file
        spec = rt.inputs[0]
        good = np.zeros([d or 1 for d in spec.shape], np.float32)
        with pytest.raises(UsageError, match=r"expects dtype float32, got float64"):
            rt.run(good.astype(np.float64))
        with pytest.raises(UsageError, match=r"expects shape .*got 1x3x31x32|expects shape .*got 1x31x32x3"):
            bad = np.zeros((1, 3, 31, 32) if spec.layout == "NCHW" else (1, 31, 32, 3), np.float32)
            rt.run(bad)


@pytest.mark.parametrize("name", ["small.onnx", "small.xml"])
def test_batch_option_compiles_the_dynamic_batch_axis_static(small_export, name):
    """bench's ``batch``: the file's dynamic batch axis fixed at load, the same outputs, other batch sizes
    refused; a static file is left as it is."""
    out, _, model = small_export
    dynamic = load(out / name, threads=1)
    assert dynamic.inputs[0].shape[0] is None and dynamic.describe()["fixed_batch"] is None
    fixed = load(out / name, threads=1, batch=2)
    assert fixed.inputs[0].shape[0] == 2 and fixed.describe()["fixed_batch"] == 2
    x = np.random.default_rng(7).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(fixed.run(x)[0], dynamic.run(x)[0], atol=1e-5)
    with pytest.raises(UsageError, match="expects shape 2x3x32x32"):
        fixed.run(x[:1])
    if name == "small.xml":  # an IR with a static batch keeps it
        static = load(out / name, threads=1, input_shape=(1, 3, 32, 32), batch=2)
        assert static.inputs[0].shape[0] == 1 and static.describe()["fixed_batch"] is None


def test_ncnn_without_a_known_input_shape_is_refused(small_export, tmp_path):
    import shutil

    out, _, _ = small_export
    for f in ("small.ncnn.param", "small.ncnn.bin"):
        shutil.copy(out / f, tmp_path / f)  # no report.json beside them
    with pytest.raises(UsageError, match="does not record its input shape"):
        load(tmp_path / "small.ncnn.param")
    assert load(tmp_path / "small.ncnn.param", input_shape=(1, 3, 32, 32)).inputs[0].shape == (None, 3, 32, 32)


def test_tflite_layouts(tmp_path):
    model = randomize_bn_stats(SmallNet()).eval()
    for layout in ("nhwc", "nchw"):
        report = cnnexport.export(model, (1, 3, 32, 32), tmp_path / layout, name="m", formats=("tflite",),
                                  tflite_layout=layout, photos=False)
        tfl = next(a for a in report["artifacts"] if a["format"] == "tflite")
        assert tfl["layout"] == layout.upper()
        rt = load(tmp_path / layout / "m.tflite")
        assert rt.inputs[0].shape == ((1, 32, 32, 3) if layout == "nhwc" else (1, 3, 32, 32))
        assert rt.inputs[0].layout == layout.upper()
        assert next(e for e in report["equivalence"] if e["artifact"] == "m.tflite")["passed"]


@pytest.mark.parametrize("name", ["shufflenet_v2_x1_0", "mobilenet_v2"])
def test_shufflenet_and_mobilenet_through_every_runtime(name, tmp_path):
    torch.manual_seed(0)
    model = randomize_bn_stats(create_model(name))
    report = cnnexport.export(model, (1, 3, 224, 224), tmp_path, name=name, formats=ALL_FORMATS)
    for e in report["equivalence"]:
        assert e["passed"] and e["cosine"] > 0.99999 and e["top1_agreement"] == 1.0, e
        assert {p["input"] for p in e["per_input"]} == {"random_b1", "random_b3", "photos"}
    # the channel shuffle survived NCHW -> NHWC: the .tflite takes NHWC and still matches
    assert next(a for a in report["artifacts"] if a["format"] == "tflite")["layout"] == "NHWC"


def test_verify_and_bench_commands(small_export):
    out, _, _ = small_export
    runner = CliRunner()
    for name in ("small.onnx", "small.xml", "small.tflite", "small.ncnn.param"):
        result = runner.invoke(cli, ["verify", str(out / name), "--reference", str(out / "reference.npz"), "--json"])
        assert result.exit_code == 0, result.output
        figures = json.loads(result.stdout)
        assert figures["passed"] and figures["machine"]["machine"] == __import__("platform").machine()
        assert figures["machine"]["emulated"] is None and "isa" in figures["machine"]  # where it ran, on what
    result = runner.invoke(cli, ["bench", str(out / "small.onnx"), str(out / "small.tflite"), "--threads", "1,2",
                                 "--runs", "5", "--min-time", "0", "--warmup", "1", "--rounds", "1", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert len(rows) == 4 and {r["threads"] for r in rows} == {1, 2}
    for r in rows:
        assert r["runs"] >= 5 and r["min_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["machine"]["cpu"] and "avx2" in r["machine"]["isa"]


def test_verify_reports_what_openvinos_own_default_computes_on_this_cpu(small_export):
    """On a bf16-capable CPU, `core.compile_model(path, "CPU")` runs bf16 while cnnexport verifies f32:
    verify checks the file both ways and says so; elsewhere the defaults are what was verified."""
    from cnnexport.runtimes.openvino import cpu_default_precision

    out, _, _ = small_export
    args = ["verify", str(out / "small.xml"), "--reference", str(out / "reference.npz")]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    default = json.loads(result.stdout)["runtime_default"]
    if cpu_default_precision() == "f32":
        assert default is None
        pytest.skip("OpenVINO computes in f32 by default on this CPU (no AMX-BF16 or AVX512-BF16)")
    assert default["precision"] == cpu_default_precision() and default["verified_at"] == "f32"
    assert default["how"] == 'core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})'
    assert 0 < default["max_rel"] < 0.1 and default["cosine"] > 0.99  # bf16's rounding, not f32's 1e-6
    text = CliRunner().invoke(cli, args).stdout
    assert "own default on this CPU computes in bf16" in text and "INFERENCE_PRECISION_HINT" in text
    bench = CliRunner().invoke(cli, ["bench", str(out / "small.xml"), "--runs", "2", "--rounds", "1", "--min-time",
                                     "0", "--warmup", "0", "--no-ceiling"])
    assert bench.exit_code == 0 and "OpenVINO's own default on this CPU is bf16" in bench.stdout, bench.output


def test_the_reports_load_as_verified_line_reproduces_the_verified_numbers(small_export):
    """report.json gives OpenVINO users the one line that compiles the IR at the precision it was verified at;
    run as written, it reproduces PyTorch's outputs within the fp32 rule."""
    import openvino as ov

    from cnnexport.exporter.verify import load_reference

    out, report, _ = small_export
    (entry,) = [a for a in report["artifacts"] if a["format"] == "openvino"]
    compiled = eval(entry["load_as_verified"], {"core": ov.Core(), "path": entry["path"]})  # the line, as printed
    inputs, refs, _ = load_reference(out / "reference.npz")
    x = inputs[0].batches[0]
    got = np.asarray(compiled.create_infer_request().infer({0: x})[compiled.outputs[0]])
    want = refs[0]
    assert np.abs(got - want).max() <= 1e-4 * max(np.abs(want).max(), 1.0)
    assert all("load_as_verified" not in a for a in report["artifacts"] if a["format"] != "openvino")


def test_the_runtime_default_line_on_fixed_facts():
    from cnnexport.cli.render import runtime_default_text

    facts = {"precision": "bf16", "verified_at": "f32", "max_rel": 4.2e-3, "cosine": 0.99998, "top1_agreement": 1.0,
             "passed": False, "how": 'core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})'}
    assert runtime_default_text("openvino", facts) == (
        "note: openvino's own default on this CPU computes in bf16, not the f32 verified here: max rel error 4.2e-03, "
        "cosine 0.999980, top-1 agreement 100% (it would NOT pass this check); to run what was verified: "
        'core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})')
    int8 = {**facts, "cosine_mean": 0.9991, "passed": True}
    assert "mean cosine 0.9991" in runtime_default_text("openvino", int8) and "would pass" in \
        runtime_default_text("openvino", int8)
    named = {k: facts[k] for k in ("precision", "verified_at", "how")}  # verify --no-runtime-default
    assert runtime_default_text("openvino", {**named, "checked": False}) == (
        "note: openvino's own default on this CPU computes in bf16, not the f32 verified here: not checked; "
        'to run what was verified: core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})')


def test_a_file_the_runtime_loads_but_cannot_run_is_named_not_called_a_bug():
    """OpenVINO's ARM plugin compiled mobilenet_v2.int8.xml on a Cortex-A53 and then refused to run it; the
    runtime's own words in one line (exit 8), where the CLI would otherwise report an internal error."""
    from cnnexport.runtimes.base import RuntimeModel, TensorSpec

    class Refusing(RuntimeModel):
        runtime = "openvino"
        path = "/files/mobilenet_v2.int8.xml"
        _inputs = [TensorSpec("input", (1, 3, 4, 4), "float32", "NCHW")]
        _outputs = [TensorSpec("output", (1, 10), "float32", "NC")]

        def _run(self, arrays):
            raise RuntimeError("Exception from src/inference/src/cpp/infer_request.cpp:224:\n"
                               "[CPU] Convolution node with name 'conv' object is not initialized\n")

        def describe(self):
            return {}

    with pytest.raises(InvalidModelFileError) as err:
        Refusing().run(np.zeros((1, 3, 4, 4), np.float32))
    assert str(err.value) == ("openvino failed running 'mobilenet_v2.int8.xml': [CPU] Convolution node with name "
                              "'conv' object is not initialized")
    assert err.value.exit_code == 8


def test_verify_fails_on_a_different_model(small_export, tmp_path):
    out, _, _ = small_export
    other = randomize_bn_stats(SmallNet(), seed=7).eval()
    cnnexport.export(other, (1, 3, 32, 32), tmp_path, name="other", photos=False)
    result = CliRunner().invoke(cli, ["verify", str(tmp_path / "other.onnx"), "--reference",
                                      str(out / "reference.npz")])
    assert result.exit_code == 5 and "does not match the reference" in result.stderr


def test_verify_checks_several_files_in_one_run(small_export, tmp_path):
    """`verify A B C`: one line per file, each by its own reference; one failure fails the run, naming it."""
    out, _, _ = small_export
    files = [str(out / f) for f in ("small.onnx", "small.xml", "small.tflite")]
    result = CliRunner().invoke(cli, ["verify", *files, "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert [Path(f["artifact"]).name for f in body["files"]] == ["small.onnx", "small.xml", "small.tflite"]
    assert all(f["passed"] for f in body["files"]) and "machine" in body
    other = randomize_bn_stats(SmallNet(), seed=7).eval()
    cnnexport.export(other, (1, 3, 32, 32), tmp_path, name="other", photos=False)
    result = CliRunner().invoke(cli, ["verify", files[0], str(tmp_path / "other.onnx"), files[1],
                                      "--reference", str(out / "reference.npz")])
    assert result.exit_code == 5
    lines = result.stdout.splitlines()
    notes = [line for line in lines if line.startswith("note: ")]  # OpenVINO's own default on a bf16 CPU
    assert all(note.startswith("note: openvino's own default") for note in notes), notes
    assert [line.split(" on ")[0] for line in lines if line not in notes] == ["small.onnx", "other.onnx", "small.xml"]
    assert "1 of 3 files failed: other.onnx does not match the reference" in result.stderr


BLOCK = textwrap.dedent("""
    import sys
    class Block:
        def __init__(self, names): self.names = names
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.names:
                raise ImportError(f"{name} is blocked in this test")
    sys.meta_path.insert(0, Block(set(sys.argv[1].split(","))))
    sys.argv = ["cnnexport"] + sys.argv[2:]
    from cnnexport.cli import main
    main()
""")


def _run_blocked(blocked: str, *args):
    return subprocess.run([sys.executable, "-c", BLOCK, blocked, *args], capture_output=True, text=True, timeout=300)


def test_deploy_side_runs_where_torch_cannot_be_imported(small_export):
    out, _, _ = small_export
    for name in ("small.onnx", "small.xml", "small.tflite", "small.ncnn.param"):
        proc = _run_blocked("torch", "verify", str(out / name), "--reference", str(out / "reference.npz"), "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["passed"]
    proc = _run_blocked("torch", "bench", str(out / "small.onnx"), "--runs", "3", "--min-time", "0", "--rounds", "1",
                        "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows"][0]["runtime"] == "onnxruntime"
    proc = _run_blocked("torch", "profile", str(out / "small.onnx"), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["source"] == "onnx"
    # and the block is real: a command that needs torch fails cleanly
    proc = _run_blocked("torch", "export", "resnet18")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("blocked,args,extra", [
    ("openvino", ["verify", "small.xml", "--reference", "reference.npz"], "cnnexport[openvino]"),
    ("ai_edge_litert,tflite_runtime", ["verify", "small.tflite", "--reference", "reference.npz"], "ai-edge-litert"),
    ("ncnn", ["verify", "small.ncnn.param", "--reference", "reference.npz"], "cnnexport[ncnn]"),
    ("litert_torch", ["export", "lenet5", "--tflite", "-o", "x"], "cnnexport[tflite]"),
    ("tensorboard", ["profile", "lenet5", "--tensorboard", "x"], "cnnexport[tensorboard]"),
])
def test_missing_runtime_names_the_extra(small_export, blocked, args, extra):
    out, _, _ = small_export
    args = [str(out / a) if (out / a).exists() else a for a in args]
    proc = subprocess.run([sys.executable, "-c", BLOCK, blocked, *args], capture_output=True, text=True,
                          timeout=300, cwd=out)
    assert proc.returncode == 6, proc.stderr
    assert extra in proc.stderr and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert not (out / "x").exists()


def test_torch_eager_baseline_adapter():
    from cnnexport.runtimes.torch_eager import TorchModel

    model = randomize_bn_stats(SmallNet()).eval()
    rt = TorchModel(model, (1, 3, 32, 32), threads=1)
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_array_equal(rt.run(x)[0], model(torch.from_numpy(x)).numpy())
    info = rt.describe()
    assert info["runtime"] == "torch" and info["device"] == "cpu" and info["threads"] == 1
    with pytest.raises(UsageError, match="expects dtype float32"):
        rt.run(x.astype(np.float16))


def test_torch_compile_takes_its_mode_from_the_environment_and_says_which(monkeypatch):
    from cnnexport.runtimes.torch_eager import COMPILE_MODE_ENV, TorchModel

    model = SmallNet().eval()
    assert TorchModel(model, (1, 3, 32, 32), compiled=True).describe()["compile_mode"] == "max-autotune-no-cudagraphs"
    monkeypatch.setenv(COMPILE_MODE_ENV, "reduce-overhead")
    rt = TorchModel(model, (1, 3, 32, 32), compiled=True)
    assert rt.describe()["compile_mode"] == "reduce-overhead" and rt.runtime == "torch-compile"
    assert "compile_mode" not in TorchModel(model, (1, 3, 32, 32)).describe()  # eager: no mode


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_eager_cuda():
    from cnnexport.runtimes.torch_eager import TorchModel

    model = randomize_bn_stats(SmallNet()).eval()
    rt = TorchModel(model, (1, 3, 32, 32), device="cuda")
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(rt.run(x)[0], model(torch.from_numpy(x)).numpy(), atol=1e-4)


def test_gpu_paths_not_yet_run_on_hardware_are_said_once():
    from cnnexport.runtimes import NOT_YET_RUN_ON_GPU, not_yet_run_notes

    assert not_yet_run_notes({"onnxruntime", "tensorrt"}, "cpu") == []
    notes = not_yet_run_notes({"onnxruntime", "onnxruntime-trt", "tensorrt", "torch"}, "cuda")
    assert notes == [NOT_YET_RUN_ON_GPU["onnxruntime"], NOT_YET_RUN_ON_GPU["tensorrt"]]
    assert all("not yet run on a GPU" in n for n in notes)


def test_the_ir_carries_its_verified_precision_in_a_config_file_the_adapter_reads(small_export, tmp_path):
    """<model>.config.json, in benchmark_app's -load_config format, travels with the IR: cnnexport's adapter
    compiles at the precision it names, and compiling with it as the config gives the verified numbers."""
    import openvino as ov

    from cnnexport.exporter.verify import load_reference
    from cnnexport.runtimes.openvino import config_path

    out, report, _ = small_export
    (entry,) = [a for a in report["artifacts"] if a["format"] == "openvino"]
    assert "small.config.json" in entry["files"]
    config = json.loads(config_path(out / "small.xml").read_text())
    assert config == {"CPU": {"INFERENCE_PRECISION_HINT": "f32"}}
    assert load(out / "small.xml").precision == "f32"
    inputs, refs, _ = load_reference(out / "reference.npz")
    compiled = ov.Core().compile_model(str(out / "small.xml"), "CPU", config["CPU"])
    got = np.asarray(compiled.create_infer_request().infer({0: inputs[0].batches[0]})[compiled.outputs[0]])
    assert np.abs(got - refs[0]).max() <= 1e-4 * max(np.abs(refs[0]).max(), 1.0)
    # a copy whose config names another precision is compiled at that one
    for suffix in (".xml", ".bin"):
        (tmp_path / f"m{suffix}").write_bytes((out / f"small{suffix}").read_bytes())
    (tmp_path / "m.config.json").write_text(json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}}))
    assert load(tmp_path / "m.xml").precision == "bf16"
    (tmp_path / "m.config.json").unlink()
    assert load(tmp_path / "m.xml").precision == "f32"  # no config: f32, as before


def test_plain_defaults_give_the_verified_numbers_once_openvino_honours_the_ir_entry(small_export):
    """The IR also records its precision in rt_info (runtime_options), which `core.compile_model(path, "CPU")`
    would then use with no config at all. OpenVINO 2026.4's CPU plugin reads only KV-cache and dynamic-
    quantization keys there: on a bf16 CPU its plain defaults still compute bf16, and the config file is
    what carries the precision. Either way the verified numbers are one documented call away."""
    import openvino as ov

    from cnnexport.exporter.verify import load_reference
    from cnnexport.runtimes.openvino import cpu_default_precision

    out, _, _ = small_export
    core = ov.Core()
    model = core.read_model(str(out / "small.xml"))
    assert model.get_rt_info(["runtime_options", "INFERENCE_PRECISION_HINT"]).astype(str) == "f32"
    inputs, refs, _ = load_reference(out / "reference.npz")
    tolerance = 1e-4 * max(np.abs(refs[0]).max(), 1.0)

    def error(compiled) -> float:
        got = np.asarray(compiled.create_infer_request().infer({0: inputs[0].batches[0]})[compiled.outputs[0]])
        return float(np.abs(got - refs[0]).max())

    plain = core.compile_model(str(out / "small.xml"), "CPU")
    honoured = plain.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    if cpu_default_precision() == "f32" or honoured:  # no bf16 here, or a release that reads the IR's entry
        assert error(plain) <= tolerance
    else:  # OpenVINO 2026.4 on a bf16 CPU: plain defaults compute bf16; the config file gives the verified numbers
        assert error(plain) > tolerance
        assert error(load(out / "small.xml").compiled) <= tolerance


def test_verify_names_a_reference_made_for_another_model(tmp_path):
    from cnnexport.models import create_model

    cnnexport.export(create_model("lenet5", weights="digits"), (1, 1, 32, 32), tmp_path / "a", name="lenet5",
                     photos=False, formats=("onnx", "openvino"))
    cnnexport.export(create_model("lenet5"), (1, 1, 32, 32), tmp_path / "b", name="untrained", photos=False)
    cnnexport.export(create_model("resnet18"), (1, 3, 32, 32), tmp_path / "c", name="resnet18", photos=False)
    ref = str(tmp_path / "a" / "reference.npz")
    same_shape = run_cli("verify", str(tmp_path / "b" / "untrained.onnx"), "--reference", ref)
    assert same_shape.returncode == 5 and "made for model 'lenet5'" in same_shape.stderr
    assert "not for 'untrained.onnx'" in same_shape.stderr
    other_shape = run_cli("verify", str(tmp_path / "c" / "resnet18.onnx"), "--reference", ref)
    assert other_shape.returncode == 2 and "1x32x32 inputs for model 'lenet5'" in other_shape.stderr
    assert "takes 3x32x32" in other_shape.stderr
    assert run_cli("verify", str(tmp_path / "a" / "lenet5.onnx"), "--reference", ref).returncode == 0
    odd = tmp_path / "lenet5.weird"
    odd.write_bytes((tmp_path / "a" / "lenet5.onnx").read_bytes())
    proc = run_cli("verify", str(odd), "--reference", ref)
    assert proc.returncode == 2 and "None" not in proc.stderr and "'.weird' files" in proc.stderr


def test_a_truncated_openvino_file_names_the_cause(tmp_path):
    from cnnexport.models import create_model

    cnnexport.export(create_model("lenet5"), (1, 1, 32, 32), tmp_path, name="lenet5", photos=False,
                     formats=("onnx", "openvino"))
    xml = tmp_path / "lenet5.xml"
    data = xml.read_bytes()  # cut after the first whole layer: the parser's message then does not depend on
    xml.write_bytes(data[:data.index(b"</layer>") + len(b"</layer>")])  # what a fixed byte offset falls in
    proc = run_cli("verify", str(xml), "--reference", str(tmp_path / "reference.npz"))
    assert proc.returncode == 8 and "mismatch" in proc.stderr and "core.cpp" not in proc.stderr


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


@pytest.mark.parametrize("runtime", ["ncnn", "mnn"])
def test_declared_approximate_functions_bound_the_runtimes_own_error(runtime, tmp_path):
    """``approximate_ops`` in RUNTIME_TABLE: each function alone, over [-12, 12] and near zero, stays
    within the declared absolute error, and somewhere (tanh: near zero) is further from PyTorch than fp32
    rounding (else there is nothing to declare). The model's first op works in place on the input blob: ncnn crashed
    on that until the adapter gave it its own copy of the input."""
    from torch import nn

    from cnnexport.runtimes import RUNTIME_TABLE

    functions = {"tanh": nn.Tanh(), "gelu": nn.GELU()}
    ramp = np.linspace(-12, 12, 3 * 32 * 32)
    tiny = np.logspace(-6, -1, 3 * 32 * 32 // 2)
    x = np.concatenate([ramp[: len(ramp) // 2], tiny, -tiny[: len(ramp) - len(ramp) // 2 - len(tiny)]])
    x = x[: 3 * 32 * 32].astype(np.float32).reshape(1, 3, 32, 32)
    for name, bound in RUNTIME_TABLE[runtime].approximate_ops:
        folder = tmp_path / name
        cnnexport.export(functions[name], (1, 3, 32, 32), folder, name=name, formats=(runtime,), atol=1.0,
                         photos=False)
        out = run_nchw(load(next(p for p in folder.iterdir() if p.name.startswith(f"{name}.")
                                 and p.suffix in (".param", ".mnn"))), x)
        exact = functions[name](torch.from_numpy(x).double()).numpy()
        error = np.abs(out.reshape(exact.shape) - exact)
        assert error.max() <= bound, f"{runtime} {name}: {error.max():.3g} > declared {bound:.3g}"
        relative = error / np.maximum(np.abs(exact), 1e-3)  # fp32 rounding alone: ~6e-8
        assert relative.max() > 1e-5, f"{runtime} {name} is as exact as fp32 rounding: no approximation to declare"


def test_a_boards_requirements_are_the_emulated_environments():
    """scripts/arm_env.sh requirements: what a Raspberry Pi or Jetson installs beside the wheel, the same list
    the emulated arm64 environment installs: the deploy side and a wheel for every torch-free runtime."""
    root = Path(__file__).parents[1]
    out = subprocess.run(["bash", str(root / "scripts" / "arm_env.sh"), "requirements"], capture_output=True,
                         text=True, check=True).stdout.split()
    deploy = [line for line in (root / "requirements-deploy.txt").read_text().split() if not line.startswith("#")
              and ">=" in line]
    assert out[:len(deploy)] == deploy
    names = {line.split("=")[0].split(">")[0].split("<")[0] for line in out}
    assert {"onnxruntime", "openvino", "ai-edge-litert", "ncnn", "mnn"} <= names and "torch" not in names


def _wait_for_the_arm_build(timeout_s: float = 1800) -> None:
    """Where CI builds the arm64 environment beside the tests, until the build has ended (its status file,
    CNNEXPORT_ARM_BUILD_DONE, exists); a failed build then fails CI after the tests."""
    import time

    done = os.environ.get("CNNEXPORT_ARM_BUILD_DONE")
    deadline = time.monotonic() + timeout_s
    while done and not Path(done).exists() and time.monotonic() < deadline:
        time.sleep(2)


@pytest.mark.last
def test_fp32_files_verify_on_an_emulated_phone_core(tmp_path):
    """scripts/arm_env.sh run: the digits LeNet-5's fp32 files verified by aarch64 kernels under qemu (-cpu max:
    fp16 arithmetic, where ncnn, MNN and OpenVINO would compute in fp16 by default), and the rows say so.
    OpenVINO's CPU plugin needs the small /sys the script gives each emulated core (it crashed without one)."""
    script = Path(__file__).parents[1] / "scripts" / "arm_env.sh"
    _wait_for_the_arm_build()
    ready = subprocess.run(["bash", str(script), "ready"], capture_output=True, text=True)
    if ready.returncode != 0:
        pytest.skip(f"no emulated arm64 environment: {ready.stdout.strip() or ready.stderr.strip()}")
    export = run_cli("lenet5", "--weights", "digits", "--openvino", "--ncnn", "--mnn", "-o", str(tmp_path))
    assert export.returncode == 0, export.stderr
    names = ["lenet5.onnx", "lenet5.xml", "lenet5.ncnn.param", "lenet5.mnn"]
    # one emulated process; OpenVINO's own f16 default is named, not run (--no-runtime-default: on -cpu max its
    # convolutions run its reference kernel, the slowest part of this test)
    out = subprocess.run(["bash", str(script), "run", "--cpu", "max", "--", "cnnexport", "verify", *names,
                          "--reference", "reference.npz", "--threads", "1", "--no-runtime-default", "--json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"emulated aarch64: {out.stderr[-500:]}"
    result = json.loads(out.stdout)
    assert result["machine"]["machine"] == "aarch64" and result["machine"]["emulated"] == "qemu-aarch64 -cpu max"
    assert [r["artifact"] for r in result["files"]] == names
    for name, figures in zip(names, result["files"]):
        assert figures["passed"] and figures["max_rel"] < 1e-4, name  # fp16 arithmetic would be ~1e-3
    # OpenVINO's own default on an fp16 core is f16: named beside the f32 verdict
    assert result["files"][1]["runtime_default"] == {
        "precision": "f16", "verified_at": "f32", "checked": False,
        "how": 'core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})'}
    assert [f["runtime_default"] for i, f in enumerate(result["files"]) if i != 1] == [None] * 3


def test_what_a_native_library_prints_while_quiet_never_reaches_stdout_later():
    """A C library's printf into a pipe waits in C's buffer; unflushed, it came out at exit, after verify's
    JSON (MNN's "The device supports: ..." on ARM). quiet_fds flushes it into its own capture."""
    code = ("import ctypes\nfrom cnnexport._quiet import quiet_fds\n"
            "with quiet_fds() as log:\n    ctypes.CDLL(None).printf(b'native line\\n')\n"
            "print('{}')\nimport sys; print(log, file=sys.stderr)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # which would unbuffer C's stdio too
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout == "{}\n"
    assert "native line" in out.stderr

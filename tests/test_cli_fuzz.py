"""Bad CLI input, fuzzed with hypothesis: whatever the model name, size, batch, opset, tolerance,
path, thread count or runtime list, the CLI never prints a traceback and exits with a documented code."""

import string

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from cnnexport.cli import cli
from cnnexport.errors import EXIT_CODES

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

text = st.text(alphabet=string.printable + "éü→\x00", max_size=24)
numberish = st.one_of(st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True).map(str), text,
                      st.sampled_from(["0", "-1", "1", "2", "18", "1e400", "nan", "inf", "", " ", "1,2", "3x"]))
model_names = st.one_of(st.sampled_from(["lenet5", "LENET5", "lenet", "resnet", "vgg99", "os:system", "..",
                                         "cnnexport.models:create_model", "torch.nn:Conv2d", ""]), text)
runtime_lists = st.one_of(st.sampled_from(["ort", "ort,torch", "openvino,,tflite", "ncnn", "tensorrt", ",", ""]),
                          text)


def _check(result) -> None:
    assert result.exit_code in EXIT_CODES, (result.exit_code, result.output)
    assert "Traceback" not in result.output, result.output
    if result.exit_code:
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


@FUZZ
@given(model=model_names, size=numberish, batch=numberish, opset=numberish, atol=numberish)
def test_export_options(tmp_path_factory, model, size, batch, opset, atol):
    out = tmp_path_factory.mktemp("fuzz")
    args = [model, "--input-size", size, "--batch", batch, "--opset", opset, "--atol", atol, "-o", str(out / "o")]
    _check(CliRunner().invoke(cli, ["export", *args]))


@FUZZ
@given(path=st.one_of(text, st.sampled_from(["/", "/dev/null", "/etc/passwd", "../../x.onnx", "-", "a" * 300,
                                             "/proc/self/mem", "model.onnx"])),
       command=st.sampled_from(["verify", "fold", "profile", "bench", "quantize", "eval"]))
def test_model_file_paths(tmp_path_factory, path, command):
    out = tmp_path_factory.mktemp("fuzz")
    extra = {"verify": ["--reference", str(out / "r.npz")], "quantize": ["--calib", "samples"],
             "bench": ["--runs", "1", "--rounds", "1"], "fold": ["-o", str(out / "f.onnx")], "profile": [],
             "eval": ["--data", "digits"]}[command]
    _check(CliRunner().invoke(cli, [command, path, *extra]))


@FUZZ
@given(batch=numberish, threads=numberish, runtime=runtime_lists, precision=st.one_of(text, st.sampled_from(
    ["fp32", "int8", "fp32,int8", "fp16", ""])), rounds=numberish)
def test_bench_options(tmp_path_factory, batch, threads, runtime, precision, rounds):
    missing = str(tmp_path_factory.mktemp("fuzz") / "absent.onnx")  # valid options end at the missing file
    args = ["bench", missing, "--batch", batch, "--threads", threads, "--runtime", runtime, "--precision", precision,
            "--rounds", rounds]
    _check(CliRunner().invoke(cli, args))


@FUZZ
@given(widths=numberish, guidelines=st.one_of(text, st.sampled_from(["G1", "g2,G9", ""])), models=model_names,
       runtime=runtime_lists)
def test_study_options(widths, guidelines, models, runtime):
    # widths, guidelines, models and runtimes are checked first; --threads 0 then stops a valid set
    # before it starts a long run
    _check(CliRunner().invoke(cli, ["study", "guidelines", "--widths", widths, "--guidelines", guidelines,
                                    "--runtime", runtime, "--threads", "0"]))
    _check(CliRunner().invoke(cli, ["study", "zoo", "--models", models, "--runtime", runtime, "--threads", "0"]))


@FUZZ
@given(model=model_names, size=numberish, batch=numberish)
def test_profile_options(model, size, batch):
    _check(CliRunner().invoke(cli, ["profile", model, "--input-size", size, "--batch", batch]))


@FUZZ
@given(data=st.one_of(text, st.sampled_from(["digits", "digits:x", "digits:all", "/", "/dev/null", "x.npz", ""])),
       shard=st.one_of(text, st.sampled_from(["1/2", "0/2", "3/2", "1/0", "a/b", "1", "/"])), limit=numberish,
       batch=numberish)
def test_eval_options(tmp_path_factory, data, shard, limit, batch):
    missing = str(tmp_path_factory.mktemp("fuzz") / "absent.onnx")  # valid options end at the missing file
    _check(CliRunner().invoke(cli, ["eval", missing, "--data", data, "--shard", shard, "--limit", limit,
                                    "--batch", batch]))

"""The FORMATS table: every format module has the same functions, the table agrees with the runtimes'
own suffix map, and the CLI's flags and choices come from the table."""

import inspect
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnexport.bench.plan import formats_for
from cnnexport.cli import cli
from cnnexport.exporter.formats import ALWAYS, FORMATS, by_runtime, file_int8_formats, for_file
from cnnexport.runtimes import MODULE_RUNTIMES, RUNTIMES, _BY_SUFFIX, runtime_for

FUNCTIONS = ("convert", "quantize", "describe_int8", "runtime_options")


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_module_has_the_same_functions(name):
    fmt = FORMATS[name]
    module = fmt.module()
    assert module.__name__.endswith(f".formats.{name}")
    for fn in FUNCTIONS:
        assert hasattr(module, fn), f"{module.__name__} lacks {fn}"
    assert list(inspect.signature(module.convert).parameters) == ["source", "dst"]
    assert list(inspect.signature(module.runtime_options).parameters) == ["artifact", "batch_shape"]
    # the table's precisions say what the module can do
    assert (module.quantize is not None) == ("int8" in fmt.precisions) == bool(fmt.int8_from)
    assert fmt.int8_from in (None, "onnx", "self", "module", "onnx_int8")
    # `cnnexport quantize FILE` takes a file only for quantizers that start from one
    assert not fmt.int8_inputs or fmt.int8_from in ("onnx", "self")
    assert (module.describe_int8 is not None) == (module.quantize is not None)
    if module.quantize is not None:
        assert list(inspect.signature(module.quantize).parameters) == ["src", "dst", "calibration", "options",
                                                                         "layout"]
    assert fmt.source in ("onnx", "module")
    assert hasattr(module, "half") == fmt.fp16 == ("fp16" in fmt.precisions)
    if fmt.fp16:
        assert list(inspect.signature(module.half).parameters) == ["source", "fp32", "dst"]
    assert hasattr(module, "preflight") == fmt.needs_cuda
    assert hasattr(module, "bf16") == hasattr(module, "bf16_preflight") == fmt.bf16 == ("bf16" in fmt.precisions)


def test_the_runtimes_suffix_map_agrees_with_the_table():
    # runtimes/ keeps its own map (it never imports the exporter): both must say the same
    for fmt in FORMATS.values():
        assert fmt.runtime in RUNTIMES
        assert runtime_for(f"m{fmt.suffixes[0]}") == fmt.runtime
        assert runtime_for(fmt.file_name("m", "int8")) == fmt.runtime
    for suffix, runtime in _BY_SUFFIX.items():
        assert by_runtime(runtime) is not None, f"{suffix}: a runtime with no row in FORMATS"
        assert any(f.suffixes[0].endswith(suffix) for f in FORMATS.values() if f.runtime == runtime)
    # PyTorch, eager and compiled, measures modules, not files
    assert {r for r in RUNTIMES if by_runtime(r) is None} == set(MODULE_RUNTIMES) == {"torch", "torch-compile"}


def test_file_names_and_lookups():
    assert FORMATS["openvino"].file_name("resnet50", "int8") == "resnet50.int8.xml"
    assert FORMATS["ncnn"].file_name("m") == "m.ncnn.param"
    assert for_file("a/m.int8.tflite").name == "tflite" and for_file("m.ncnn.param").name == "ncnn"
    assert for_file("m.pt") is None
    assert formats_for(["torch", "openvino", "onnxruntime"]) == ["openvino", "onnx"]
    assert ALWAYS in FORMATS and "int8" in FORMATS[ALWAYS].precisions


def test_the_cli_flags_and_choices_come_from_the_table():
    runner = CliRunner()
    export_help = runner.invoke(cli, ["export", "--help"]).output
    for fmt in FORMATS.values():
        assert f"--{fmt.name} " in export_help
    quantize = next(p for p in cli.commands["quantize"].params if p.name == "runtime")
    assert list(quantize.type.choices) == [f.runtime for f in file_int8_formats()]
    bench_help = runner.invoke(cli, ["bench", "--help"]).output
    assert all(f.runtime in bench_help for f in FORMATS.values())
    from cnnexport.bench.jobs import PRECISIONS

    assert all(p in bench_help.split("--precision", 1)[1].split("--", 1)[0] for p in PRECISIONS)  # fp16 was missing


def test_no_format_specific_branch_in_the_commands():
    # DESIGN.md: the CLI reads the table; it never branches on a format's or a runtime's name
    for path in (Path(__file__).parents[1] / "cnnexport" / "cli").glob("*.py"):
        source = path.read_text()
        for fmt in FORMATS.values():
            for needle in (f'== "{fmt.name}"', f'!= "{fmt.name}"', f'== "{fmt.runtime}"', f'!= "{fmt.runtime}"',
                           f'want_{fmt.name}'):
                assert needle not in source, f"{path.name}: {needle}"


def test_no_format_or_runtime_branch_in_bench_and_the_study():
    # what bench and the study ask of a file's runtime or format is a column of RUNTIME_TABLE or FORMATS (bench runs
    # PyTorch's module runtimes itself: torch_jobs picks eager or compiled by name)
    names = {f.name for f in FORMATS.values()} | (set(RUNTIMES) - set(MODULE_RUNTIMES))
    package = Path(__file__).parents[1] / "cnnexport"
    for path in [*(package / "bench").glob("*.py"), *(package / "study").glob("*.py")]:
        source = path.read_text().replace('ep == "tensorrt"', "")  # an execution provider's name, not a runtime's
        for name in names:
            for needle in (f'== "{name}"', f'!= "{name}"', f'"{name}" in ', f'"{name}" not in '):
                assert needle not in source, f"{path.name}: {needle}"


def test_the_runtime_table_answers_what_bench_asks():
    from cnnexport.runtimes import CUDA_RUNTIMES, FIXES_BATCH, RUNTIME_TABLE

    assert set(FIXES_BATCH) == {"onnxruntime", "openvino", "tensorrt"}
    assert set(CUDA_RUNTIMES) == {"onnxruntime", "tensorrt", "torch", "torch-compile"}
    assert RUNTIME_TABLE["tensorrt"].devices == ("cuda",) and RUNTIME_TABLE["onnxruntime"].cuda_eps == ("cuda", "tensorrt")
    assert {r.input_shape for r in RUNTIME_TABLE.values()} == {None, "fill", "full"}
    for runtime in RUNTIME_TABLE.values():  # every adapter the table names exists and is that runtime's
        if runtime.adapter:
            module, cls = runtime.adapter.split(":")
            adapter = getattr(__import__(f"cnnexport.runtimes.{module}", fromlist=[cls]), cls)
            assert adapter.runtime == runtime.name

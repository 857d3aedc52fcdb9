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
    assert hasattr(module, "preflight") == (fmt.needs_cuda or fmt.device_option() is not None)
    if fmt.device_option() is not None:  # its device option names the CPU by default, and CUDA
        assert fmt.device_option().default == "cpu" and "cuda" in fmt.device_option().choices
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


def test_an_artifacts_files_are_the_ones_its_format_makes_it_of(tmp_path):
    """What bench's MB column adds up: an IR's .xml and .bin, an ncnn model's .param and .bin, one file
    elsewhere; only files that exist, and never another precision's."""
    from cnnexport.exporter.formats import artifact_files

    for name in ("m.int8.xml", "m.int8.bin", "m.xml", "m.ncnn.param", "m.ncnn.bin", "m.onnx", "m.int8.onnx"):
        (tmp_path / name).write_bytes(b"x")
    names = lambda p: [f.name for f in artifact_files(tmp_path / p)]  # noqa: E731
    assert names("m.int8.xml") == ["m.int8.xml", "m.int8.bin"] and names("m.xml") == ["m.xml"]
    assert names("m.ncnn.param") == ["m.ncnn.param", "m.ncnn.bin"] and names("m.onnx") == ["m.onnx"]
    assert names("m.tflite") == [] and names("notes.txt") == []


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


def test_no_format_or_runtime_named_outside_their_modules():
    """DESIGN.md: a format is one module and one row. Outside exporter/formats/ and runtimes/, no code names a
    format or a file runtime in a string (a branch, a table keyed by it, a default): what the rest of the
    package asks of one is a column of FORMATS or RUNTIME_TABLE. The hub is exempt: the ONNX file every export
    writes and ONNX Runtime, which checks it (ALWAYS, by design); and PyTorch's module runtimes, which bench
    runs itself."""
    import ast

    from cnnexport.runtimes import RUNTIME_TABLE

    hub = {ALWAYS, FORMATS[ALWAYS].runtime, *RUNTIME_TABLE[FORMATS[ALWAYS].runtime].aliases}
    names = {n for f in FORMATS.values() for n in (f.name, f.runtime)} | {
        a for r in RUNTIME_TABLE.values() if r.adapter for a in (r.name, *r.aliases)}
    names -= hub
    package = Path(__file__).parents[1] / "cnnexport"
    hits = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if rel.parts[0] == "runtimes" or rel.parts[:2] == ("exporter", "formats"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in names:
                hits.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not hits, hits
    assert {"tflite", "ncnn", "openvino", "mnn", "tensorrt", "executorch", "aoti", "litert", "trt"} <= names


def test_format_options_are_declared_in_their_rows_and_read_from_there(tmp_path):
    """A format's own options: the CLI's flags, export()'s keywords and ConvertSource.option all come from the
    row's FormatOption; each applies only with its format (and precision)."""
    from cnnexport.errors import ParameterError
    from cnnexport.exporter.formats import FORMAT_OPTIONS, ConvertSource
    from cnnexport.exporter.options import ExportOptions
    from cnnexport.cli.app import flag_of

    assert set(FORMAT_OPTIONS) == {"fp16_io", "tflite_layout", "executorch_max_batch", "aoti_max_batch",
                                   "aoti_device", "engine_max_batch"}
    export_help = " ".join(CliRunner().invoke(cli, ["export", "--help"]).output.split())
    source = ConvertSource(None, tmp_path / "m.onnx", (1, 3, 8, 8), {"tflite_layout": "nchw"})
    assert source.option("tflite_layout") == "nchw" and source.option("executorch_max_batch") is None
    for name, (fmt, option) in FORMAT_OPTIONS.items():
        assert f"{option.cli_flag} " in export_help and flag_of(name) == option.cli_flag
        assert option in fmt.options and option.takes(option.default)
        given = {"choice": (option.choices or ("",))[-1], "int": option.high, "flag": True}[option.kind]
        assert option.takes(given) and given != option.default
        formats = [ALWAYS] if fmt.name == ALWAYS else [ALWAYS, "openvino"]
        if fmt.name != ALWAYS:  # without its format: refused, naming both
            with pytest.raises(ParameterError) as caught:
                ExportOptions.of(formats=formats, **{name: given})
            assert f"{{{name}}}" in caught.value.template and f"{{{fmt.name}}}" in caught.value.template
        if option.needs:  # its format chosen, its precision not
            with pytest.raises(ParameterError, match=option.needs):
                ExportOptions.of(formats=formats, **{name: given})
        if option.kind == "int":  # a value outside its range
            with pytest.raises(ParameterError, match=f"{option.low}..{option.high}"):
                ExportOptions.of(formats=[ALWAYS, fmt.name], **{name: option.high + 1})
    chosen = ExportOptions.of(formats=[ALWAYS, "tflite", "executorch"], tflite_layout="nchw", executorch_max_batch=8)
    assert chosen.convert_source(None, tmp_path / "m.onnx", (1, 3, 8, 8)).options == {
        "tflite_layout": "nchw", "executorch_max_batch": 8}
    from cnnexport.cli.render.bench import _max_batch_flags

    # bench's note on static-batch files names the options that give one a dynamic batch
    assert _max_batch_flags() == "--executorch-max-batch, --aoti-max-batch"
    assert ExportOptions.of(chosen, fp16=True, fp16_io=True).format_options == {
        "tflite_layout": "nchw", "executorch_max_batch": 8, "fp16_io": True}  # added to what was chosen


def test_the_runtime_table_answers_what_bench_asks():
    from cnnexport.runtimes import CUDA_RUNTIMES, FIXES_BATCH, RUNTIME_TABLE

    assert set(FIXES_BATCH) == {"onnxruntime", "openvino", "tensorrt"}
    assert set(CUDA_RUNTIMES) == {"onnxruntime", "tensorrt", "torch", "torch-compile", "aoti"}
    assert [r.name for r in RUNTIME_TABLE.values() if r.takes_device] == ["aoti"]
    assert RUNTIME_TABLE["tensorrt"].devices == ("cuda",) and RUNTIME_TABLE["onnxruntime"].cuda_eps == ("cuda", "tensorrt")
    assert {r.input_shape for r in RUNTIME_TABLE.values()} == {None, "fill", "full"}
    for runtime in RUNTIME_TABLE.values():  # every adapter the table names exists and is that runtime's
        if runtime.adapter:
            module, cls = runtime.adapter.split(":")
            adapter = getattr(__import__(f"cnnexport.runtimes.{module}", fromlist=[cls]), cls)
            assert adapter.runtime == runtime.name

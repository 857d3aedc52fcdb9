"""What several commands share: option parsers (input size, lists), one flag per format, the
functions the CLI hands to bench and the study (export, plain export, costs, MACs), --save."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from ..exporter.formats import ALWAYS, FORMAT_OPTIONS, FORMATS, bf16_formats, fp16_formats, int8_formats
from ..errors import OutputError, UnknownModelError, UsageError
from ..listopt import parse_list


# quantize_ort.METHODS, spelled out so that --help does not import numpy
CALIB_METHODS = ("minmax", "entropy", "percentile")


MAX_INPUT_DIM = 16384

#: --trust-pickle, on every command that loads a model
trust_pickle_option = click.option(
    "--trust-pickle", is_flag=True,
    help="Unpickle a MODEL or --weights file that holds Python objects (a whole torch.save(model), Ultralytics' "
         ".pt): it runs the code the file names, so only for files you trust.")


def parse_input_size(text: str, channels: int | None) -> tuple[int | None, int, int]:
    """'224' -> (C, 224, 224); '224,192' or '224x192' -> (C, 224, 192); '1,32,32' -> (1, 32, 32).
    ``channels`` None leaves C to the model file (bench on files)."""
    import re

    if not re.fullmatch(r"\s*\d+(\s*[x,]\s*\d+){0,2}\s*", text):
        raise UsageError(f"bad --input-size '{text}': give H, HxW or C,H,W with positive integers, e.g. 224 or "
                         "3,224,224")
    dims = [int(p) for p in re.split(r"[x,]", text.replace(" ", ""))]
    if any(d < 1 or d > MAX_INPUT_DIM for d in dims):
        raise UsageError(f"bad --input-size '{text}': each dimension must be 1..{MAX_INPUT_DIM}")
    if len(dims) == 1:
        return channels, dims[0], dims[0]
    if len(dims) == 2:
        return channels, dims[0], dims[1]
    return dims[0], dims[1], dims[2]


def format_flags(command):
    """One flag per row of ``FORMATS`` (--onnx, --openvino, ...), gathered into ``formats``: ONNX first
    (always written), then the others in the table's order."""
    def gather(**kwargs):
        chosen = [ALWAYS] + [f for f in FORMATS if f != ALWAYS and kwargs.pop(f"want_{f}")]
        kwargs.pop(f"want_{ALWAYS}")
        return command(formats=chosen, **kwargs)

    gather = functools.update_wrapper(gather, command)
    for fmt in reversed(FORMATS.values()):
        gather = click.option(f"--{fmt.name}", f"want_{fmt.name}", is_flag=True, help=fmt.flag_help)(gather)
    return gather


def format_options(command):
    """One option per ``FormatOption`` of the table (--tflite-layout, --executorch-max-batch, ...), gathered
    into ``format_options``: the ones typed on the command line, as ``export()`` takes them. Each applies
    only with its format's flag (and its precision flag, where it names one): typed without, it is refused
    (``refuse_unused_format_options``)."""
    def gather(**kwargs):
        from click.core import ParameterSource

        ctx = click.get_current_context()
        given = {}
        for name in FORMAT_OPTIONS:
            value = kwargs.pop(name)
            if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
                given[name] = value
        return command(format_options=given, **kwargs)

    gather = functools.update_wrapper(gather, command)
    for _fmt, option in reversed(FORMAT_OPTIONS.values()):
        if option.kind == "flag":
            gather = click.option(option.cli_flag, option.name, is_flag=True, help=option.help)(gather)
        else:
            kind = click.Choice(option.choices) if option.kind == "choice" else click.IntRange(option.low, option.high)
            gather = click.option(option.cli_flag, option.name, type=kind, default=option.default,
                                  show_default=option.default is not None, metavar=option.metavar,
                                  help=option.help)(gather)
    return gather


def refuse_unused_format_options(given: dict, formats: list[str], precisions: dict[str, bool]) -> None:
    """A format option typed without its format's flag, or without the precision flag it needs
    (``precisions``: fp16/bf16/int8 -> given), is refused in one line: silently ignored, the user would
    believe it applied."""
    for name in given:
        fmt, option = FORMAT_OPTIONS[name]
        if fmt.name not in formats:
            needed = f"--{fmt.name}"
        elif option.needs and not precisions.get(option.needs):
            needed = f"--{option.needs}"
        else:
            continue
        raise UsageError(f"{option.cli_flag} applies only with {needed}: add {needed}, or leave {option.cli_flag} out")


# onnxruntime may be written ort; the runtimes table (cnnexport.runtimes) is not imported for --help: it
# would pull numpy in
RUNTIME_HELP = ", ".join([f.runtime for f in FORMATS.values()] + ["torch", "torch-compile"])


INT8_HELP = ("Also write the int8 file of every format that has one (" + ", ".join(
    f"{f.file_name('<model>', 'int8')}" + ("" if f.name == ALWAYS else f" with --{f.name}") for f in int8_formats())
    + "), calibrated on --calib.")


FP16_HELP = ("Also write the fp16 file of every format that has one (" + ", ".join(
    f"{f.file_name('<model>', 'fp16')}" + ("" if f.name == ALWAYS else f" with --{f.name}") for f in fp16_formats())
    + "), checked against PyTorch by fp16's own rule.")


BF16_HELP = ("Also write the bf16 file of every format that has one (" + ", ".join(
    f"{f.file_name('<model>', 'bf16')} with --{f.name}" for f in bf16_formats())
    + ": computed in bf16; OpenVINO's needs a CPU with AVX512-BF16 or AMX-BF16), checked by bf16's own rule.")


def refuse_unused_options(needs: dict[str, tuple[str, bool]]) -> None:
    """Every option that only means something beside another (``needs``: parameter -> (the flag it needs,
    whether that flag is given)) and was typed without it is refused, in one line: silently ignored, the
    user would believe it applied."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    for param in ctx.command.params:
        if param.name in needs and not needs[param.name][1] and ctx.get_parameter_source(param.name) in (
                ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            flag = needs[param.name][0]
            raise UsageError(f"{param.opts[0]} applies only with {flag}: add {flag}, or leave {param.opts[0]} out")


def keep_float_list(value: str) -> tuple[str, ...]:
    return tuple(parse_list(value, "--keep-float", "give first, last, depthwise, auto or node-name globs, comma-separated")) if value.strip() else ()


def int_list(text: str, option: str) -> list[int]:
    return parse_list(text, option, "give comma-separated integers 1..4096, e.g. 1,2", item=int,
                      valid=lambda v: 1 <= v <= 4096)


def load_artifact(path: str, runtime: str | None, threads: int | None = None, batch: int | None = None):
    """``batch``: compile a dynamic batch axis static at it (ONNX Runtime, OpenVINO), as bench does."""
    from ..runtimes import load_at_batch

    return load_at_batch(path, runtime, threads, batch)


def files_of_folders(targets) -> list[str]:
    """Each export folder among ``targets`` replaced by its model files: the ones its report.json lists that are
    still there, else every file in it a runtime reads by its extension; a folder holding none is named. Files
    are kept as typed."""
    from ..runtimes import runtime_for

    out = []
    for target in targets:
        folder = Path(target)
        if not folder.is_dir():
            out.append(target)
            continue
        try:
            listed = [Path(a["path"]).name for a in json.loads((folder / "report.json").read_text())["artifacts"]]
        except (OSError, ValueError, TypeError, KeyError):
            listed = []
        files = [str(folder / n) for n in listed if (folder / n).is_file()] or sorted(
            str(p) for p in folder.iterdir() if p.is_file() and runtime_for(p))
        if not files:
            raise UsageError(f"'{target}' is a folder that holds no model file (none a runtime reads by its extension): "
                             "give an export's folder, or the files")
        out += files
    return out


def save_json(path: str, result: dict) -> None:
    """``--save``: the JSON result, written atomically."""
    from .._atomic import write_json

    try:
        write_json(Path(path), result)
    except OSError as exc:
        raise OutputError(f"cannot write '{path}': {exc.strerror or exc}; choose a writable path") from None


def export_fn():
    """The export pipeline, which the CLI hands to bench and the study (they never import it)."""
    from ..exporter.pipeline import export

    return export


def plain_export_fn():
    """Each runtime's own converter on the module (``bench --plain``)."""
    from ..exporter.plain import plain_export

    return plain_export


def float_list(text: str | None, option: str) -> tuple[float, ...] | None:
    if not text:
        return None
    return tuple(parse_list(text, option, "give comma-separated numbers, e.g. 0.485,0.456,0.406", item=float))


def read_json(path: str) -> dict:
    try:
        result = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"'{path}' does not exist; give the JSON files that cnnexport eval --save wrote") from None
    except (OSError, ValueError):
        result = None
    if not isinstance(result, dict) or not {"models", "data"} <= set(result):
        raise UsageError(f"'{path}' is not a cnnexport eval JSON result (cnnexport eval --save writes one)")
    return result


def refuse_exported_file(spec: str) -> None:
    """MODEL (or --model) given an exported file, model.onnx: one line naming the commands that take files."""
    from ..runtimes import runtime_for

    runtime = runtime_for(spec)
    if runtime:
        raise UnknownModelError(f"'{spec}' names an exported file ({runtime}), not a model to export: verify, bench, "
                                "eval and quantize take files (cnnexport verify FILE); MODEL names the PyTorch model, "
                                "a registry name, timm:NAME or package.module:callable")

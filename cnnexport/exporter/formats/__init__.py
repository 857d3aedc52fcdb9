"""The formats cnnexport writes: one module per format, one row per format in ``FORMATS``.

Every other part reads this table: the pipeline (what to convert, quantize and how to load it for
verification), ``bench`` and the study (which runtime measures which file), the CLI (its per-format
flags, options, choices and help text) and the coverage benchmark. A format's own options (TFLite's
layout, ExecuTorch's dynamic batch) are ``FormatOption`` entries of its row: ``export()``'s keywords,
the CLI's flags and ``ConvertSource.option`` all come from them. None of them branches on a format's name.

Each format module holds the same functions:

- ``convert(source: ConvertSource, dst: Path) -> Artifact``: write the fp32 file(s), ``dst`` being
  the main one, from the prepared module or from the ONNX file (``Format.source``);
- ``quantize(src, dst: Path, calibration, options: Int8Options, layout: str) -> dict``: the int8 file,
  returning what was done; ``src`` is what ``Format.int8_from`` names (the ONNX file, the format's own
  fp32 file, or the ``ConvertSource`` for a quantizer that starts from the module); an
  ``artifact_details`` entry, if any, goes to the int8 file's report entry instead (ExecuTorch's
  delegation and graph changes); ``None`` when the format has no int8;
- ``describe_int8(info) -> str``: one line on how the int8 file was made (``None`` with no int8);
- ``qat_int8(source: ConvertSource, dst: Path) -> dict``: only where ``Format.qat_int8``: the int8 file of a
  model trained with quantization (QAT), from its trained scales, returning what was done (``exporter.qat``);
- ``half(source: ConvertSource, fp32: Artifact, dst: Path) -> Artifact``: the fp16 file, only where
  ``Format.fp16``, from the format's fp32 artifact or from ``source``;
- ``bf16(source: ConvertSource, fp32: Artifact, dst: Path) -> Artifact`` and ``bf16_preflight() -> None``:
  only where ``Format.bf16``: the file computed in bf16 on purpose, and the check, before any work, that
  this machine can compute (and so verify) it;
- ``plain(module, x, path) -> None``: optional: the file a user gets from the runtime's own converter with its
  defaults, for ``bench --plain`` (``exporter.plain``);
- ``runtime_options(artifact, batch_shape) -> dict``: the options its runtime adapter needs to load
  the file for verification (TFLite's layout, ncnn's input shape);
- ``preflight() -> None``: only where ``Format.needs_cuda`` or its device option (``FormatOption.device``) can
  name cuda: raises before any work when the format cannot be written on this machine (``Format.on_cuda``).

This module is pure data (no torch, no numpy): ``bench`` and the CLI's ``--help`` read it. The
format modules import their converters, and torch where needed, only when called.
``cnnexport.runtimes`` keeps its own suffix map (it never imports the exporter); a test checks that
the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class FormatOption:
    """An option only one format has (its row's ``options``). ``export()`` takes it as the keyword ``name``,
    the CLI as ``cli_flag``, and the format's converter reads it with ``ConvertSource.option(name)``."""
    name: str
    kind: str               # "choice", "int" (low..high, or None: not set) or "flag"
    default: Any
    help: str
    flag: str = ""          # the CLI's spelling where it is not --<name with dashes>
    choices: tuple[str, ...] = ()
    low: int | None = None
    high: int | None = None
    needs: str = ""         # a precision it applies to beside its format (fp16_io: "fp16")
    metavar: str | None = None
    dynamic_batch: bool = False  # it gives a static-batch format a dynamic batch 1..N
    device: bool = False    # it names the device the file is compiled for (cpu or cuda): bench --device sets it

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def takes(self, value) -> bool:
        """Whether ``value`` is one this option takes."""
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "int":
            return value is None or (isinstance(value, int) and not isinstance(value, bool)
                                     and self.low <= value <= self.high)
        return isinstance(value, bool)

    def values_text(self) -> str:
        """What it takes, in words: ``2..4096``, ``nhwc or nchw``."""
        return f"{self.low}..{self.high}" if self.kind == "int" else " or ".join(self.choices) or "on or off"


@dataclass(frozen=True)
class Format:
    name: str               # the CLI flag (--openvino) and the report's "format"
    label: str              # how people write it
    runtime: str            # the runtimes/ adapter that loads it
    runtime_label: str      # how people write the runtime
    suffixes: tuple[str, ...]  # the files one artifact is made of, the loaded one first
    source: str             # what it converts from: "onnx" (the exported ONNX file) or "module" (prepared)
    flag_help: str          # the export command's help for its flag
    int8_from: str | None = None  # what its int8 quantizer starts from: "onnx", "self" (its fp32 file),
    #                               "module" (the prepared module; no `cnnexport quantize FILE`), "onnx_int8"
    #                               (the ConvertSource with the ONNX int8 file in place of the fp32 one), None
    # how its int8 file comes from a QAT model's trained scales (the module's ``qat_int8``): "twin" (the
    # ConvertSource's module is the QAT model's int8 twin, exporter.qat), "onnx_int8" (its onnx_path is the QAT
    # model's QDQ ONNX file), None (its quantizer calibrates scales of its own: no int8 file from a QAT model)
    qat_int8: str | None = None
    int8_inputs: tuple[str, ...] = ()  # the fp32 files `cnnexport quantize` takes for it
    int8_help: str = ""     # the quantize command's help for its --runtime choice
    int8_extras: tuple[str, ...] = ()  # options only its quantizer has: "keep_float", "per_layer" (SQNR table)
    fp16: bool = False      # export --fp16 writes its fp16 file (the module's ``half``)
    bf16: bool = False      # export --bf16 writes its bf16 file (the module's ``bf16``)
    needs_cuda: bool = False  # written only on a machine with a CUDA GPU (the module's ``preflight`` checks)
    # the precision the studies also measure it at on a GPU, as it is deployed there (TensorRT: an fp16 engine)
    gpu_study_precision: str | None = None
    # the code that loads a file as it was verified, where the runtime's own default may compute otherwise
    load_as_verified: str = ""
    options: tuple[FormatOption, ...] = ()  # options only this format has (export(), the CLI, ConvertSource)

    @property
    def precisions(self) -> tuple[str, ...]:
        return (("fp32",) + (("fp16",) if self.fp16 else ()) + (("bf16",) if self.bf16 else ())
                + (("int8",) if self.int8_from else ()))

    def file_name(self, stem: str, precision: str = "fp32") -> str:
        """``resnet50`` -> ``resnet50.xml``, ``resnet50.int8.xml``, ``resnet50.fp16.mnn``."""
        return f"{stem}{'' if precision == 'fp32' else '.' + precision}{self.suffixes[0]}"

    def device_option(self) -> FormatOption | None:
        """Its option naming the device the file is compiled for, if it has one (AOTInductor's --device)."""
        return next((o for o in self.options if o.device), None)

    def on_cuda(self, options: dict) -> bool:
        """Whether a file of this format, with the format ``options`` given, is built on (and for) a CUDA GPU."""
        option = self.device_option()
        return self.needs_cuda or (option is not None and options.get(option.name, option.default) == "cuda")

    def module(self) -> ModuleType:
        """The format's module (imported on first use: it may import torch and its converter)."""
        return import_module(f"{__name__}.{self.name}")


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("onnx", "ONNX", "onnxruntime", "ONNX Runtime", (".onnx",), "onnx",
           "Write <model>.onnx (always written).",
           int8_from="onnx", qat_int8="twin", int8_inputs=(".onnx",), int8_help="onnxruntime: QDQ .int8.onnx",
           int8_extras=("keep_float", "per_layer"), fp16=True,
           options=(FormatOption("fp16_io", "flag", False, "The fp16 ONNX file takes and returns fp16 too (default: "
                                 "fp32 I/O, so callers need not change).", needs="fp16"),)),
    Format("openvino", "OpenVINO", "openvino", "OpenVINO", (".xml", ".bin", ".config.json"), "onnx",
           "Also write OpenVINO IR (<model>.xml + .bin, and .config.json: the CPU precision it was verified at).",
           int8_from="onnx", qat_int8="onnx_int8", int8_inputs=(".onnx", ".xml"),
           int8_help="openvino: NNCF .int8.xml + .bin", fp16=True,
           bf16=True,
           load_as_verified='core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})'),
    Format("tflite", "TFLite", "tflite", "TFLite", (".tflite",), "module",
           "Also write <model>.tflite (litert-torch).",
           int8_from="self", int8_inputs=(".tflite",), int8_help="tflite: full-integer .int8.tflite", fp16=True,
           options=(FormatOption("tflite_layout", "choice", "nhwc", "Input layout of the .tflite file.",
                                 choices=("nhwc", "nchw")),)),
    Format("ncnn", "ncnn", "ncnn", "ncnn", (".ncnn.param", ".ncnn.bin"), "module",
           "Also write <model>.ncnn.param + .bin (pnnx)."),
    Format("executorch", "ExecuTorch", "executorch", "ExecuTorch", (".pte",), "module",
           "Also write <model>.pte (ExecuTorch, XNNPACK-delegated; static batch).",
           int8_from="module",
           options=(FormatOption("executorch_max_batch", "int", None, "A dynamic batch 1..N for the .pte program "
                                 "(default: the export's batch, static).", low=2, high=4096, metavar="N",
                                 dynamic_batch=True),)),
    Format("mnn", "MNN", "mnn", "MNN", (".mnn",), "onnx",
           "Also write <model>.mnn (MNN's converter).",
           int8_from="self", int8_inputs=(".mnn",), int8_help="mnn: MNN int8 .int8.mnn", fp16=True),
    Format("aoti", "AOTInductor", "aoti", "AOTInductor", (".pt2",), "module",
           "Also write <model>.pt2 (torch.export + AOTInductor: compiled kernels and the weights in one "
           "package, loaded by PyTorch without the model's code; the CPU's C++ or, with --device cuda, the GPU's "
           "Triton kernels; needs a C++ compiler; static batch).",
           fp16=True, bf16=True,
           options=(FormatOption("aoti_max_batch", "int", None, "A dynamic batch 1..N for the .pt2 package "
                                 "(default: the export's batch, static).", low=2, high=4096, metavar="N",
                                 dynamic_batch=True),
                    FormatOption("aoti_device", "choice", "cpu", "The device the .pt2 package is compiled for and "
                                 "runs on (cuda: an NVIDIA GPU, PyTorch with CUDA).", flag="--device",
                                 choices=("cpu", "cuda"), device=True))),
    Format("tensorrt", "TensorRT", "tensorrt", "TensorRT", (".engine", ".engine.json"), "onnx",
           "Also write <model>.engine (TensorRT; needs an NVIDIA GPU, and runs only on its GPU model).",
           int8_from="onnx_int8", fp16=True, needs_cuda=True, gpu_study_precision="fp16",
           options=(FormatOption("engine_max_batch", "int", None, "The TensorRT engine's largest batch (optimisation "
                                 "profile 1..N, tuned for the export's batch; default 64).", flag="--tensorrt-max-batch",
                                 low=1, high=4096, metavar="N"),)),
)}

#: option name -> (its format, the option)
FORMAT_OPTIONS: dict[str, tuple[Format, FormatOption]] = {o.name: (f, o) for f in FORMATS.values() for o in f.options}


ALWAYS = "onnx"  # every export writes it: the other formats start from it or are checked beside it


def by_runtime(runtime: str) -> Format | None:
    """The format a runtime loads (None for one with no file format of its own, e.g. torch)."""
    return next((f for f in FORMATS.values() if f.runtime == runtime), None)


def for_file(path: str | Path) -> Format | None:
    """The format of a file, from its name (``m.ncnn.param`` -> ncnn, ``m.int8.onnx`` -> onnx)."""
    name = Path(path).name.lower()
    return next((f for f in FORMATS.values() if name.endswith(f.suffixes[0])), None)


def artifact_files(path: str | Path) -> list[Path]:
    """The files of the artifact ``path`` loads that exist (``m.int8.xml`` -> m.int8.xml, m.int8.bin), it first."""
    path, fmt = Path(path), for_file(path)
    if fmt is None:
        return [path] if path.is_file() else []
    stem = path.name[:len(path.name) - len(fmt.suffixes[0])]
    return [p for p in (path.with_name(stem + s) for s in fmt.suffixes) if p.is_file()]


def precision_of(path: str | Path) -> str:
    """fp32, fp16, bf16 or int8, from a cnnexport file name (``m.int8.onnx``, ``m.int8-auto.onnx``,
    ``m.fp16.mnn``, ``m.bf16.xml``)."""
    name = Path(path).name
    return next((p for p in ("int8", "fp16", "bf16") if f".{p}." in name or f".{p}-" in name), "fp32")


def int8_formats() -> list[Format]:
    """Formats with an int8 file (from an export)."""
    return [f for f in FORMATS.values() if f.int8_from]


def fp16_formats() -> list[Format]:
    """Formats with an fp16 file (export --fp16)."""
    return [f for f in FORMATS.values() if f.fp16]


def bf16_formats() -> list[Format]:
    """Formats with a bf16 file (export --bf16)."""
    return [f for f in FORMATS.values() if f.bf16]


def file_int8_formats() -> list[Format]:
    """Formats whose int8 file `cnnexport quantize` makes from an fp32 file."""
    return [f for f in FORMATS.values() if f.int8_inputs]


@dataclass
class Artifact:
    """Files of one exported artifact; the first is the one a runtime loads."""
    format: str
    files: list[Path]
    runtime: str
    precision: str = "fp32"
    layout: str = "NCHW"
    graph_changes: list[str] = field(default_factory=list)  # runtime-specific rewrites (xnnpack_rewrites)
    details: dict = field(default_factory=dict)  # what the format adds to its report entry (e.g. delegation)

    def entry(self, final_dir: Path) -> dict:
        main = self.files[0]
        return {"format": self.format, "precision": self.precision, "path": str(final_dir / main.name),
                "size_bytes": sum(f.stat().st_size for f in self.files),
                "files": [f.name for f in self.files], "runtime": self.runtime, "layout": self.layout,
                "graph_changes": self.graph_changes,
                **({"load_as_verified": FORMATS[self.format].load_as_verified}
                   if self.format in FORMATS and FORMATS[self.format].load_as_verified else {}),
                **self.details}


@dataclass(frozen=True)
class ConvertSource:
    """What a converter starts from: the prepared module and the checked, simplified ONNX file."""
    prepared: Any           # torch.nn.Module, eval, BatchNorm folded
    onnx_path: Path
    shape: tuple[int, ...]  # NCHW, with the batch
    options: dict = field(default_factory=dict)  # the formats' own options (FORMAT_OPTIONS) that were given

    def option(self, name: str):
        """A format option's value: as given, else its row's default."""
        return self.options[name] if name in self.options else FORMAT_OPTIONS[name][1].default


@dataclass(frozen=True)
class Int8Options:
    """Quantizer settings; each format reads the ones it has (ONNX Runtime has them all)."""
    method: str = "minmax"
    per_channel: bool = True
    reduce_range: bool | None = None  # None: decided from the CPU
    keep_float: tuple[str, ...] = ()
    min_cosine: float = 0.99          # --keep-float auto's target
    # --keep-float auto aims at a top-1 drop of at most max_drop points instead, where the calibration
    # samples have labels (calibration_labels: one class index per sample)
    max_drop: float | None = None
    calibration_labels: Any = None

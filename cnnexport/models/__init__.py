"""The model zoo: a registry of builders, one file per family.

>>> from cnnexport.models import create_model, list_models
>>> list_models("resnet*")
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from torch import nn

# Importing a family's file registers its builders.
from . import alexnet, densenet, inception, lenet, mobilenet, resnet, shufflenet, squeezenet, vgg  # noqa: F401
from ..errors import CnnexportError, UnknownModelError, UsageError, WeightsError, first_line
from .timm_source import (HUB_CONFIG, create_timm_from_folder, create_timm_model, hub_config, is_timm_spec,
                          retry_with_torchvision)
from .registry import ModelInfo, is_registered, list_models, model_info, register_model
from .weights import load_weights, read_state_dict, unpickle_trusted

__all__ = ["create_model", "bundled_weights", "bundled_input_size", "model_input_size", "list_models", "model_info",
           "register_model", "ModelInfo", "load_model", "import_callable", "read_state_dict", "load_weights"]


@dataclass(frozen=True)
class BundledWeights:
    """Weights trained by this project (scripts/train_digits.py) and shipped in models/weights/."""

    file: str
    num_classes: int
    input_size: tuple[int, int, int]
    # How the training images were made into inputs (cnnexport.calib.Preprocess's fields): the whole
    # image (crop_fraction 1) scaled to [-1, 1] for the digits (cnnexport.calib.digits.preprocess).
    preprocess: tuple[tuple[str, object], ...] = ()


_DIGITS_PREPROCESS = (("crop_fraction", 1.0), ("mean", (0.5,)), ("std", (0.5,)))
BUNDLED_WEIGHTS = {
    ("lenet5", "digits"): BundledWeights("lenet5_digits.safetensors", 10, (1, 32, 32), _DIGITS_PREPROCESS),
    # The depthwise network: the digits upsampled to 64x64 (at 32x32 its last stage would see 1x1).
    ("shufflenet_v2_x0_5", "digits"): BundledWeights("shufflenet_v2_x0_5_digits.safetensors", 10, (3, 64, 64),
                                                     _DIGITS_PREPROCESS),
}
_WEIGHTS_DIR = Path(__file__).parent / "weights"


def bundled_weights(name: str) -> list[str]:
    """Tags of the shipped weights for ``name`` (pass one as ``weights=``, e.g. ``'digits'``)."""
    return sorted(tag for model, tag in BUNDLED_WEIGHTS if model == name)


def bundled_input_size(name: str, weights) -> tuple[int, int, int] | None:
    """The input size the shipped weights ``weights`` of ``name`` were trained at, if they are shipped."""
    entry = BUNDLED_WEIGHTS.get((name, weights)) if isinstance(weights, str) else None
    return entry.input_size if entry else None


def model_input_size(spec: str, module: nn.Module | None = None, weights=None) -> tuple[int, ...]:
    """The input (C, H, W) ``spec`` takes unless told otherwise: its shipped weights' size or the registry's for
    a zoo name; timm's config (``cnnexport_input_size``, set by ``load_model``) for timm:NAME; else 224x224
    with the channels of the model's first convolution (3 when it has none)."""
    if is_registered(spec):
        return bundled_input_size(spec, weights) or model_info(spec).input_size
    given = getattr(module, "cnnexport_input_size", None)
    if given:
        return tuple(given)
    return (_input_channels(spec, module) if module is not None else 3, 224, 224)


def _input_channels(spec: str, module: nn.Module) -> int:
    """The channels a user's model takes: its first convolution's input channels (a grayscale or
    multispectral model), else 3. A model with only 1-D or 3-D convolutions is refused: its input is no image."""
    convs = [m for m in module.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    planar = [m for m in convs if isinstance(m, nn.Conv2d)]
    if convs and not planar:
        kind = type(convs[0]).__name__
        raise UsageError(f"'{spec}' convolves in {kind[-2]}-D ({kind}, no Conv2d): cnnexport exports image "
                         "classifiers, whose input is N x C x H x W; export a 1-D or 3-D model with "
                         "torch.onnx.export directly")
    return planar[0].in_channels if planar and planar[0].in_channels > 0 else 3  # a lazy conv's is 0


def _ema_without_weights() -> UsageError:
    return UsageError("--use-ema picks a checkpoint's EMA weights: pass the checkpoint with --weights")


def create_model(name: str, num_classes: int | None = None, weights: str | os.PathLike | Mapping | None = None,
                 use_ema: bool = False, trust_pickle: bool = False, **kwargs) -> nn.Module:
    """Build a registered model in eval mode, optionally loading weights: a state_dict mapping, a
    .pt/.pth/.safetensors path, or the tag of weights shipped with cnnexport (``bundled_weights(name)``).
    The model carries its registry name as ``cnnexport_name``, and shipped weights the preprocessing
    they were trained with as ``cnnexport_preprocess`` (normalisation fields; ImageNet's otherwise).
    ``use_ema``: a checkpoint's EMA weights (``read_state_dict``); what loading noted is ``cnnexport_notes``.
    ``trust_pickle``: a checkpoint that pickles Python objects is unpickled (``read_state_dict``)."""
    if use_ema and weights is None:
        raise _ema_without_weights()
    info = model_info(name)
    preprocess = {}
    if isinstance(weights, str) and (name, weights) in BUNDLED_WEIGHTS:
        entry = BUNDLED_WEIGHTS[(name, weights)]
        weights, num_classes = _WEIGHTS_DIR / entry.file, num_classes or entry.num_classes
        preprocess = dict(entry.preprocess)
    elif isinstance(weights, str) and not Path(weights).exists() and weights in {tag for _, tag in BUNDLED_WEIGHTS}:
        owners = sorted(m for m, tag in BUNDLED_WEIGHTS if tag == weights)
        raise WeightsError(f"'{weights}' weights ship for {', '.join(owners)} only, not {name}; pass a "
                           f".pt/.pth/.safetensors state_dict for {name} to --weights")
    if weights is not None:
        kwargs = {**info.weights_kwargs, **kwargs}
    model = info.builder(num_classes=num_classes or info.num_classes, **kwargs)
    notes: list[str] = []
    if weights is not None:
        sd = weights if isinstance(weights, Mapping) else read_state_dict(weights, use_ema=use_ema, notes=notes,
                                                                          trust_pickle=trust_pickle)
        load_weights(model, sd, source=f"weights for {name}")
    if notes:
        model.cnnexport_notes = notes
    model.cnnexport_name = name  # export() names the files after it: resnet50.onnx, not resnet.onnx
    if preprocess:
        model.cnnexport_preprocess = preprocess
    return model.eval()


def load_model(spec: str, num_classes: int | None = None, weights: str | os.PathLike | None = None,
               use_ema: bool = False, trust_pickle: bool = False) -> nn.Module:
    """``_load_model``'s model, a QAT model's observers switched off: cnnexport never trains, and an observer left
    on moves the model's scales with every batch evaluated or timed (torch.ao's fake-quantize modules observe in
    eval mode too)."""
    model = _load_model(spec, num_classes, weights, use_ema, trust_pickle)
    refuse_exported_program(model)
    if any(type(m).__module__.startswith("torch.ao.quantization.fake_quantize") for m in model.modules()):
        from torch.ao.quantization import disable_observer

        model.apply(disable_observer)
    return model


def _load_model(spec: str, num_classes: int | None = None, weights: str | os.PathLike | None = None,
                use_ema: bool = False, trust_pickle: bool = False) -> nn.Module:
    """A registry name (in eval mode), ``timm:NAME`` (timm's architecture, random weights unless
    ``weights``), a timm model folder (config.json and its weights: a Hugging Face Hub snapshot),
    ``package.module:callable`` returning an ``nn.Module``, in
    the mode the callable returned it (``prepare`` records it and exports in eval mode), or a
    TorchScript file (``torch.jit.save``; its weights inside it). The current folder is on the import
    path for ``package.module``, as with ``python -m``. ``use_ema``: the checkpoint's EMA weights
    (``read_state_dict``). ``trust_pickle``: a file that pickles a whole model (``torch.save(model)``,
    Ultralytics' checkpoints) is a model too, and a checkpoint that pickles Python objects is read; both
    run the code the file names."""
    if not is_registered(spec) and Path(spec).is_dir() and hub_config(spec) is not None:
        if weights is not None:
            raise UsageError(f"'{spec}' is a timm model folder: its weights are inside it; leave out --weights")
        return create_timm_from_folder(spec, num_classes=num_classes, use_ema=use_ema, trust_pickle=trust_pickle)
    if use_ema and weights is None and not (trust_pickle and Path(spec).is_file()):  # a pickled model's own 'ema'
        raise _ema_without_weights()
    if is_registered(spec) or ":" not in spec:
        if not is_registered(spec):
            if is_torchscript_file(spec):
                return load_torchscript(spec, num_classes=num_classes, weights=weights)
            if trust_pickle and Path(spec).is_file():
                return load_pickled_model(spec, num_classes=num_classes, weights=weights, use_ema=use_ema)
            refuse_a_file(spec)
        return create_model(spec, num_classes=num_classes, weights=weights, use_ema=use_ema, trust_pickle=trust_pickle)
    if is_timm_spec(spec):
        return create_timm_model(spec, num_classes=num_classes, weights=weights, use_ema=use_ema,
                                 trust_pickle=trust_pickle)
    factory = import_callable(spec)
    kwargs = {"num_classes": num_classes} if num_classes is not None else {}
    model = call_factory(spec, factory, kwargs) if callable(factory) and not isinstance(factory, nn.Module) \
        else factory
    if not isinstance(model, nn.Module):
        raise UnknownModelError(f"'{spec}' returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        notes: list[str] = []
        load_weights(model, read_state_dict(weights, use_ema=use_ema, notes=notes, trust_pickle=trust_pickle),
                     source=f"weights for {spec}")
        if notes:
            model.cnnexport_notes = notes
    return model


def load_pickled_model(path: str | os.PathLike, num_classes: int | None = None,
                       weights: str | os.PathLike | None = None, use_ema: bool = False) -> nn.Module:
    """A whole model pickled by ``torch.save(model)``, or the module a checkpoint dict holds (``model``,
    Ultralytics' ``ema`` with ``use_ema``), unpickled with its code run (--trust-pickle), named after its file."""
    given = [flag for flag, v in (("--weights", weights), ("--num-classes", num_classes)) if v is not None]
    if given:
        raise UsageError(f"'{path}' pickles a whole model: its weights and classes are inside it; leave out "
                         f"{' and '.join(given)}")
    obj = unpickle_trusted(Path(path))
    keys = ("ema", "model_ema") if use_ema else ("model", "module", "net", "ema", "model_ema")
    if isinstance(obj, Mapping):
        obj = next((obj[k] for k in keys if isinstance(obj.get(k), nn.Module)), obj)
    if not isinstance(obj, nn.Module):
        what = "EMA model (an 'ema' or 'model_ema' module)" if use_ema else "model"
        raise UnknownModelError(f"'{path}' holds no pickled {what} ({type(obj).__name__}): give its architecture "
                                "as MODEL and the file to --weights")
    obj.cnnexport_name = Path(path).stem  # the files are named after it: best.onnx for best.pt
    return obj


#: What checkpoints are called: given as MODEL, they are named as such rather than as an unknown model.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".tar", ".bin", ".safetensors", ".pkl")


def load_torchscript(path: str | os.PathLike, num_classes: int | None = None,
                     weights: str | os.PathLike | None = None) -> nn.Module:
    """A ``torch.jit.save`` archive, on the CPU, in eval mode, named after its file. Its weights are inside
    it, so ``num_classes`` and ``weights`` are refused."""
    import torch

    given = [flag for flag, v in (("--weights", weights), ("--num-classes", num_classes)) if v is not None]
    if given:
        raise UsageError(f"'{path}' is a TorchScript file: its weights and classes are inside it; leave out "
                         f"{' and '.join(given)}")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # a damaged archive, or one saved by a newer torch
        raise WeightsError(f"cannot load TorchScript file '{path}': {first_line(exc)}; is it complete, and saved by "
                           f"torch {torch.__version__.split('+')[0]} or older?") from None
    module.cnnexport_name = Path(path).stem  # the files are named after it: model.onnx for model.pt
    return module.eval()


def refuse_exported_program(model: nn.Module) -> None:
    """A module made by torch.export (``ExportedProgram.module()``, and so PT2E quantization's ``prepare_pt2e`` /
    ``convert_pt2e`` result) is refused in one line: torch replaces its ``eval()`` and ``train()`` with methods that
    raise, and every step here runs the model in eval mode. (An ordinary module never holds either in its own
    ``__dict__``.)"""
    if "eval" in vars(model) or "train" in vars(model):
        raise UsageError("the model is a torch.export program's module (ExportedProgram.module(), or PT2E "
                         "quantization's prepare_pt2e/convert_pt2e result), whose eval() torch disables: give "
                         "cnnexport the nn.Module it was captured from (for int8, that float model with --int8 "
                         "--calib), or lower a PT2E-quantized program to ExecuTorch yourself")


def refuse_a_file(spec: str) -> None:
    """MODEL given a file that is no model (a checkpoint): one line saying what to give instead, where
    "unknown model" would leave the user guessing. (An exported file, which only the runtimes know by its
    extension, is the CLI's to name: ``cli.options.refuse_exported_file``.)"""
    path = Path(spec)
    if path.is_dir():
        raise UnknownModelError(f"folder '{spec}' is no timm model folder (no {HUB_CONFIG} naming an architecture): "
                                "give the architecture as MODEL and the folder to --weights, e.g. cnnexport "
                                f"timm:resnet50 --weights {spec}")
    if path.suffix.lower() == ".py":
        builders = _builders_in(path)
        example = f"{spec}:{builders[0] if builders else 'build_net'}"
        found = f" (it defines {', '.join(builders[:5])})" if builders else ""
        raise UnknownModelError(f"'{spec}' is Python source: name the function or class in it that builds the "
                                f"model{found}, e.g. cnnexport {example}")
    if not (path.is_file() or path.suffix.lower() in CHECKPOINT_SUFFIXES):
        return
    raise UnknownModelError(f"'{spec}' is no model file cnnexport reads (a TorchScript archive is one): MODEL names "
                            "the architecture (a registry name, timm:NAME or package.module:callable) and --weights "
                            f"takes the checkpoint, e.g. cnnexport resnet50 --weights {spec}; a whole pickled model "
                            "(torch.save(model)) loads with --trust-pickle, if you trust the file")


def _builders_in(path: Path) -> list[str]:
    """Top-level classes and functions of a Python file, read without running it (classes first)."""
    import ast

    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return []
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    return classes + functions


def is_torchscript_file(path: str | os.PathLike) -> bool:
    """A torch.jit.save archive: a zip whose records hold the scripted code (``<archive>/code/``)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def call_factory(spec: str, factory, kwargs: dict):
    """``factory(**kwargs)``; a factory that needs other arguments, or raises, is the user's code failing:
    one line naming the factory and the exception (exit 2), not an internal error."""
    import inspect

    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        raise UnknownModelError(f"'{spec}' cannot be called with {', '.join(kwargs) or 'no arguments'} ({exc}); "
                                "name a function or class that builds the model from defaults, e.g. a "
                                "def build(): return Net(...) in your module") from None
    except ValueError:
        pass  # no signature to check (a builtin): the call says
    try:
        return retry_with_torchvision(lambda: factory(**kwargs))
    except CnnexportError:
        raise
    except Exception as exc:
        raise UnknownModelError(f"'{spec}' raised {type(exc).__name__} while building the model: "
                                f"{first_line(exc)}; fix it in your code (CNNEXPORT_DEBUG=1 shows where)") from exc


def import_callable(spec: str):
    """The object ``package.module:name`` or ``path/to/file.py:name`` names (a builder function or class, or a
    module instance). A file is imported as ``python path/to/file.py`` would run it: its folder first on the
    import path, so its own sibling imports work. Code that fails while importing is the user's: one line."""
    module_name, _, attr = spec.partition(":")
    is_file = is_source_file(module_name)
    try:
        module = retry_with_torchvision(
            lambda: _import_file(module_name) if is_file else _import_from_cwd(module_name))
    except ModuleNotFoundError as exc:
        top = module_name.split(".")[0]
        if not is_file and exc.name and exc.name.split(".")[0] == top:
            raise UnknownModelError(
                f"cannot import '{spec}': no module named '{exc.name}' in the current folder or on the import path; "
                f"run from the folder that holds '{top}', set PYTHONPATH to it, install your project "
                f"(pip install -e .), or give the file's path (path/to/{top}.py:{attr or 'build'})") from None
        raise UnknownModelError(f"'{module_name}' was found but its import failed: {exc}; install what it needs "
                                "(pip install ...) and retry") from None
    except ImportError as exc:
        raise UnknownModelError(
            f"cannot import '{spec}' ({exc}); use a registry name or an importable 'package.module:callable'"
        ) from None
    except CnnexportError:
        raise
    except SyntaxError as exc:
        where = f"{exc.filename}, line {exc.lineno}" if exc.filename else module_name
        raise UnknownModelError(f"'{module_name}' has a syntax error ({where}): {exc.msg}; fix it in your code"
                                ) from None
    except Exception as exc:  # the module's own code raised while it was imported
        raise UnknownModelError(f"'{module_name}' raised {type(exc).__name__} while being imported: "
                                f"{first_line(exc)}; fix it in your code (CNNEXPORT_DEBUG=1 shows where)") from exc
    if not attr or not hasattr(module, attr):
        import difflib

        defined = [name for name, value in vars(module).items() if not name.startswith("_") and callable(value)
                   and getattr(value, "__module__", None) == module.__name__]
        close = difflib.get_close_matches(attr, defined, n=1)
        hint = (f"did you mean '{module_name}:{close[0]}'?" if close else
                f"it defines {', '.join(defined[:5])}" if defined else
                "name a function or class that returns an nn.Module, e.g. 'package.module:build_net'")
        raise UnknownModelError(f"'{module_name}' has no '{attr}'; {hint}")
    return getattr(module, attr)


def is_source_file(module_name: str) -> bool:
    """``path/to/file.py`` (or any path with a folder in it), as opposed to a dotted module name."""
    return module_name.lower().endswith(".py") or "/" in module_name or os.sep in module_name


def _import_file(path: str):
    """The Python file at ``path`` as a module named after it, its folder first on ``sys.path``."""
    import importlib.util
    import sys
    import zlib

    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise UnknownModelError(f"no file '{path}' (from {os.getcwd()}); give the path of the .py file that "
                                "defines the model, e.g. models/net.py:Net")
    folder = str(file.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = file.stem
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) and Path(loaded.__file__).resolve() == file:
        return loaded
    if loaded is not None or not name.isidentifier():  # the name is another module's: keep both
        name = f"cnnexport_user_{zlib.crc32(str(file).encode()):08x}_" + "".join(
            c if c.isalnum() else "_" for c in file.stem)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import_from_cwd(module_name: str):
    """Import ``module_name`` with the current folder first on ``sys.path`` (a console script's
    ``sys.path[0]`` is its bin folder, not the folder the user runs it from)."""
    import sys

    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    return importlib.import_module(module_name)

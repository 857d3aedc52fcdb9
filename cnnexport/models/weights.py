"""Reading weights files safely and loading them into a model with named mismatches.

Only ``torch.load(weights_only=True)`` (no arbitrary unpickling) and safetensors are used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from ..errors import WeightsError, first_line

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net", "module")
# Where training scripts keep the exponential moving average of the weights: timm's train.py (state_dict_ema),
# timm's and others' model_ema, and EMA callbacks' ema_state_dict.
_EMA_KEYS = ("state_dict_ema", "model_ema", "ema_state_dict", "ema")  # ema: Ultralytics' EMA module (--trust-pickle)
# ... and the key prefix of an EMA copy held as a submodule beside the network (a LightningModule's model_ema)
_EMA_PREFIXES = ("model_ema.", "ema_model.", "ema.")
# Prefixes wrappers add to every key: DataParallel / DistributedDataParallel, and torch.compile's module.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
MAX_LISTED = 3


#: The weights file a folder is known to hold: a Hugging Face Hub snapshot's (timm's models on the Hub), in the
#: order transformers prefers, then the best checkpoint of a timm train.py output folder (beside last.pth.tar and
#: checkpoint-N.pth.tar).
KNOWN_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model_best.pth.tar")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".tar")


def weights_in_folder(folder: Path, notes: list[str] | None = None) -> Path:
    """The weights file in ``folder``: a Hub snapshot's ``model.safetensors`` (else ``pytorch_model.bin``), a timm
    training run's ``model_best.pth.tar``, or the folder's only checkpoint file; several candidates are named, not
    guessed."""
    known = [folder / name for name in KNOWN_WEIGHTS if (folder / name).is_file()]
    found = known[:1] or sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES)
    if len(found) == 1:
        if notes is not None:
            notes.append(f"weights read from {found[0]}")
        return found[0]
    if not found:
        raise WeightsError(f"folder '{folder}' holds no weights file ({', '.join(WEIGHT_SUFFIXES)}); pass the "
                           "state_dict file itself to --weights")
    raise WeightsError(f"folder '{folder}' holds {len(found)} weights files ({', '.join(p.name for p in found[:4])}"
                       f"{', ...' if len(found) > 4 else ''}); pass the one to load to --weights")


def read_state_dict(path: str | os.PathLike, *, use_ema: bool = False, notes: list[str] | None = None,
                    trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a state_dict from .pt/.pth/.bin (torch, weights only) or .safetensors, or from a folder that holds
    one (a Hugging Face Hub snapshot's ``model.safetensors``: ``weights_in_folder``).

    A checkpoint dict holding ``state_dict`` or ``model`` is unwrapped, and the prefixes wrappers add
    to every key are stripped: ``module.`` (DataParallel, DDP) and ``_orig_mod.`` (torch.compile).
    ``use_ema``: the checkpoint's EMA weights (``state_dict_ema``, ``model_ema``, ``ema_state_dict``), as
    timm's ``--use-ema``; without it, a checkpoint that holds them beside the weights adds a line saying so to
    ``notes``. ``trust_pickle``: a checkpoint that pickles Python objects (a whole ``torch.save(model)``,
    Ultralytics' checkpoints) is unpickled, running the code it names, and its modules' weights are read.
    """
    path = Path(path)
    if path.is_dir():
        path = weights_in_folder(path, notes)
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' does not exist; pass a .pt/.pth/.safetensors state_dict to --weights")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise WeightsError("reading .safetensors needs the safetensors package: pip install safetensors") from None
        try:
            obj = load_file(str(path))
        except Exception as exc:  # safetensors raises its own SafetensorError types
            raise WeightsError(f"weights file '{path}' is not a valid safetensors file ({first_line(exc)})") from None
    else:
        with open(path, "rb") as f:
            head = f.read(4)
        # torch.save writes a zip (PK..); its legacy format and plain pickles start with a protocol
        # byte (0x80). Anything else was never a checkpoint: do not let the unpickler guess.
        if not head.startswith((b"PK\x03\x04", b"\x80")):
            raise WeightsError(f"weights file '{path}' is not a PyTorch checkpoint (neither a torch.save zip nor a "
                               "pickle: corrupt, or another format); pass a state_dict saved with torch.save, or "
                               "a .safetensors file")
        try:
            with torch.serialization.safe_globals(_harmless_globals()):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            msg = first_line(exc, 160)
            if not ("weights_only" in msg or "Unsupported global" in msg or "Unpickl" in type(exc).__name__):
                raise WeightsError(f"weights file '{path}' is corrupt or not a PyTorch checkpoint ({msg})") from None
            if not trust_pickle:
                found = re.search(r"GLOBAL ([\w.]+)", str(exc))
                raise WeightsError(
                    f"refusing to load '{path}': it holds Python objects beyond tensors"
                    + (f" ({found.group(1)})" if found else "") + ", and unpickling them could run "
                    "code; save only the state_dict (torch.save(model.state_dict(), path)), use .safetensors, "
                    "or pass --trust-pickle if you trust the file"
                ) from None
            obj = _modules_as_state_dicts(unpickle_trusted(path))
    if isinstance(obj, Mapping):
        ema = next((k for k in _EMA_KEYS if isinstance(obj.get(k), Mapping) and obj[k]), None)
        if ema is not None and use_ema:
            return _unwrap(obj[ema], path)
        if ema is not None:
            _note_ema(notes, path, ema)
            return _unwrap(obj, path)
    sd = _unwrap(obj, path)
    prefix = next((p for p in _EMA_PREFIXES if any(k.startswith(p) for k in sd)), None)
    if use_ema and prefix is None:
        raise WeightsError(f"'{path}' holds no EMA weights (no {', '.join(_EMA_KEYS)} entry, no key under "
                           f"{', '.join(_EMA_PREFIXES)}); drop --use-ema to load its weights")
    if use_ema:  # the EMA submodule's keys, without its prefix
        return _unwrap({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, path)
    rest = {k: v for k, v in sd.items() if not k.startswith(prefix)} if prefix else sd
    if rest is not sd and rest:  # the network beside the EMA copy loads, as with an EMA entry of its own
        _note_ema(notes, path, f"the keys under '{prefix}'")
        return rest
    return sd


def _note_ema(notes: list[str] | None, path: Path, where: str) -> None:
    if notes is not None:
        notes.append(f"'{path.name}' also holds EMA weights ({where}), often the more accurate ones; these files "
                     "hold its other weights: pass --use-ema for the EMA weights")



def _harmless_globals() -> list:
    """Classes training scripts store beside the weights that unpickle without running code: timm's
    train.py keeps its argparse.Namespace under ``args``, many scripts numpy scalars (a best accuracy)."""
    import argparse

    import numpy as np

    core = getattr(np, "_core", None) or np.core
    return [argparse.Namespace, np.dtype, core.multiarray.scalar,
            *(getattr(np.dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType")
              if hasattr(np, "dtypes") and hasattr(np.dtypes, n))]


def unpickle_trusted(path: Path):
    """``torch.load`` without ``weights_only``: the pickled objects' classes imported (the current folder and
    the file's first on the import path, as for a model given by its file), their code run. Only for a file
    the user said they trust (--trust-pickle)."""
    import sys

    for folder in (str(Path(path).resolve().parent), os.getcwd()):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as exc:
        raise WeightsError(f"'{path}' pickles objects of module '{exc.name}', which is not importable here: run "
                           f"from the folder that holds it, or install its package") from None
    except AttributeError as exc:  # a class the module no longer defines
        raise WeightsError(f"'{path}' pickles an object its module no longer defines ({first_line(exc, 120)}): "
                           "load it with the code it was saved with") from None
    except Exception as exc:
        raise WeightsError(f"cannot unpickle '{path}' ({type(exc).__name__}: {first_line(exc, 120)})") from None


def _modules_as_state_dicts(obj):
    """A whole pickled module, or a checkpoint dict holding some (Ultralytics' ``model`` and ``ema``), with each
    module replaced by its state_dict."""
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        return {k: v.state_dict() if isinstance(v, nn.Module) else v for k, v in obj.items()}
    return obj


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, Mapping) and not _is_state_dict(obj):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        raise WeightsError(
            f"'{path}' holds no state_dict (expected a dict of tensors, or a checkpoint with a 'state_dict' or 'model' entry)"
        )
    sd = dict(obj)
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                stripped = True
    return sd


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "weights") -> None:
    """Load ``state_dict`` strictly; a mismatch raises naming the first differing keys and shapes.

    A file whose every key carries one prefix that the model lacks (a LightningModule saves its network
    as ``model.``...) loads when the keys without it fit the model exactly, names and shapes."""
    own = model.state_dict()
    fitting = _fitting_prefixes(own, state_dict)
    if len(fitting) == 1 and all(k.startswith(fitting[0]) for k in state_dict):
        state_dict = {k[len(fitting[0]):]: v for k, v in state_dict.items()}
    resized = _resized_on_load(model)
    shape_diff = [
        f"{k} (file {list(v.shape)} vs model {list(own[k].shape)})"
        for k, v in state_dict.items()
        if k in own and k not in resized and not _fits(v, own[k])
    ]
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if shape_diff or missing or unexpected:
        parts = []
        if shape_diff:
            parts.append("shape mismatch: " + ", ".join(shape_diff[:MAX_LISTED]) + _more(shape_diff))
        if missing:
            parts.append("missing in file: " + ", ".join(missing[:MAX_LISTED]) + _more(missing))
        if unexpected:
            parts.append("not in model: " + ", ".join(unexpected[:MAX_LISTED]) + _more(unexpected))
        hint = ""
        if any(d.startswith(("fc.", "classifier", "head")) for d in shape_diff):
            hint = "; if only the classifier differs, pass --num-classes to match the checkpoint"
        elif fitting:
            hint = (f"; the keys under {' and '.join(repr(p) for p in fitting)} fit it: save the network you want "
                    f"as its own state_dict (torch.save(module.state_dict(), path))")
        raise WeightsError(f"{source} do not fit the model: " + "; ".join(parts) + hint)
    model.load_state_dict(state_dict, strict=True)


def _fitting_prefixes(own: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """The first key components ``p.`` of ``state_dict`` whose keys, without ``p.``, are exactly ``own``'s,
    each with ``own``'s shape ([] when the file fits as it is)."""
    if set(state_dict) == set(own):
        return []
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in state_dict.items():
        head, dot, rest = k.partition(".")
        if dot:
            groups.setdefault(head + ".", {})[rest] = v
    return sorted(p for p, sd in groups.items()
                  if set(sd) == set(own) and all(_fits(sd[k], own[k]) for k in own))


def _resized_on_load(model: nn.Module) -> set[str]:
    """The state_dict keys of torch.ao's fake-quantize and observer modules, which loading resizes: a QAT
    checkpoint's per-channel scales and observed ranges load into a freshly prepared model, whose are empty."""
    keys = set()
    resizing = ("torch.ao.quantization.fake_quantize", "torch.ao.quantization.observer")
    for name, module in model.named_modules():
        if type(module).__module__.startswith(resizing):
            keys |= {f"{name}.{b}" if name else b for b, _ in module.named_buffers(recurse=False)}
    return keys


def _fits(tensor: torch.Tensor, own: torch.Tensor) -> bool:
    """``tensor`` has ``own``'s shape, or ``own`` is a lazy layer's uninitialised one, which loading shapes."""
    return is_lazy(own) or tuple(tensor.shape) == tuple(own.shape)


def _more(items: list) -> str:
    return f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""

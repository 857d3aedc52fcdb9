"""timm's architectures as a model source: ``cnnexport timm:NAME`` (the ``timm`` extra).

Nothing is downloaded: the architecture is built by name with random weights, and ``--weights``
loads a local checkpoint (timm's own state_dict names). A timm model's Hugging Face Hub folder (what
``push_to_hub``/``save_for_hf`` write and a Hub download holds: ``config.json`` naming the architecture,
its classes, builder arguments and preprocessing, beside ``model.safetensors``) is a model of its own:
``cnnexport path/to/folder``, as ``timm.create_model('local-dir:path/to/folder')`` builds it.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

from torch import nn

from ..errors import UnknownModelError, WeightsError

PREFIX = "timm:"
HUB_CONFIG = "config.json"  # a timm model folder's: architecture, num_classes, model_args, pretrained_cfg

# PyPI's torchvision for x86_64 Linux is built against CUDA torch: beside the CPU torch its compiled
# ops (_C.so) do not load, and its Python side then fails at import while it registers fake kernels
# for these two operators ('operator torchvision::nms does not exist'). timm needs torchvision's
# Python side only (transforms, FrozenBatchNorm2d), never these ops: declaring their schemas lets it
# import, and calling them still fails with torchvision's own message about its C++ ops.
_TORCHVISION_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_fragment = None  # the torch.library fragment must outlive the call that made it


def import_torchvision():
    """torchvision, importable beside a torch build its compiled ops were not made for."""
    global _fragment
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    import sys

    import torch

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # the half-imported package
    if _fragment is None:
        _fragment = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _TORCHVISION_SCHEMAS:
            name = schema.split("(")[0]
            if not _has_schema(name):
                _fragment.define(schema)
    return importlib.import_module("torchvision")


def retry_with_torchvision(fn):
    """``fn()``; where it fails because torchvision's compiled ops do not load beside this torch (user code
    that imports timm or torchvision), once more with torchvision importable (``import_torchvision``)."""
    try:
        return fn()
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    import_torchvision()
    return fn()


def _has_schema(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name).default
        return True
    except (AttributeError, RuntimeError):
        return False


def import_timm():
    """The timm package, or an UnknownModelError naming the extra to install."""
    try:
        import_torchvision()
        return importlib.import_module("timm")
    except ModuleNotFoundError as exc:
        raise UnknownModelError(f"timm models need the timm package ({exc.name} is not installed): "
                                "pip install -c constraints.txt 'cnnexport[timm]'") from None


def timm_catalog(pattern: str = "*") -> list[dict]:
    """timm's architectures matching ``pattern`` (timm.list_models' wildcard), each as cnnexport takes it
    (``timm:NAME``) with its default pretrained config's input size, classes and normalisation: what an export
    uses unless told otherwise. No model is built."""
    timm = import_timm()
    from timm.models import get_pretrained_cfg

    rows = []
    for name in timm.list_models(pattern):
        cfg = get_pretrained_cfg(name)
        row = {"name": f"{PREFIX}{name}", "input_size": None, "num_classes": None, "mean": None, "std": None,
               "pretrained_tag": None}
        if cfg is not None:
            row.update(input_size=list(cfg.input_size), num_classes=cfg.num_classes, mean=list(cfg.mean),
                       std=list(cfg.std), pretrained_tag=getattr(cfg, "tag", None))
        rows.append(row)
    return rows


def is_timm_spec(spec: str) -> bool:
    return spec.startswith(PREFIX)


def hub_config(folder: str | os.PathLike) -> dict | None:
    """The config.json of a timm model folder, None when ``folder`` holds none naming an architecture."""
    path = Path(folder) / HUB_CONFIG
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read '{path}' ({type(exc).__name__}): is the model folder complete?") from None
    return config if isinstance(config, dict) and isinstance(config.get("architecture"), str) else None


def create_timm_from_folder(folder: str | os.PathLike, num_classes: int | None = None,
                            use_ema: bool = False, trust_pickle: bool = False) -> nn.Module:
    """A timm model folder (``hub_config``): its architecture with its builder arguments, classes, weights
    and preprocessing, in eval mode."""
    config = hub_config(folder)
    if config is None:
        raise UnknownModelError(f"folder '{folder}' is no timm model folder (no {HUB_CONFIG} naming an "
                                "architecture): give the architecture as MODEL and the folder to --weights")
    return create_timm_model(PREFIX + config["architecture"], num_classes=num_classes, weights=folder,
                             use_ema=use_ema, trust_pickle=trust_pickle)


def create_timm_model(spec: str, num_classes: int | None = None, weights: str | os.PathLike | None = None,
                      use_ema: bool = False, trust_pickle: bool = False) -> nn.Module:
    """``timm:NAME`` built by timm (random weights; ``weights``: a local state_dict, or a timm model folder,
    whose config.json also gives the classes, builder arguments and preprocessing), in eval mode."""
    from .weights import load_weights, read_state_dict

    name = spec[len(PREFIX):]
    timm = import_timm()
    if not name or not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:5] if name else []
        hint = f"; close names: {', '.join(close)}" if close else "; list them with: python -c \"import timm; " \
                                                                  "print(timm.list_models('*net*'))\""
        raise UnknownModelError(f"'{name}' is not a timm architecture{hint}")
    config = hub_config(weights) if weights is not None and Path(weights).is_dir() else None
    kwargs = _folder_kwargs(name, config, weights) if config else {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = timm.create_model(name, pretrained=False, **kwargs)
    if weights is not None:
        notes: list[str] = []
        load_weights(model, read_state_dict(weights, use_ema=use_ema, notes=notes, trust_pickle=trust_pickle),
                     source=f"weights for {spec}")
        if notes:
            model.cnnexport_notes = notes
    model.cnnexport_name = name
    folder_cfg = {}  # the folder's preprocessing: its pretrained_cfg, or the whole config in timm's older form
    if config:
        folder_cfg = (config["pretrained_cfg"] if "pretrained_cfg" in config else config) or {}
    cfg = {**(getattr(model, "pretrained_cfg", None) or {}), **folder_cfg}
    if cfg.get("mean") and cfg.get("std"):
        model.cnnexport_preprocess = {"mean": tuple(cfg["mean"]), "std": tuple(cfg["std"]),
                                      **({"crop_fraction": float(cfg["crop_pct"])} if cfg.get("crop_pct") else {})}
    if cfg.get("input_size"):
        model.cnnexport_input_size = tuple(cfg["input_size"])
    labels = (config or {}).get("label_names") or folder_cfg.get("label_names") or folder_cfg.get("labels")
    if isinstance(labels, list) and labels and all(isinstance(n, str) for n in labels):
        model.cnnexport_classes = labels  # the folder's class names, in output order
    return model.eval()


def _folder_kwargs(name: str, config: dict, folder) -> dict:
    """timm's builder arguments from a model folder's config.json (its classes among them), checked to be for
    the architecture ``name``."""
    arch = config["architecture"]
    if arch.split(".")[0] != name.split(".")[0]:
        raise WeightsError(f"'{folder}' holds a {arch} ({HUB_CONFIG}), not a {name}: give MODEL timm:{arch}, or the "
                           "folder alone as MODEL")
    kwargs = dict(config.get("model_args") or {})
    if config.get("num_classes") is not None:
        kwargs.setdefault("num_classes", config["num_classes"])
    return kwargs

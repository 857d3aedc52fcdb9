"""The model registry: one metadata record per builder, filled by ``@register_model``."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Callable

from ..errors import UnknownModelError


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of one model.

    ``params`` and ``macs`` are the published figures (``source`` says where from: torchvision,
    or the paper and its table); ``macs`` are multiply-accumulates at ``input_size``.
    """

    name: str
    family: str
    builder: Callable = field(repr=False, compare=False)
    input_size: tuple[int, int, int] = (3, 224, 224)
    num_classes: int = 1000
    params: int | None = None
    macs: int | None = None
    source: str = ""
    paper: str = ""
    arxiv: str = ""
    torchvision_compatible: bool = False
    # Builder arguments torchvision applies when it loads its own checkpoint (e.g. transform_input).
    weights_kwargs: dict = field(default_factory=dict, compare=False)


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    family: str,
    *,
    input_size: tuple[int, int, int] = (3, 224, 224),
    num_classes: int = 1000,
    params: int | None = None,
    macs: int | None = None,
    source: str = "",
    paper: str = "",
    arxiv: str = "",
    torchvision_compatible: bool = False,
    weights_kwargs: dict | None = None,
) -> Callable[[Callable], Callable]:
    """Decorator recording a builder function under its own name."""

    def wrap(builder: Callable) -> Callable:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' registered twice")
        _REGISTRY[name] = ModelInfo(
            name=name,
            family=family,
            builder=builder,
            input_size=input_size,
            num_classes=num_classes,
            params=params,
            macs=macs,
            source=source,
            paper=paper,
            arxiv=arxiv,
            torchvision_compatible=torchvision_compatible,
            weights_kwargs=dict(weights_kwargs or {}),
        )
        return builder

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard, e.g. ``list_models('resnet*')``."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_info(name: str) -> ModelInfo:
    """The registry record of ``name``; unknown names raise with the closest suggestions."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "run 'cnnexport list' to see them"
        raise UnknownModelError(f"unknown model '{name}': {hint}") from None


def is_registered(name: str) -> bool:
    return name in _REGISTRY

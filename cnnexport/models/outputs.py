"""What a model returns: one tensor, or several (a tuple, a list, a dict) of which cnnexport keeps the
first, the one it exports, verifies, evaluates and benchmarks."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UsageError


def first_tensor(out) -> torch.Tensor:
    """``out`` itself when it is a tensor, else the first tensor of a tuple, list or dict."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict) and out:
        return next(iter(out.values()))
    raise UsageError(f"the model returned {type(out).__name__}; cnnexport exports models that return a tensor")


class FirstOutput(nn.Module):
    """A model that returns several tensors (a tuple, a list, a dict), reduced to its first: the output
    cnnexport verifies and benchmarks, so that every file holds that one (converters such as pnnx refuse
    a dict, and an output nobody checked would travel unverified)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return first_tensor(self.model(x))


def tensor_output(model: nn.Module, sample: torch.Tensor) -> nn.Module:
    """``model`` itself when it returns a tensor for ``sample`` (in eval mode), else ``FirstOutput(model)``:
    a timed model that returns a tensor pays no wrapper's call (about 2 us a forward, a few percent of a small
    network's)."""
    with torch.inference_mode():
        out = model.eval()(sample)
    return model if isinstance(out, torch.Tensor) else FirstOutput(model)

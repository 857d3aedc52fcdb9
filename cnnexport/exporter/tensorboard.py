"""TensorBoard logs of what preparation does to the weights (folding can widen a layer's weight
range, which matters for int8) and of the sample inputs."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from ..errors import MissingDependencyError
from .prepare import prepare_with_summary

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)


def write_tensorboard(model: nn.Module, logdir: str | os.PathLike, images: np.ndarray | None = None) -> dict:
    """Histograms of every conv/linear weight before and after BN folding, the weight range change
    per layer as scalars, and ``images`` (NCHW, any range). Returns the tags written."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MissingDependencyError("TensorBoard is not installed: pip install 'cnnexport[tensorboard]'") from None
    prepared, _ = prepare_with_summary(model)
    before = {n: m.weight.detach() for n, m in model.named_modules() if isinstance(m, _WEIGHTED)}
    after = {n: m.weight.detach() for n, m in prepared.named_modules() if isinstance(m, _WEIGHTED)}
    tags = []
    with SummaryWriter(log_dir=str(logdir)) as writer:
        for step, (name, w) in enumerate(before.items()):
            writer.add_histogram(f"weights_before_fold/{name}", w, 0)
            tags.append(f"weights_before_fold/{name}")
            if name in after:
                writer.add_histogram(f"weights_after_fold/{name}", after[name], 0)
                tags.append(f"weights_after_fold/{name}")
                ratio = float(after[name].abs().max() / (w.abs().max() + 1e-12))
                writer.add_scalar("weight_range_growth_after_fold", ratio, step)
        if images is not None and len(images):
            lo = images.min(axis=(1, 2, 3), keepdims=True)
            hi = images.max(axis=(1, 2, 3), keepdims=True)
            shown = (images - lo) / np.maximum(hi - lo, 1e-12)
            writer.add_images("inputs/samples", torch.from_numpy(shown.astype(np.float32)), 0, dataformats="NCHW")
            tags.append("inputs/samples")
    return {"logdir": str(logdir), "histograms": len([t for t in tags if t.startswith("weights")]),
            "images": int(0 if images is None else len(images))}

"""Shared by the benchmark scripts (run as `python benchmarks/<script>.py`, so this folder is on sys.path)."""

from __future__ import annotations

import numpy as np


def reestimate_bn(model, images: np.ndarray) -> None:
    """BatchNorm running statistics from real images (cumulative average), then eval mode.

    No trained ImageNet weights can be downloaded here, and a randomly initialised network with
    default BatchNorm statistics gives vanishing logits that no int8 scale can represent; statistics
    from real photographs give activations of realistic magnitude."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for i in range(0, len(images), 16):
            model(torch.from_numpy(images[i:i + 16]))
    model.eval()

"""Training a zoo model on scikit-learn's digits: the project's really trained models.

Deterministic (fixed seeds, one thread) so that ``scripts/train_digits.py`` reproduces the shipped
weights' accuracy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def train_classifier(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, *, epochs: int = 30,
                     batch_size: int = 64, lr: float = 1e-2, weight_decay: float = 1e-4, seed: int = 0,
                     augment_shift: int = 1) -> nn.Module:
    """Adam with cosine decay; random shifts of up to ``augment_shift`` pixels as augmentation."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x_all, y_all = torch.from_numpy(x_train), torch.from_numpy(y_train)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * -(-len(x_all) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(x_all))
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            xb = x_all[idx]
            if augment_shift:
                dx, dy = rng.integers(-augment_shift, augment_shift + 1, size=2)
                xb = torch.roll(xb, shifts=(int(dy), int(dx)), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(xb), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    logits = torch.cat([model(torch.from_numpy(x[i:i + 256])) for i in range(0, len(x), 256)])
    return float((logits.argmax(1).numpy() == y).mean())

"""scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes) as a real labelled set.

Images are upsampled to 32x32 (bilinear, Pillow) for LeNet-5's input, scaled to [-1, 1]. The split
is fixed and documented: a permutation with seed 0, the first 1,347 images for training (and
calibration), the last 450 for testing; the two never overlap. numpy and Pillow only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MissingDependencyError

SPLIT_SEED = 0
TEST_SIZE = 450


@dataclass(frozen=True)
class DigitsSplit:
    x_train: np.ndarray  # (1347, 1, size, size) float32 in [-1, 1]
    y_train: np.ndarray  # (1347,) int64
    x_test: np.ndarray   # (450, 1, size, size)
    y_test: np.ndarray


def _upsample(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize((size, size),
                                                                                        Image.BILINEAR))
                     for img in images])


def load_digits(size: int = 32, channels: int = 1) -> DigitsSplit:
    """The fixed train/test split of the digits, as NCHW float32 (channels repeated if > 1)."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise MissingDependencyError("the digits data set needs scikit-learn: pip install 'cnnexport[samples]'") from None
    data = sk_load_digits()
    images = data.images.astype(np.float32) / 16.0  # 0..16 -> 0..1
    x = _upsample(images, size) if size != 8 else images
    x = (x * 2.0 - 1.0)[:, None].astype(np.float32)
    if channels > 1:
        x = np.repeat(x, channels, axis=1)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    train, test = order[:-TEST_SIZE], order[-TEST_SIZE:]
    return DigitsSplit(x[train], y[train], x[test], y[test])

"""scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes) as a real labelled set.

The digits are 8-bit grayscale images (scikit-learn's 0..16 scaled to 0..255), preprocessed like any
other image: ``preprocess(size, channels)`` upsamples them (bilinear, in float) to the model's input
and scales them to [-1, 1]. The same images written as PNGs (``write_image_folder``) and read back by
an image-folder source give the same arrays. The split is fixed and documented: a permutation with
seed 0, the first 1,347 images for training (and calibration), the last 450 for testing; the two never
overlap. numpy and Pillow only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError
from .images import Preprocess

SPLIT_SEED = 0
TEST_SIZE = 450
CLASSES = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class DigitsSplit:
    x_train: np.ndarray  # (1347, channels, size, size) float32 in [-1, 1]
    y_train: np.ndarray  # (1347,) int64
    x_test: np.ndarray   # (450, channels, size, size)
    y_test: np.ndarray


def preprocess(size: int = 32, channels: int = 1) -> Preprocess:
    """How the digits-trained weights take their input: the whole image upsampled to ``size`` (no crop),
    [0, 1] mapped to [-1, 1]."""
    return Preprocess(size=(size, size), channels=channels, crop_fraction=1.0, mean=(0.5,), std=(0.5,))


def digit_images(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 uint8 images and int64 labels of ``split`` ('train', 'test' or 'all')."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise MissingDependencyError("the digits data set needs scikit-learn: pip install 'cnnexport[samples]'") from None
    data = sk_load_digits()
    images = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)
    labels = data.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    index = {"train": order[:-TEST_SIZE], "test": order[-TEST_SIZE:], "all": np.arange(len(labels))}[split]
    return images[index], labels[index]


def to_inputs(images: np.ndarray, pre: Preprocess) -> np.ndarray:
    """uint8 grayscale images -> the model's NCHW float32 inputs through ``pre``."""
    from PIL import Image

    return np.stack([pre(Image.fromarray(img, mode="L")) for img in images]) if len(images) else \
        np.zeros((0, pre.channels, *pre.size), np.float32)


def load_digits(size: int = 32, channels: int = 1) -> DigitsSplit:
    """The fixed train/test split of the digits, as NCHW float32."""
    pre = preprocess(size, channels)
    (train, y_train), (test, y_test) = digit_images("train"), digit_images("test")
    return DigitsSplit(to_inputs(train, pre), y_train, to_inputs(test, pre), y_test)


def write_image_folder(root: str | os.PathLike, split: str = "test") -> Path:
    """The digits of ``split`` as an image folder: ``root/<digit>/<index>.png``, one subfolder per class."""
    from PIL import Image

    root = Path(root)
    images, labels = digit_images(split)
    for c in CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(images, labels)):
        Image.fromarray(img, mode="L").save(root / CLASSES[label] / f"{i:04d}.png")
    return root

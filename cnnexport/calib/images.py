"""Real photographs as model inputs: six public-domain / CC0 photographs shipped with the package
(scikit-image's samples, see ``photos/README.md``) and ImageNet preprocessing. numpy and Pillow only."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The image files a folder source reads (calibration and labelled folders alike): torchvision's ImageFolder's.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: The same, as messages name them.
IMAGE_KINDS = "/".join(suffix[1:] for suffix in IMAGE_SUFFIXES)

PHOTOS_DIR = Path(__file__).parent / "photos"
# Natural colour photographs shipped with the package (licences in photos/README.md).
SAMPLE_PHOTOS = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg", "hubble_deep_field.jpg", "retina.jpg")


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``size / crop_fraction``, centre-crop ``size``, scale to [0, 1],
    normalise per channel. ``channels=1`` converts to grayscale (LeNet-style inputs). A grayscale
    image (or any image for a one-channel model) is resized in float, without rounding to 8 bits,
    and repeated to the model's channel count. 16-bit images (PNG, TIFF) are scaled to 8 bits' range
    (65535 -> 255): PIL's own conversion would clip them to white."""

    size: tuple[int, int] = (224, 224)
    channels: int = 3
    crop_fraction: float = 0.875
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __call__(self, image, out: np.ndarray | None = None) -> np.ndarray:
        """PIL image -> float32 CHW array (written into ``out`` when given: a batch's slot)."""
        return self.normalize(self.pixels(image), out)

    def pixels(self, image) -> np.ndarray:
        """The resized centre crop before normalisation: uint8 HWC (colour), or float32 HW (grayscale,
        resized in float). What an evaluation cache stores: ``normalize`` of it is ``self(image)``."""
        from PIL import Image

        deep = image.mode == "I" or image.mode.startswith("I;16")  # 16-bit samples (PNG, TIFF)
        gray = self.channels == 1 or deep or image.mode in ("L", "LA", "1", "F")
        if deep:  # to 8 bits' range in float: convert("RGB") or ("L") would clip every value over 255 to white
            image = Image.fromarray(np.asarray(image, np.float32) / 257.0, "F")
        elif gray:
            image = image.convert("F")
        elif image.mode != "RGB":
            image = image.convert("RGB")
        h, w = self.size
        scale = max(h, w) / self.crop_fraction / min(image.size)
        new_w, new_h = max(w, round(image.size[0] * scale)), max(h, round(image.size[1] * scale))
        left, top = (new_w - w) // 2, (new_h - h) // 2
        # Resample only the centre crop: the source box that maps onto it (the same pixels as resizing the
        # whole image and cropping, for less work).
        sx, sy = image.size[0] / new_w, image.size[1] / new_h
        image = image.resize((w, h), Image.BILINEAR, box=(left * sx, top * sy, (left + w) * sx, (top + h) * sy))
        return np.asarray(image)

    def normalize(self, pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``pixels`` (HWC or HW, as ``pixels`` returns) -> float32 CHW, scaled to [0, 1] and normalised,
        repeated to the model's channel count."""
        h, w = self.size
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # CHW view
        mean, std = self._stats()
        if out is None:
            out = np.empty((self.channels, h, w), np.float32)
        np.multiply(pixels, (1.0 / (255.0 * std)).astype(np.float32), out=out)  # one pass: scale and lay out
        out -= mean / std
        return out

    def as_dict(self) -> dict:
        """JSON-ready fields (a report's or a reference.npz's record of how inputs were made)."""
        return {"size": list(self.size), "channels": self.channels, "crop_fraction": self.crop_fraction,
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(size=tuple(d["size"]), channels=int(d["channels"]), crop_fraction=float(d["crop_fraction"]),
                   mean=tuple(d["mean"]), std=tuple(d["std"]))

    def at(self, size: tuple[int, int], channels: int) -> "Preprocess":
        """The same normalisation for another input size and channel count."""
        return replace(self, size=tuple(size), channels=int(channels))

    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        if self.channels != len(mean):
            # Grayscale or other channel counts: use the mean of the given statistics for every channel.
            mean = np.full(self.channels, mean.mean(), np.float32)
            std = np.full(self.channels, std.mean(), np.float32)
        return mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)


def sample_image_paths() -> list[Path]:
    """Paths of the colour photographs shipped with the package (empty only in a broken install)."""
    return [PHOTOS_DIR / name for name in SAMPLE_PHOTOS if (PHOTOS_DIR / name).is_file()]


def load_image(path: str | os.PathLike, preprocess: Preprocess) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return preprocess(image)


def sample_images(preprocess: Preprocess | None = None, limit: int | None = None) -> np.ndarray:
    """The bundled photographs, preprocessed, as one NCHW float32 batch (N may be 0)."""
    preprocess = preprocess or Preprocess()
    paths = sample_image_paths()[:limit]
    if not paths:
        return np.zeros((0, preprocess.channels, *preprocess.size), np.float32)
    return np.stack([load_image(p, preprocess) for p in paths])

"""Calibration and evaluation data: numpy and Pillow only, never torch."""

from .images import IMAGENET_MEAN, IMAGENET_STD, Preprocess, load_image, sample_image_paths, sample_images

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocess", "load_image", "sample_image_paths", "sample_images"]

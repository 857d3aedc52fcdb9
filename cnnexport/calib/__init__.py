"""Calibration and evaluation data: numpy and Pillow only, never torch."""

from .images import IMAGENET_MEAN, IMAGENET_STD, Preprocess, load_image, sample_image_paths, sample_images
from .readers import OrtCalibrationReader, nncf_dataset, representative_dataset
from .sources import (RECOMMENDED_MIN, array_file, check_disjoint, check_fits, image_folder, load_samples,
                      sample_photos, split)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocess", "load_image", "sample_image_paths", "sample_images",
           "OrtCalibrationReader", "nncf_dataset", "representative_dataset", "RECOMMENDED_MIN", "array_file",
           "check_disjoint", "check_fits", "image_folder", "load_samples", "sample_photos", "split"]

"""Calibration and evaluation samples: image folders, the bundled photographs, .npy/.npz files,
and a split that keeps calibration and evaluation apart. numpy and Pillow only."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..errors import CalibrationError
from .images import IMAGE_KINDS, IMAGE_SUFFIXES, PHOTOS_DIR, Preprocess, load_image, sample_image_paths

RECOMMENDED_MIN = 100  # NNCF and Ultralytics warn below 300; int8 ranges from fewer than 100 samples are noisy


def image_folder(root: str | os.PathLike, preprocess: Preprocess, limit: int | None = None,
                 skipped: list[str] | None = None) -> np.ndarray:
    """Every image (``IMAGE_SUFFIXES``) under ``root`` (recursively, sorted), preprocessed: NCHW float32; with
    ``limit``, that many of them evenly spaced through the sorted list, so every part of the tree gives its share
    (the first ones would all come from the first subfolders). The images that cannot be read are left
    out, and their paths under ``root`` appended to ``skipped``."""
    root = Path(root)
    if not root.is_dir():
        raise CalibrationError(f"calibration folder '{root}' does not exist")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if limit is not None and limit < len(paths):
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    if not paths:
        raise CalibrationError(f"calibration folder '{root}' holds no images ({IMAGE_KINDS})")
    images, bad = [], []
    for p in paths:
        try:
            images.append(load_image(p, preprocess))
        except Exception:
            bad.append(str(p.relative_to(root)))
    if not images:
        raise CalibrationError(f"no image in '{root}' could be read (e.g. {bad[0]}); are they real images?")
    if skipped is not None:
        skipped.extend(bad)
    return np.stack(images)


def sample_photos(preprocess: Preprocess, count: int | None = None, seed: int = 0) -> np.ndarray:
    """The photographs shipped with the package; beyond them, deterministic random crops of them."""
    from PIL import Image

    paths = sample_image_paths()
    if not paths:
        raise CalibrationError(f"the bundled sample photographs are missing from {PHOTOS_DIR}: reinstall cnnexport")
    count = count or len(paths)
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        path = paths[k % len(paths)]
        with Image.open(path) as img:
            img = img.convert("RGB")
            if k >= len(paths):  # a crop covering 40-90% of the shorter side, anywhere in the photo
                side = int(min(img.size) * rng.uniform(0.4, 0.9))
                x0 = int(rng.integers(0, img.size[0] - side + 1))
                y0 = int(rng.integers(0, img.size[1] - side + 1))
                img = img.crop((x0, y0, x0 + side, y0 + side))
            out.append(preprocess(img))
    return np.stack(out)


def array_file(path: str | os.PathLike) -> np.ndarray:
    """Samples from .npy, or .npz (key 'x', 'images' or 'inputs', else the only array); never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file '{path}' does not exist")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            return data.astype(np.float32)
        with data:
            key = next((k for k in ("x", "images", "inputs") if k in data.files), None)
            if key is None and len(data.files) != 1:
                raise CalibrationError(f"'{path}' holds {data.files}; name the samples 'x'")
            return data[key or data.files[0]].astype(np.float32)
    except CalibrationError:
        raise
    except Exception as exc:
        raise CalibrationError(f"'{path}' is not a readable .npy/.npz file ({type(exc).__name__})") from None


def load_samples(source: str, preprocess: Preprocess, count: int | None = None,
                 skipped: list[str] | None = None) -> np.ndarray:
    """``samples`` (bundled photographs), ``digits`` (scikit-learn's, training split), a folder, or an array
    file; a folder's unreadable images are named in ``skipped``."""
    if source == "samples":
        return sample_photos(preprocess, count)
    if source == "digits":
        from .digits import load_digits

        return load_digits(size=preprocess.size[0], channels=preprocess.channels).x_train[:count]
    path = Path(source)
    if path.suffix in (".npy", ".npz"):
        return array_file(path)[:count]
    return image_folder(path, preprocess, count, skipped)


def load_labelled_samples(source: str, preprocess: Preprocess, count: int | None = None,
                          classes_file: str | None = None, skipped: list[str] | None = None,
                          model_classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Samples and their labels from a labelled source (digits, a folder with class subfolders, an .npz
    with ``y``: the first ``count`` of its fixed shuffled order, so every class is represented), or the
    samples of any other source with labels None. ``digits`` here is the training split. A folder's
    unreadable images are left out and named in ``skipped``. ``model_classes``: the model's class names in
    output order, which a folder's subfolders are matched to (``load_labelled``)."""
    from .labelled import is_labelled, load_labelled

    if not is_labelled(source):
        return load_samples(source, preprocess, count, skipped), None
    source = "digits:train" if source == "digits" else source
    data = load_labelled(source, classes_file, size=preprocess.size, channels=preprocess.channels,
                         model_classes=model_classes)
    data.check_channels(preprocess.channels)
    x, y, bad = data.select(count).arrays(data.preprocess or preprocess)
    if skipped is not None:
        skipped.extend(bad)
    return x, y


def check_fits(samples: np.ndarray, input_shape: tuple[int, ...], what: str = "calibration") -> None:
    """The samples' C, H, W must be the model's."""
    if samples.ndim != len(input_shape) or tuple(samples.shape[1:]) != tuple(input_shape[1:]):
        raise CalibrationError(f"{what} samples are {'x'.join(map(str, samples.shape[1:]))} but the model takes "
                               f"{'x'.join(map(str, input_shape[1:]))} (wrong channel count or size)")


def split_order(count: int, calib_fraction: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the calibration and evaluation parts of a pool of ``count`` samples (a fixed permutation)."""
    if count < 2:
        raise CalibrationError(f"{count} sample(s) cannot be split into calibration and evaluation sets; give at "
                               f"least 2 (int8 ranges want {RECOMMENDED_MIN} or more), or evaluation data of its "
                               "own with --eval")
    order = np.random.default_rng(seed).permutation(count)
    cut = min(max(1, int(round(count * calib_fraction))), count - 1)
    return order[:cut], order[cut:]


def split(samples: np.ndarray, calib_fraction: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint calibration and evaluation sets from one pool (a fixed permutation)."""
    calibration, evaluation = split_order(len(samples), calib_fraction, seed)
    return samples[calibration], samples[evaluation]


def fingerprints(samples: np.ndarray) -> set[str]:
    return {hashlib.sha1(np.ascontiguousarray(s).tobytes()).hexdigest() for s in samples}


def check_disjoint(calibration: np.ndarray, evaluation: np.ndarray) -> None:
    """Refuse an evaluation set that shares samples with the calibration set."""
    shared = fingerprints(calibration) & fingerprints(evaluation)
    if shared:
        raise CalibrationError(f"{len(shared)} evaluation samples are also calibration samples; accuracy measured "
                               "on them would flatter int8. Use separate sets")

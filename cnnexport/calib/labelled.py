"""Labelled evaluation data: an image folder with one subfolder per class (torchvision's ``ImageFolder``
layout), the bundled digits, and ``.npz`` files with ``x`` and ``y``. Images are decoded on a thread
pool a batch ahead of the model, so memory stays flat in the number of images. numpy and Pillow only.

Every source visits its images in one fixed shuffled order (seed 0): ``--limit N`` takes the first N
of it, so a few images already cover every class, a shard K/N takes every N-th, and a run stopped
early has measured a random sample, not the first classes in name order."""

from __future__ import annotations

import copy
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import CalibrationError
from .images import IMAGE_KINDS, IMAGE_SUFFIXES, Preprocess
from .pixel_cache import PixelCache

ORDER_SEED = 0


@dataclass
class Batch:
    """Model inputs (NCHW float32), their labels, and the files of this batch that could not be read."""
    x: np.ndarray
    y: np.ndarray
    skipped: list[str] = field(default_factory=list)


class LabelledSource:
    """A labelled set: class names in the model's output order, and one label per image."""

    def __init__(self, name: str, classes: list[str], labels: np.ndarray, preprocess: Preprocess | None = None):
        self.name, self.classes, self.labels = name, list(classes), np.asarray(labels, np.int64)
        self.preprocess = preprocess  # the data's own preprocessing (the digits'), else None: the model's
        self.index = np.random.default_rng(ORDER_SEED).permutation(len(self.labels))

    def __len__(self) -> int:
        return len(self.index)

    def select(self, limit: int | None = None, shard: tuple[int, int] | None = None) -> "LabelledSource":
        """The first ``limit`` images of the fixed order, then shard ``(k, n)``'s part of them (every n-th,
        from the k-th, 1-based)."""
        index = self.index[:limit] if limit else self.index
        if shard:
            k, n = shard
            index = index[k - 1::n]
        out = copy.copy(self)
        out.index = index
        return out

    def check_channels(self, channels: int) -> None:
        """Refuse data whose channel count cannot be the model's (only arrays have a fixed one)."""

    def batches(self, preprocess: Preprocess, batch: int, workers: int = 2) -> Iterator[Batch]:
        """The images in order, ``batch`` at a time, the next batch decoding on ``workers`` threads
        while the caller runs this one. Each image is written straight into its batch (no stacking copy)."""
        chunks = [self.index[i:i + batch] for i in range(0, len(self.index), batch)]
        pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="cnnexport-decode")
        pending: deque = deque()

        def submit(chunk):
            x = np.empty((len(chunk), preprocess.channels, *preprocess.size), np.float32)
            pending.append((chunk, x, [pool.submit(self._load, int(i), preprocess, x[j]) for j, i in enumerate(chunk)]))

        try:
            for chunk in chunks[:2]:
                submit(chunk)
            following = 2
            while pending:
                chunk, x, futures = pending.popleft()
                if following < len(chunks):
                    submit(chunks[following])
                    following += 1
                read, bad = [], []
                for j, (i, fut) in enumerate(zip(chunk, futures)):
                    try:
                        fut.result()
                        read.append(j)
                    except (OSError, ValueError, SyntaxError) as exc:  # what Pillow raises on a broken file
                        bad.append(f"{self.item_name(int(i))} ({type(exc).__name__})")
                if bad:
                    x = x[read]
                yield Batch(x, self.labels[chunk[read]], bad)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def arrays(self, preprocess: Preprocess, workers: int = 2) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Every image at once: inputs, labels and the files skipped (for small sets: calibration,
        the int8 check)."""
        xs, ys, bad = [], [], []
        for b in self.batches(preprocess, 64, workers):
            xs.append(b.x)
            ys.append(b.y)
            bad += b.skipped
        if not sum(len(y) for y in ys):
            raise CalibrationError(f"no image of '{self.name}' could be read (e.g. {bad[0] if bad else '-'}); "
                                   "are they real images?")
        return np.concatenate(xs), np.concatenate(ys), bad

    def item_name(self, i: int) -> str:
        return f"#{i}"

    def _load(self, i: int, preprocess: Preprocess, out: np.ndarray) -> None:
        """Write image ``i``, preprocessed, into ``out`` (its slot in a batch)."""
        raise NotImplementedError


class UnknownClassesError(CalibrationError):
    """An image folder whose class subfolders the model's own class names do not all name."""


class ImageFolder(LabelledSource):
    """``root/<class>/<image>``: classes sorted by name, or in the order of a ``classes`` file (one name
    per line, the checkpoint's output order), else of ``model_classes`` (the model's own names in output
    order: a timm model folder's label_names). Unreadable images are skipped and counted."""

    def __init__(self, root: str | os.PathLike, classes_file: str | os.PathLike | None = None,
                 cache: PixelCache | None = None, model_classes: list[str] | None = None):
        root = Path(root)
        if not root.is_dir():
            raise CalibrationError(f"data folder '{root}' does not exist; give a folder with one subfolder per "
                                   "class, 'digits', or a .npz file with x and y")
        folders, loose = _class_folders(root), _loose_images(root)
        if not folders:
            raise CalibrationError(f"'{root}' has no class subfolders" + (" (its images lie in the folder itself)"
                                   if loose else "") + f"; put each class's images in '{root}/<class name>/'")
        if loose:  # they would be left out of the accuracy without a word
            raise CalibrationError(f"{len(loose)} image(s) of '{root}' lie in the folder itself, outside its class "
                                   f"subfolders (e.g. {loose[0].name}); move each into '{root}/<class name>/', or "
                                   "out of the folder")
        classes = read_classes(classes_file) if classes_file else list(model_classes or folders)
        unknown = [f for f in folders if f not in set(classes)]
        if unknown and classes_file:
            raise CalibrationError(f"class folder(s) {', '.join(unknown[:5])} of '{root}' are not in "
                                   f"'{classes_file}'; add them to it, or remove those folders")
        if unknown:
            raise UnknownClassesError(f"class folder(s) {', '.join(unknown[:5])} of '{root}' are not among the "
                                      f"model's {len(classes)} class names ({', '.join(classes[:4])}, ...: its "
                                      "label_names); name the folders after them, or give --classes listing the "
                                      "model's classes in output order")
        position = {c: k for k, c in enumerate(classes)}
        paths, labels = [], []
        for name in folders:
            files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            paths += files
            labels += [position[name]] * len(files)
        if not paths:
            raise CalibrationError(f"the class folders of '{root}' hold no images ({IMAGE_KINDS})")
        super().__init__(str(root), classes, np.asarray(labels))
        self.root, self.paths, self.cache = root, paths, cache

    def item_name(self, i: int) -> str:
        return str(self.paths[i].relative_to(self.root))

    def _load(self, i: int, preprocess: Preprocess, out: np.ndarray) -> None:
        if self.cache is not None:
            preprocess.normalize(self.cache.pixels(self.paths[i], preprocess), out)
            return
        from PIL import Image

        with Image.open(self.paths[i]) as image:
            preprocess(image, out)


class Arrays(LabelledSource):
    """Labelled arrays: model inputs already preprocessed (float, NCHW), or uint8 images (N, H, W) or
    (N, H, W, C) that go through the preprocessing."""

    def __init__(self, name: str, x: np.ndarray, y: np.ndarray, classes: list[str] | None = None,
                 preprocess: Preprocess | None = None):
        if len(x) != len(y):
            raise CalibrationError(f"'{name}' holds {len(x)} inputs but {len(y)} labels; x and y must pair up")
        if len(x) == 0:
            raise CalibrationError(f"'{name}' holds no samples")
        y = np.asarray(y)
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise CalibrationError(f"'{name}': y must be one non-negative integer class index per sample")
        self.images = x.dtype == np.uint8
        if not self.images and x.ndim != 4:
            raise CalibrationError(f"'{name}': x is {'x'.join(map(str, x.shape))}; give preprocessed NCHW float "
                                   "inputs or uint8 images (N, H, W[, C])")
        super().__init__(name, classes or [str(k) for k in range(int(y.max()) + 1)], y, preprocess)
        self.x = x

    def check_channels(self, channels: int) -> None:
        have = (self.x.shape[3] if self.x.ndim == 4 else 1) if self.images else self.x.shape[1]
        if have != channels and not (self.images and have in (1, 3)):
            raise CalibrationError(f"'{self.name}' holds {have}-channel samples but the model takes {channels} "
                                   "channels; give inputs with the model's channel count")

    def _load(self, i: int, preprocess: Preprocess, out: np.ndarray) -> None:
        from PIL import Image  # only images come here: float arrays have their own batches()

        preprocess(Image.fromarray(self.x[i], mode="L" if self.x[i].ndim == 2 else "RGB"), out)

    def batches(self, preprocess: Preprocess, batch: int, workers: int = 2) -> Iterator[Batch]:
        if self.images:
            yield from super().batches(preprocess, batch, workers)
            return
        for i in range(0, len(self.index), batch):  # nothing to decode
            idx = self.index[i:i + batch]
            yield Batch(np.ascontiguousarray(self.x[idx], np.float32), self.labels[idx])


def read_classes(path: str | os.PathLike) -> list[str]:
    """A ``--classes`` file: one class name per line, in the model's output order."""
    try:
        names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"cannot read --classes file '{path}' ({type(exc).__name__}); give a text file "
                               "with one class name per line") from None
    seen, dups = set(), []
    for n in names:
        if n in seen:
            dups.append(n)
        seen.add(n)
    if dups:
        raise CalibrationError(f"--classes file '{path}' names {', '.join(sorted(set(dups))[:5])} more than once; "
                               "each class must appear on exactly one line")
    if not names:
        raise CalibrationError(f"--classes file '{path}' is empty; list one class name per line")
    return names


def npz_file(path: str | os.PathLike) -> Arrays:
    """``x`` and ``y`` arrays (and optionally ``classes``) from an .npz file; never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"data file '{path}' does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile) or "x" not in data.files or "y" not in data.files:
                raise CalibrationError(f"'{path}' has no 'x' and 'y' arrays; save labelled data with "
                                       "np.savez(path, x=inputs, y=labels)")
            classes = [str(c) for c in data["classes"]] if "classes" in data.files else None
            x, y = data["x"], data["y"]
    except CalibrationError:
        raise
    except Exception as exc:
        raise CalibrationError(f"'{path}' is not a readable .npz file ({type(exc).__name__})") from None
    return Arrays(str(path), x, y, classes)


def is_labelled(source: str) -> bool:
    """Whether ``source`` carries labels: the digits, a folder with class subfolders, an .npz with ``y``."""
    if source == "digits" or source.startswith("digits:"):
        return True
    path = Path(source)
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                return "y" in data.files
        except Exception:
            return False
    return path.is_dir() and bool(_class_folders(path)) and not _loose_images(path)


def _class_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _loose_images(root: Path) -> list[Path]:
    """Images in ``root`` itself, outside any class subfolder."""
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_labelled(source: str, classes_file: str | os.PathLike | None = None,
                  size: tuple[int, int] = (32, 32), channels: int = 1, cache: PixelCache | None = None,
                  model_classes: list[str] | None = None) -> LabelledSource:
    """``digits`` (the 450 test images; ``digits:train``, ``digits:all``), an image folder with one
    subfolder per class, or an ``.npz`` file with ``x`` and ``y``. ``size`` and ``channels`` are the
    model's, for a source with its own preprocessing (the digits). ``cache`` keeps an image folder's
    decoded crops for the next run (the other sources have nothing to decode). ``model_classes``: the
    model's class names in output order, where it carries them; an image folder's subfolders are matched
    to them by name (``classes_file`` comes first)."""
    if source == "digits" or source.startswith("digits:"):
        from . import digits

        split = source.partition(":")[2] or "test"
        if split not in ("train", "test", "all"):
            raise CalibrationError(f"unknown digits split '{split}'; use digits, digits:train or digits:all")
        if classes_file:
            raise CalibrationError("--classes applies to image folders; the digits' classes are 0..9")
        images, labels = digits.digit_images(split)
        return Arrays(source, images, labels, list(digits.CLASSES), digits.preprocess(size[0], channels))
    path = Path(source)
    if path.suffix.lower() == ".npz":
        arrays = npz_file(path)
        if classes_file or model_classes:
            arrays.classes = read_classes(classes_file) if classes_file else list(model_classes)
        return arrays
    return ImageFolder(path, classes_file, cache, model_classes)

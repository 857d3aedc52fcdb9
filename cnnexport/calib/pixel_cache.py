"""A disk cache of decoded, resized and cropped images (``Preprocess.pixels``), so that evaluating a
second file, shard or run on the same image folder skips the JPEG decoding and resizing, which on a
small network costs as much CPU as the network itself. numpy and Pillow only.

One ``.npy`` per image, named by a hash of the image's path, size and modification time and of the
crop geometry (input size, channels, crop fraction): an edited image or another geometry misses, and
the mean and std, applied after the cache, can change freely. Entries are written atomically (temp
file, then rename), so concurrent shards may share one cache. A cache entry that cannot be read is
recomputed; one that cannot be written is skipped (the cache only saves time)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..errors import UsageError

# 2: 16-bit images scaled to 8 bits' range (version 1 cached them clipped to white)
CACHE_VERSION = 2


class PixelCache:
    """``root/<2 hex>/<sha1>.npy`` entries of ``Preprocess.pixels`` arrays."""

    def __init__(self, root: str | os.PathLike):
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=root, prefix=".probe-"):
                pass
        except OSError as exc:
            raise UsageError(f"cannot write the image cache '{root}' ({exc.strerror or type(exc).__name__}); "
                             "give --cache a writable folder") from None
        self.root = root
        self.hits = self.misses = 0
        self._lock = threading.Lock()  # decode threads count concurrently

    def pixels(self, image: Path, preprocess) -> np.ndarray:
        """``preprocess.pixels`` of the image file ``image``: from the cache when it holds them for this
        file and crop geometry, else decoded and stored."""
        geometry = (tuple(int(v) for v in preprocess.size), int(preprocess.channels), float(preprocess.crop_fraction))
        entry = self._entry(image, geometry)
        pixels = self._get(entry, geometry[0])
        if pixels is None:
            from PIL import Image

            with Image.open(image) as opened:
                pixels = preprocess.pixels(opened)
            self._put(entry, pixels)
        return pixels

    def _entry(self, image: Path, geometry: tuple) -> Path:
        st = image.stat()
        key = f"{CACHE_VERSION}|{image.resolve()}|{st.st_size}|{st.st_mtime_ns}|{geometry!r}"
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}.npy"

    def _get(self, entry: Path, shape: tuple[int, int]) -> np.ndarray | None:
        """The cached pixels, or None when absent or unreadable or not an ``shape`` image."""
        try:
            pixels = np.load(entry, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            pixels = None
        ok = pixels is not None and pixels.shape[:2] == tuple(shape) and (
            (pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8)
            or (pixels.ndim == 2 and pixels.dtype == np.float32))
        with self._lock:
            if ok:
                self.hits += 1
            else:
                self.misses += 1
        return pixels if ok else None

    def _put(self, entry: Path, pixels: np.ndarray) -> None:
        try:
            entry.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-", suffix=".npy")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.save(f, pixels, allow_pickle=False)
                os.replace(tmp, entry)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            pass  # a full or read-only disk: evaluate without caching this image

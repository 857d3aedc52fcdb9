"""The samples in the shape each quantizer wants: ONNX Runtime's ``CalibrationDataReader``,
``nncf.Dataset``, and the TFLite converter's representative dataset. numpy only; each
quantizer's own package is imported when its reader is made."""

from __future__ import annotations

from typing import Iterator

import numpy as np


class OrtCalibrationReader:
    """ONNX Runtime's ``CalibrationDataReader`` interface: ``get_next()`` a feed dict, None when done."""

    def __init__(self, samples: np.ndarray, input_name: str, batch_size: int = 1):
        self.samples, self.input_name, self.batch_size = samples, input_name, batch_size
        self._pos = 0

    def get_next(self) -> dict | None:
        if self._pos >= len(self.samples):
            return None
        batch = self.samples[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def rewind(self) -> None:
        self._pos = 0

    def __iter__(self) -> Iterator[dict]:
        """All feeds from the start (ONNX Runtime's qdq_loss_debug iterates over the reader)."""
        self.rewind()
        return iter(self.get_next, None)

    def __len__(self) -> int:
        return -(-len(self.samples) // self.batch_size)


def nncf_dataset(samples: np.ndarray):
    """``nncf.Dataset`` yielding one (1, C, H, W) sample at a time."""
    import nncf

    return nncf.Dataset([s[None] for s in samples.astype(np.float32)])


def representative_dataset(samples: np.ndarray, layout: str = "NHWC") -> Iterator[list[np.ndarray]]:
    """The TFLite converter's representative dataset: a list with one (1, ...) array per step."""
    for s in samples.astype(np.float32):
        x = s[None]
        if layout == "NHWC" and x.ndim == 4:
            x = x.transpose(0, 2, 3, 1)
        yield [np.ascontiguousarray(x)]

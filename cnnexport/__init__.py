"""cnnexport: export, verify and benchmark CNN classifiers.

``cnnexport.export(module, input_shape=(1, 3, 224, 224), output_dir=...)`` is the Python API;
heavy modules (torch, onnx) load only when it is first used, so the CLI starts fast.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["export", "__version__"]


def export(module, input_shape=(1, 3, 224, 224), output_dir=None, **kwargs) -> dict:
    """Export any ``torch.nn.Module``; see :func:`cnnexport.exporter.pipeline.export`."""
    from .exporter.pipeline import export as _export

    return _export(module, input_shape, output_dir, **kwargs)

"""prepare -> ONNX export -> structural check -> simplify -> verify.

Attributes load lazily: the ONNX-only parts (``check`` from ``profile.graph``, ``onnx_fold``,
``verify``, ``simplify``) work where torch is not installed; ``prepare``, ``to_onnx`` and ``export`` import torch.
"""

from importlib import import_module

_ATTRS = {
    "GraphFacts": "..profile.graph", "check": "..profile.graph",
    "fold_file": "onnx_fold_file", "fold_model": "onnx_fold",
    "simplify": "simplify",
    "compare": "verify", "make_inputs": "verify",
    "to_onnx": "onnx_export",
    "export": "pipeline",
    "PrepareSummary": "prepare", "ScaleShift": "prepare", "fold_conv_bn": "prepare", "prepare": "prepare",
    "prepare_with_summary": "prepare", "fold_bn_into_next_conv": "prepare",
}
__all__ = sorted(_ATTRS)


def __getattr__(name: str):
    if name in _ATTRS:
        module = _ATTRS[name]
        return getattr(import_module(module if module.startswith(".") else f".{module}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""prepare -> ONNX export -> structural check -> simplify -> verify. Imports torch."""

from .graph import GraphFacts, check
from .onnx_export import to_onnx
from .pipeline import export
from .prepare import PrepareSummary, ScaleShift, fold_conv_bn, prepare, prepare_with_summary
from .simplify import simplify
from .verify import compare, make_inputs

__all__ = ["GraphFacts", "check", "to_onnx", "export", "PrepareSummary", "ScaleShift", "fold_conv_bn", "prepare",
           "prepare_with_summary", "simplify", "compare", "make_inputs"]

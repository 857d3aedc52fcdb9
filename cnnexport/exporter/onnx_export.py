"""PyTorch -> ONNX with the TorchScript (default) or dynamo exporter, one self-contained file."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .._atomic import atomic_path
from .._quiet import quiet_fds
from ..errors import ExportError, UsageError, disk_full, cause_line

EXPORTERS = ("torchscript", "dynamo")
AUTO = "auto"  # TorchScript, then dynamo where TorchScript fails
DEFAULT_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "output"
_TWO_GB = 2**31


def to_onnx(
    module: nn.Module,
    path: str | os.PathLike,
    input_shape: tuple[int, ...],
    *,
    exporter: str = "torchscript",
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    keep_batchnorm: bool = False,
) -> list[str]:
    """Export ``module`` (already eval) to ``path`` atomically; return the exporter's warnings.

    ``keep_batchnorm`` stops the exporters' own Conv+BN fusion, for ``--no-fold-bn``.
    """
    if exporter not in EXPORTERS:
        raise UsageError(f"unknown exporter '{exporter}'; choose one of {', '.join(EXPORTERS)}")
    if not 7 <= opset <= 23:
        raise UsageError(f"opset {opset} is out of range; use 7..23 (default {DEFAULT_OPSET})")
    example = torch.randn(*input_shape)
    if exporter == "dynamo" and dynamic_batch and input_shape[0] < 2:
        # torch.export specialises a dimension whose example size is 1 (a batch-1 example pins the
        # batch in ConvNeXt's permute -> LayerNorm -> Linear): trace a batch of 2 to keep it symbolic.
        example = torch.randn(2, *input_shape[1:])
    with _quiet_torch_logs(), atomic_path(path) as tmp, warnings.catch_warnings(record=True) as caught, \
            contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("always")
        try:
            if exporter == "torchscript":
                with quiet_fds():  # on a failure, its C++ side prints the whole TorchScript graph to stderr
                    _export_torchscript(module, example, tmp, opset, dynamic_batch, keep_batchnorm)
            else:
                _export_dynamo(module, example, tmp, opset, dynamic_batch, keep_batchnorm)
        except (ExportError, UsageError):
            raise
        except Exception as exc:
            raise (disk_full(exc) or ExportError(_failure_message(exc, exporter, dynamic_batch))) from None
    return sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}" for w in caught
                   if not issubclass(w.category, (DeprecationWarning, FutureWarning))
                   and not any(s in str(w.message) for s in _EXPECTED_WARNINGS)})


def to_onnx_auto(module: nn.Module, path: str | os.PathLike, input_shape: tuple[int, ...], *,
                 exporter: str = AUTO, **options) -> tuple[str, list[str]]:
    """``to_onnx`` with ``exporter`` ``auto``: TorchScript, and the dynamo exporter where TorchScript fails
    (no conversion for one of the model's operators, e.g. an adaptive pool whose output size does not
    divide its input; a BatchNorm that normalises by the batch's own statistics). Returns the exporter
    that wrote the file and the warnings; where both fail, one error with both causes."""
    if exporter != AUTO:
        return exporter, to_onnx(module, path, input_shape, exporter=exporter, **options)
    try:
        return "torchscript", to_onnx(module, path, input_shape, exporter="torchscript", **options)
    except ExportError as exc:
        torchscript_failure = str(exc).rsplit("; try --exporter", 1)[0]
    try:
        warnings_ = to_onnx(module, path, input_shape, exporter="dynamo", **options)
    except ExportError as exc:
        dynamo_failure = str(exc).rsplit("; try --exporter", 1)[0].rsplit(", or try --exporter", 1)[0]
        raise ExportError(f"{torchscript_failure}; then {dynamo_failure}") from None
    cause = torchscript_failure.split(": ", 1)[-1]
    return "dynamo", [*warnings_, f"the TorchScript exporter cannot write this model ({cause[:160]}); "
                                  "the dynamo exporter wrote it"]


_BATCH_CAUSES = ("batch", "Constraints violated", "specialized", "Invalid ranges")


def _failure_message(exc: Exception, exporter: str, dynamic_batch: bool) -> str:
    """The exporter's real cause in one line, and what to try: a static batch when the dynamic batch
    axis is what failed, else the other exporter."""
    cause = cause_line(exc)
    hints = []
    if dynamic_batch and exporter == "dynamo" and any(s in cause for s in _BATCH_CAUSES):
        hints.append("the model fixes its batch size: export a static batch with --batch N")
    hints.append("try --exporter dynamo" if exporter == "torchscript" else "try --exporter torchscript")
    return f"the {exporter} exporter failed: {cause}; " + ", or ".join(hints)


# Warnings that our own choice of options causes and that say nothing about the user's model.
_EXPECTED_WARNINGS = ("constant folding be turned off",
                      "skipping _decide_input_format",  # a TorchScript module's forward has no Python signature
                      # reflect padding's reversed slice: onnxsim folds what the exporter leaves
                      "Only steps=1 can be constant folded")


@contextlib.contextmanager
def _quiet_torch_logs():
    """The dynamo exporter logs to stderr (e.g. 'torchvision is not installed'); library code stays silent."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "torch.export", "torch._guards",
                                               "torch.fx.experimental.symbolic_shapes", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)



def _export_torchscript(module, example, path: Path, opset: int, dynamic_batch: bool, keep_bn: bool) -> None:
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(
        module, (example,), str(path), dynamo=False, opset_version=opset,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes,
        do_constant_folding=True,
        # EVAL lets the exporter fuse Conv+BN by itself; PRESERVE (the module is in eval mode
        # either way) keeps BatchNormalization nodes for --no-fold-bn.
        training=torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL,
    )


def _export_dynamo(module, example, path: Path, opset: int, dynamic_batch: bool, keep_bn: bool) -> None:
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    program = torch.onnx.export(
        module, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME], dynamic_shapes=dynamic_shapes, verbose=False,
        # onnxscript's optimizer fuses BatchNormalization into Conv; skip it to keep BN nodes.
        optimize=not keep_bn,
    )
    if program is None:
        raise ExportError("the dynamo exporter returned no program")
    batch_dim = program.model.graph.inputs[0].shape[0] if dynamic_batch else None
    if isinstance(batch_dim, int):
        # torch.export may specialise a dimension the model's code branches on rather than fail.
        raise ExportError(f"the dynamo exporter fixed the batch axis at {batch_dim}: the model's code depends on "
                          "the batch size; export a static batch with --batch N, or try --exporter torchscript")
    size = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    program.save(str(path), external_data=size >= _TWO_GB)

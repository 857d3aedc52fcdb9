"""ExecuTorch (.pte): the prepared module captured by ``torch.export``, lowered to the edge dialect with
the XNNPACK partitioner and serialised as one program; int8 through PyTorch 2 export quantization
(PT2E) with the XNNPACK quantizer (symmetric, per-channel weights), calibrated on the same samples
as every other int8 file, then lowered the same way.

The program takes the export's batch only (static) unless ``max_batch`` is given: ExecuTorch plans its
memory ahead of time, and a dynamic batch (1..max_batch) costs a graph break at the classifier's
flatten (a view with a symbolic size stays outside XNNPACK). A dynamic program carries its bound as a
constant method, ``cnnexport_max_batch``, which the runtime adapter reads: the method's own metadata
gives no sign that an axis is dynamic.
The delegation report says how many operators run inside XNNPACK and which fall back to the portable
kernels; a fallback between two delegated partitions is a graph break.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..._atomic import atomic_path
from ..._quiet import quiet_logs
from ...errors import CalibrationError, ExportError, MissingDependencyError, UsageError, cause_line, disk_full
from . import Artifact, ConvertSource, Int8Options

INSTALL = "ExecuTorch is not installed: pip install 'cnnexport[executorch]'"
MAX_BATCH_METHOD = "cnnexport_max_batch"
# The graph's bookkeeping nodes, not operators: the delegate's output tuple is unpacked with getitem.
_NOT_OPERATORS = ("getitem",)


def convert(source: ConvertSource, dst: Path) -> Artifact:
    """The fp32 program, XNNPACK-delegated, at the export's batch (static) or 1..``max_batch``."""
    from .xnnpack_rewrites import for_executorch

    module, changes = for_executorch(source.prepared)
    max_batch = source.option("executorch_max_batch")
    with _quiet():
        exported, more = _capture(module, source.shape, max_batch)
        artifact = _write(exported, dst, "fp32", source.shape, max_batch)
    artifact.graph_changes = changes + more
    return artifact


def quantize(src: ConvertSource, dst: Path, calibration: np.ndarray, options: Int8Options, layout: str) -> dict:
    """The int8 program via PT2E: observers inserted by the XNNPACK quantizer, calibrated on
    ``calibration`` (NCHW), converted, lowered to XNNPACK."""
    import torch

    if len(calibration) == 0:
        raise CalibrationError("the calibration set is empty")
    with _quiet():
        try:
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        except ImportError:
            raise MissingDependencyError(INSTALL) from None
        from .xnnpack_rewrites import for_executorch

        shape = src.shape
        module, changes = for_executorch(src.prepared)
        exported, more = _capture(module, shape, src.option("executorch_max_batch"))
        changes, graph = changes + more, exported.module()
        quantizer = _quantizer()
        try:
            observed = prepare_pt2e(graph, quantizer)
            batch = shape[0]  # the captured graph takes the export's batch only
            usable = len(calibration) - len(calibration) % batch
            if usable == 0:
                raise CalibrationError(f"need at least {batch} calibration samples for a batch of {batch}")
            with torch.no_grad():
                for i in range(0, usable, batch):
                    observed(torch.from_numpy(np.ascontiguousarray(calibration[i:i + batch], dtype=np.float32)))
            quantized = convert_pt2e(observed)
        except CalibrationError:
            raise
        except Exception as exc:
            raise ExportError(f"ExecuTorch PT2E quantization failed: {cause_line(exc)}") from None
        program, _ = _capture(quantized, shape, src.option("executorch_max_batch"))
        artifact = _write(program, dst, "int8", shape, src.option("executorch_max_batch"))
    return {"runtime": "executorch", "format": "PT2E (XNNPACK quantizer)",
            "method": "XNNPACK quantizer: symmetric per-channel int8 weights, per-tensor affine int8 activations "
                      "(histogram observer); ReLU6 fused into its convolution's output",
            "calibration_samples": int(len(calibration)),
            "artifact_details": {**artifact.details, "graph_changes": changes}}


def _quantizer():
    """The XNNPACK quantizer, symmetric per-channel, that also quantizes a convolution followed by ReLU6
    (hardtanh) at the activation's output, as it does for ReLU.

    It fuses only ReLU: a convolution's output feeding ReLU6 gets its own observer over the full signed
    range, which ReLU6 then shares, so half the int8 codes go to values ReLU6 clamps to zero. On
    mobilenet_v2 that cost 0.007 of held-out cosine against ONNX Runtime and OpenVINO, which fuse the clip;
    XNNPACK lowers the fused pair as one clamped convolution either way."""
    try:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                             get_symmetric_quantization_config)
    except ImportError:
        raise MissingDependencyError(INSTALL) from None

    class Quantizer(XNNPACKQuantizer):
        def annotate(self, model):
            _annotate_conv_relu6(model, self.global_config)
            return super().annotate(model)

    return Quantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))


def _annotate_conv_relu6(model, config) -> None:
    """Annotate every conv2d whose only user is a hardtanh the way the XNNPACK quantizer annotates
    conv2d + relu: input, weight and bias at the convolution, the output after the clamp."""
    import torch
    from torchao.quantization.pt2e.quantizer import (QuantizationAnnotation, get_bias_qspec, get_input_act_qspec,
                                                     get_output_act_qspec, get_weight_qspec)
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    clamps = (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default)
    for clamp in model.graph.nodes:
        conv = clamp.args[0] if clamp.op == "call_function" and clamp.target in clamps else None
        if conv is None or conv.op != "call_function" or conv.target != torch.ops.aten.conv2d.default:
            continue
        if len(conv.users) > 1 or any(Q_ANNOTATION_KEY in n.meta for n in (conv, clamp)):
            continue
        inputs = {conv.args[0]: get_input_act_qspec(config), conv.args[1]: get_weight_qspec(config)}
        if len(conv.args) > 2 and isinstance(conv.args[2], torch.fx.Node):
            inputs[conv.args[2]] = get_bias_qspec(config)
        conv.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map=inputs, _annotated=True)
        clamp.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(output_qspec=get_output_act_qspec(config),
                                                              _annotated=True)


def describe_int8(info: dict) -> str:
    return f"ExecuTorch int8 via PT2E ({info['method']})"


def runtime_options(artifact: Artifact, batch_shape: tuple[int, ...]) -> dict:
    return {}


def _capture(module, shape: tuple[int, ...], max_batch: int | None = None):
    """``torch.export`` at a static input shape, or with the batch 1..``max_batch``, with the operators that
    are not Core ATen rewritten where an equivalent is (``aten_rewrites``); the program and what changed. A
    model it cannot capture is the user's to fix."""
    import torch

    from .aten_rewrites import adaptive_max_pools_as_max, channel_maxes_as_amax, describe

    dynamic = None
    if max_batch:
        shape = (min(2, max_batch), *shape[1:])  # an example batch of 1 would be specialised
        dynamic = ({0: torch.export.Dim("batch", min=1, max=max_batch)},)
    example = (torch.zeros(shape),)
    try:
        with torch.no_grad():
            program = torch.export.export(module, example, dynamic_shapes=dynamic, strict=False)
            graph = program.graph_module.graph
            changes = describe(adaptive_max_pools_as_max(graph), channel_maxes_as_amax(graph))
            if changes:  # captured again from the rewritten graph, so that every node carries its metadata
                program.graph_module.recompile()
                program = torch.export.export(program.module(), example, dynamic_shapes=dynamic, strict=False)
            return program, changes
    except Exception as exc:
        name = getattr(module, "cnnexport_name", None) or type(module).__name__
        raise UsageError(f"torch.export cannot capture {name} for ExecuTorch ({cause_line(exc, 220)}); make its "
                         "forward free of data-dependent control flow (torch.cond, or branch on shapes only), or "
                         "leave out --executorch") from None


def _write(exported, dst: Path, precision: str, shape: tuple[int, ...], max_batch: int | None = None) -> Artifact:
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ImportError:
        raise MissingDependencyError(INSTALL) from None
    try:
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()],
                                           constant_methods={MAX_BATCH_METHOD: max_batch} if max_batch else None)
        delegation = delegation_report(edge.exported_program().graph_module)
        program = edge.to_executorch()
    except Exception as exc:
        raise ExportError(f"ExecuTorch lowering (XNNPACK) failed: {cause_line(exc)}") from None
    try:
        with atomic_path(dst) as tmp:
            tmp.write_bytes(program.buffer)
    except OSError as exc:
        raise (disk_full(exc) or exc) from None
    batch = {"max_batch": int(max_batch)} if max_batch else {"static_batch": int(shape[0])}
    return Artifact("executorch", [Path(dst)], "executorch", precision=precision,
                    details={**batch, "delegation": delegation})


def delegation_report(graph_module) -> dict:
    """Operators inside XNNPACK partitions and outside them (portable kernels), per operator, and the
    graph breaks: one fewer than the delegated partitions when anything runs between them."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    by_op = {op: (b.delegated, b.non_delegated) for op, b in info.delegation_by_operator.items()
             if op not in _NOT_OPERATORS}
    portable = {op: n for op, (_, n) in sorted(by_op.items()) if n}
    delegated = sum(d for d, _ in by_op.values())
    total = delegated + sum(portable.values())
    return {"delegate": "XNNPACK", "delegated_partitions": int(info.num_delegated_subgraphs),
            "delegated_ops": int(delegated), "portable_ops": int(sum(portable.values())),
            "portable_by_op": portable, "delegated_fraction": delegated / total if total else 0.0,
            "graph_breaks": max(0, int(info.num_delegated_subgraphs) - 1) if portable else 0}


def _quiet():
    """torch.export, the edge passes and the quantizer warn and log at length; the report says what matters."""
    return quiet_logs(("executorch", "torch._export", "torch.export", "torch._dynamo", "torchao", "root"))


def plain(module, x, path: Path) -> None:
    """``bench --plain``: ``to_edge_transform_and_lower(torch.export.export(module, (x,)),
    partitioner=[XnnpackPartitioner()]).to_executorch()``."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = to_edge_transform_and_lower(torch.export.export(module, (x,)),
                                          partitioner=[XnnpackPartitioner()]).to_executorch()
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(program.buffer)

"""Structural facts read from a SAVED ONNX file (never an ONNX Runtime session, whose own
optimisations would hide an unfolded BatchNorm or a Dropout)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .._onnx_safety import check_external_data, load_structure
from ..errors import InvalidModelFileError, first_line


@dataclass
class GraphFacts:
    op_counts: dict[str, int]
    nodes: int
    opset: int
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)

    @property
    def batchnorm_nodes(self) -> int:
        return self.op_counts.get("BatchNormalization", 0)

    @property
    def dropout_nodes(self) -> int:
        return self.op_counts.get("Dropout", 0)

    @property
    def dynamic_batch(self) -> bool:
        return bool(self.inputs) and all(not isinstance(i["shape"][0], int) for i in self.inputs if i["shape"])


def _count_ops(graph, counter: Counter) -> None:
    for node in graph.node:
        counter[node.op_type] += 1
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                _count_ops(attr.g, counter)
            for sub in attr.graphs:
                _count_ops(sub, counter)


def _value_info(value) -> dict:
    dims = value.type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]
    return {"name": value.name, "shape": shape, "elem_type": value.type.tensor_type.elem_type}


def check(path: str | os.PathLike, *, full_check: bool = True, model=None) -> GraphFacts:
    """Run ``onnx.checker`` (full check, with shape inference) on the file and count its nodes.
    ``model``: the file's ModelProto (without external data) when the caller holds it already,
    which saves reading the file once more (100 MB for resnet50)."""
    import onnx

    shown, path = os.fspath(path), Path(path)  # errors name the path as the user typed it
    if not path.is_file():
        raise InvalidModelFileError(f"ONNX file '{shown}' does not exist")
    model = model if model is not None else load_structure(shown)
    check_external_data(path, model)
    try:
        # The path form of the checker also handles models with external data, and does not
        # serialise a loaded ModelProto back to bytes first.
        onnx.checker.check_model(str(path), full_check=full_check)
    except Exception as exc:
        first = first_line(exc)
        raise InvalidModelFileError(f"'{shown}' is not a valid ONNX model: {first}") from None
    counter: Counter = Counter()
    _count_ops(model.graph, counter)
    init_names = {i.name for i in model.graph.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return GraphFacts(
        op_counts=dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))),
        nodes=sum(counter.values()),
        opset=opset,
        inputs=[_value_info(v) for v in model.graph.input if v.name not in init_names],
        outputs=[_value_info(v) for v in model.graph.output],
    )

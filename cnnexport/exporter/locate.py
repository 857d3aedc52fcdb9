"""Where a converted file first departs from the ONNX file it was made from: ``cnnexport verify --locate``.

ONNX Runtime runs the ONNX file with its intermediate tensors as outputs; the file's runtime runs the file
and returns the tensors its converter kept under their ONNX names (MNN and OpenVINO keep them). Both are
compared in the ONNX graph's order on the reference input the file gets most wrong. Where a tensor's error
is over ``THRESHOLD`` of its own scale, its operator is run alone by ONNX Runtime on the file's own inputs:
if the file's output differs from that too, the operator computes wrongly (the first such is the one to
rewrite, or to report to the runtime's maintainers); if not, it passes on its inputs' rounding, amplified
(a softmax of large logits does). Where an operator cannot be run alone, it departs if every input of it
that the file holds is within the threshold. No torch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..errors import UsageError

THRESHOLD = 1e-4  # of a tensor's max |value|: the fp32 rule's own relative tolerance


def worst_input(model, inputs: list, refs: list) -> tuple[np.ndarray, str]:
    """The reference batch the file (a runtime adapter taking NCHW) gets most wrong, cut to the sample with the
    largest error where the file takes any batch size, and its name ('photos #2')."""
    from ..runtimes import run_nchw

    worst = (-1.0, None, "")
    for s, r in zip(inputs, refs):
        x = np.concatenate(s.batches)
        error = np.abs(run_nchw(model, x).reshape(len(x), -1) - r.reshape(len(r), -1)).max(axis=1)
        i = int(error.argmax())
        if error[i] > worst[0]:
            worst = (float(error[i]), (x, i), f"{s.name} #{i}")
    (x, i), name = worst[1], worst[2]
    static = model.inputs[0].shape[0] if model.inputs[0].shape else None
    return (x[i:i + 1] if static in (None, 1) else x[:static]), name


def locate(onnx_path: str | Path, model, x: np.ndarray, threshold: float = THRESHOLD) -> dict:
    """Compare the tensors ``model`` (a runtime adapter with ``intermediates``) holds with ONNX Runtime's on
    ``onnx_path`` for the NCHW batch ``x``: the first operator that computes wrongly (or None), where the error
    first passes ``threshold``, the worst tensor and the counts."""
    graph = _load_onnx(onnx_path)
    nodes = list(graph.graph.node)
    names = [o for n in nodes for o in n.output if o]
    theirs = model.intermediates(x, names)
    held = [n for n in names if n in theirs]
    if not held:
        raise UsageError(f"'{Path(getattr(model, 'path', 'the file')).name}' holds none of the tensor names of "
                         f"'{Path(onnx_path).name}': pass the ONNX file it was converted from with --onnx")
    feeds = {_first_input(graph): x}
    try:
        ours = _run(graph, feeds, names)
    except Exception:  # a value ONNX Runtime cannot return as an output (a sequence): the held ones only
        ours = _run(graph, feeds, held)
    errors = {n: e for n in held for e in [_relative(ours[n], theirs[n])] if e is not None}
    own = {n: theirs[n].astype(ours[n].dtype).reshape(ours[n].shape) for n in errors}  # the file's own values
    producer = {o: n for n in nodes for o in n.output}
    order = {id(n): k for k, n in enumerate(nodes)}
    initializers = {t.name: t for t in graph.graph.initializer}
    first, grows = None, None
    for name in (n for n in held if errors.get(n, 0.0) > threshold):
        group, frontier = _group(producer[name], producer, own, initializers)
        node = producer[name]
        inputs = [{"tensor": i, "error": errors[i]} for i in frontier if i in errors]
        grows = grows or {"op": node.op_type, "tensor": name, "error": errors[name]}
        # the op (with those the file fused into it) on the file's own inputs
        alone = _alone(graph, sorted(group, key=lambda n: order[id(n)]), name, frontier,
                       {**own, **feeds}, initializers)
        op_error = _relative(alone, theirs[name]) if alone is not None else None
        if (op_error or 0.0) > threshold or op_error is None and inputs and all(
                i["error"] <= threshold for i in inputs):
            first = {"op": node.op_type, "node": node.name, "tensor": name, "error": errors[name], "inputs": inputs,
                     "fused": [n.op_type for n in group if n is not node and n.op_type != "Constant"],
                     "shape": list(ours[name].shape), "on_its_inputs": op_error}
            break
    worst = max(errors, key=errors.get) if errors else None
    return {"onnx": Path(onnx_path).name, "tensors": len(names), "held": len(held), "compared": len(errors),
            "threshold": threshold, "first_departure": first, "error_grows_from": grows,
            "worst": {"op": producer[worst].op_type, "tensor": worst, "error": errors[worst]} if worst else None}


def _group(node, producer: dict, held: dict, initializers: dict) -> tuple[list, list[str]]:
    """``node`` with the nodes before it whose outputs the file does not hold (those its converter fused into
    it), and the tensors that feed them: held ones, or the graph's input."""
    group, frontier, todo = [], [], [node]
    while todo:
        n = todo.pop()
        if any(n is g for g in group):
            continue
        group.append(n)
        for i in (i for i in n.input if i and i not in initializers):
            if i in held or i not in producer:
                if i not in frontier:
                    frontier.append(i)
            else:
                todo.append(producer[i])
    return group, frontier


def _run(graph, feeds: dict, names: list[str]) -> dict:
    """ONNX Runtime's values of ``names`` in ``graph`` (a ModelProto; its outputs become those names)."""
    import onnx
    import onnxruntime as ort

    del graph.graph.output[:]
    graph.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    with tempfile.TemporaryDirectory() as tmp:  # a file, not bytes: a model over 2 GB cannot be serialised
        path = Path(tmp) / "all_outputs.onnx"
        onnx.save(graph, str(path), save_as_external_data=graph.ByteSize() > 2**31 - 2**20)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return dict(zip(names, session.run(names, feeds)))


def _first_input(graph) -> str:
    initializers = {t.name for t in graph.graph.initializer}
    return next(i.name for i in graph.graph.input if i.name not in initializers)


def _alone(graph, group: list, output: str, frontier: list[str], values: dict, initializers: dict
           ) -> np.ndarray | None:
    """ONNX Runtime's value of ``output`` from ``group`` (nodes in graph order) run alone on ``values`` of the
    ``frontier`` tensors; None where it cannot be (a value missing, a subgraph)."""
    import onnxruntime as ort
    from onnx import helper

    if any(a.type in (a.GRAPH, a.GRAPHS) for n in group for a in n.attribute) or any(i not in values for i in frontier):
        return None
    used = {i for n in group for i in n.input}
    inputs = [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(values[i].dtype), values[i].shape)
              for i in frontier]
    alone = helper.make_model(helper.make_graph(group, "alone", inputs, [helper.make_empty_tensor_value_info(output)],
                                                [initializers[i] for i in used if i in initializers]),
                              opset_imports=graph.opset_import, ir_version=graph.ir_version)
    try:
        session = ort.InferenceSession(alone.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run([output], {i: values[i] for i in frontier})[0]
    except Exception:
        return None


def located(model, onnx_path, inputs: list, refs: list) -> dict | None:
    """:func:`locate` on the reference input the file gets most wrong, where its runtime holds the ONNX names
    (``model.intermediates``); None where it cannot (another runtime, or any error: a diagnosis must never hide
    the failure it explains)."""
    from ..runtimes.base import RuntimeModel

    if type(model).intermediates is RuntimeModel.intermediates:
        return None
    try:
        x, name = worst_input(model, inputs, refs)
        return locate(onnx_path, model, x) | {"input": name}
    except Exception:
        return None


def departure_text(found: dict) -> str:
    """One clause for a failure line: where the file first departs from the ONNX file, or that no operator
    computes wrongly (rounding, amplified)."""
    first, grows = found["first_departure"], found["error_grows_from"]
    if first:
        alone = (f"; run alone on its own inputs, ONNX Runtime's differs by {first['on_its_inputs']:.1e}"
                 if first["on_its_inputs"] is not None else "")
        inputs = max((i["error"] for i in first["inputs"]), default=None)
        return (f"it first departs from {found['onnx']} at {first['op']} '{first['tensor']}' (error "
                f"{first['error']:.1e} of its scale" + (f", its inputs within {inputs:.1e}" if inputs is not None
                                                        else "") + f"{alone})")
    if grows:
        return (f"no operator of it computes wrongly on its own inputs: rounding, amplified (past "
                f"{found['threshold']:.0e} first at {grows['op']} '{grows['tensor']}')")
    return f"every tensor it holds is within {found['threshold']:.0e} of {found['onnx']}'s"


def onnx_beside(artifact: str | Path, meta: dict) -> Path:
    """The ONNX file the export wrote beside ``artifact`` (``<model>.onnx``, the model named by its reference),
    or UsageError saying to name it."""
    folder = Path(artifact).parent
    candidates = [folder / f"{meta['model']}.onnx"] if meta.get("model") else []
    candidates.append(folder / f"{Path(artifact).name.split('.')[0]}.onnx")
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise UsageError(f"--locate needs the ONNX file '{Path(artifact).name}' was converted from, and there is no "
                         f"{candidates[0].name} beside it: pass it with --onnx")
    return found


def _load_onnx(path: str | Path):
    import onnx

    if not Path(path).is_file():
        raise UsageError(f"ONNX file '{path}' does not exist; pass the one the file was converted from with --onnx")
    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise UsageError(f"'{path}' is not an ONNX file ({type(exc).__name__}); pass the one the file was converted "
                         "from with --onnx") from None


def _relative(ours: np.ndarray, theirs: np.ndarray) -> float | None:
    """max |theirs - ours| / max |ours|; None where the two cannot be compared (a different size, a layout
    the runtime keeps its own way)."""
    if ours.size != theirs.size or ours.size == 0:
        return None
    a, b = np.asarray(ours, np.float64).ravel(), np.asarray(theirs, np.float64).reshape(ours.shape).ravel()
    scale = np.abs(a).max()
    return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(b).max())

"""Refuse ONNX files whose external-data locations point outside the model's own folder
(``../../etc/passwd``, absolute paths): a model file from elsewhere must not read arbitrary files."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InvalidModelFileError, first_line


def check_external_data(path: str | os.PathLike) -> list[str]:
    """The external-data files ``path`` refers to (relative names); raises if any escapes its folder."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        first = first_line(exc, 200)
        raise InvalidModelFileError(f"'{path}' is not a valid ONNX model: {first}") from None
    folder = path.resolve().parent
    locations = []
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node for a in n.attribute if a.HasField("t")]
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or folder not in target.parents:
            raise InvalidModelFileError(f"'{path.name}' refers to external data '{location}' outside its folder; "
                                        "refusing to read it (keep .onnx.data files beside the model)")
        locations.append(location)
    return sorted(set(locations))

"""Refuse ONNX files whose external-data locations point outside the model's own folder
(``../../etc/passwd``, absolute paths): a model file from elsewhere must not read arbitrary files."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InvalidModelFileError, first_line


def check_external_data(path: str | os.PathLike, model=None) -> list[str]:
    """The external-data files ``path`` refers to (relative names); raises if any escapes its folder.
    ``model``: the file's ModelProto when the caller has loaded it already (without its external data)."""
    import onnx

    path = Path(path)
    if model is None:
        if not _mentions_location(path):
            return []
        model = load_structure(path)
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


def _mentions_location(path: Path) -> bool:
    """False only when the file cannot refer to external data: every reference carries the key
    "location", so a file without those bytes needs no parse (a 100 MB parse costs 0.1 s)."""
    import mmap

    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(b"location") >= 0
    except (OSError, ValueError):  # empty or unreadable: let the parse below name the problem
        return True


def load_structure(path: str | os.PathLike):
    """The ModelProto of ``path`` without its external data (never followed before the check above)."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        first = first_line(exc, 200)
        raise InvalidModelFileError(f"'{path}' is not a valid ONNX model: {first}") from None

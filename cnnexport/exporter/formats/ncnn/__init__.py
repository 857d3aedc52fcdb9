"""ncnn (.ncnn.param + .ncnn.bin): converted by pnnx from the prepared module, or from the verified ONNX file
where that route fails; fp32 weights; no int8."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ...._quiet import quiet_fds
from ....errors import ExportError, MissingDependencyError, disk_full, cause_line
from .. import Artifact, ConvertSource

quantize = None  # cnnexport writes no ncnn int8 file (ncnn's own ncnn2int8 tool does)
describe_int8 = None


def convert(source: ConvertSource, dst: Path) -> Artifact:
    """The ncnn files of the prepared module through pnnx's TorchScript route; where that fails, writes layers
    ncnn has no kernel for (pnnx.Expression, Tensor.reshape, ...) or a file ncnn's runtime crashes on, pnnx once
    more from the verified ONNX file, whose ops pnnx maps otherwise (GeM's clamp-pow-pool, scaled dot-product
    attention). Each candidate is run once in a child process first (at the export's shape and at batch 3, as
    the check runs them): ncnn's runtime crashes the process outright on some converted graphs (SIGFPE), which
    would take the export down with it, its staging folder left behind."""
    failures = []
    for route in ("module", "onnx"):
        try:
            files, changes = ((to_ncnn(source.prepared, dst, source.shape), []) if route == "module"
                              else onnx_to_ncnn(source.onnx_path, dst, source.shape))
        except ExportError as exc:
            failures.append((route, str(exc)))
            continue
        problem = _unusable(files[0], source.shape)
        if problem is None:
            details = {"converted_from": route}
            if failures:
                details["module_route_failed"] = failures[0][1]
            return Artifact("ncnn", files, "ncnn", graph_changes=changes, details=details)
        for f in files:
            f.unlink(missing_ok=True)
        failures.append((route, problem))
    raise ExportError("; ".join(f"{'from the module' if r == 'module' else 'from the ONNX file'}: {why}"
                                for r, why in failures) + ": ncnn cannot run this model (leave out --ncnn)")


def _unusable(param: Path, shape: tuple[int, ...]) -> str | None:
    """Why ncnn cannot run the converted file: layer types it has no kernel for (read from the .param, as
    ``load_param`` would refuse them), or how its runtime crashed in a child process; None when it runs."""
    from ....runtimes.ncnn import import_ncnn
    from ....runtimes.smoke import crash_of

    ncnn = import_ncnn()
    lines = param.read_text(errors="replace").splitlines()[2:]  # magic, then the layer and blob counts
    known = getattr(ncnn, "layer_to_index", None)  # -1 for a type no kernel is registered under
    unknown = sorted({ln.split()[0] for ln in lines if ln.strip() and known and known(ln.split()[0]) < 0})
    if unknown:
        return f"pnnx wrote layers ncnn has no kernel for ({', '.join(unknown)})"
    crash = crash_of("ncnn", str(param), sorted({shape, (3, *shape[1:])}))
    return f"ncnn's runtime {crash} running the converted file" if crash else None


def runtime_options(artifact: Artifact, batch_shape: tuple[int, ...]) -> dict:
    """ncnn's Python binding has no input shapes: the adapter takes the batch it will be fed."""
    return {"input_shape": tuple(batch_shape)}


def to_ncnn(module, param_path: str | os.PathLike, input_shape: tuple[int, ...]) -> list[Path]:
    """Write ``<name>.ncnn.param`` and ``<name>.ncnn.bin`` from a module (pnnx traces it with TorchScript);
    pnnx's own intermediates stay in a temp folder."""
    import torch

    pnnx = _import_pnnx()
    return _with_pnnx(lambda t: pnnx.export(module, str(t / "m.pt"), (torch.randn(*input_shape),), fp16=False,
                                            **_pnnx_outputs(t)), param_path)


def onnx_to_ncnn(onnx_path: str | os.PathLike, param_path: str | os.PathLike,
                 input_shape: tuple[int, ...]) -> tuple[list[Path], list[str]]:
    """The same from an ONNX file, and the rewrites made to a copy of it first (``onnx_slices``): pnnx reads ONNX
    too, and maps some graphs otherwise. (The example input, not ``input_shapes``: pnnx 20261020's ``convert``
    passes ``fp16=False`` on only with ``inputs``, and wrote fp16 weights otherwise, 2e-4 off.)"""
    import onnx
    import torch

    from .onnx_slices import strided_slices_as_pools

    pnnx = _import_pnnx()
    model = onnx.load(str(onnx_path))
    picked = strided_slices_as_pools(model)
    changes = [f"{picked} strided slice(s) of height or width as a slice and a 1x1 max pool with that stride "
               "(ncnn's Crop takes no step)"] if picked else []

    def run(t: Path) -> None:
        read = onnx_path
        if picked:
            read = t / "m.onnx"
            onnx.save(model, str(read))
        pnnx.convert(str(read), inputs=[torch.zeros(*input_shape)], fp16=False, **_pnnx_outputs(t))

    return _with_pnnx(run, param_path), changes


def _import_pnnx():
    try:
        import pnnx
    except ImportError:
        raise MissingDependencyError("the ncnn converter is not installed: pip install 'cnnexport[ncnn]'") from None
    return pnnx


def _pnnx_outputs(t: Path) -> dict:
    """Where pnnx writes each of its files in the folder ``t`` (each named: it writes beside its input otherwise)."""
    return {"pnnxparam": str(t / "m.pnnx.param"), "pnnxbin": str(t / "m.pnnx.bin"), "pnnxpy": str(t / "m_pnnx.py"),
            "pnnxonnx": str(t / "m.pnnx.onnx"), "ncnnparam": str(t / "m.ncnn.param"),
            "ncnnbin": str(t / "m.ncnn.bin"), "ncnnpy": str(t / "m_ncnn.py")}


def _with_pnnx(run, param_path: str | os.PathLike) -> list[Path]:
    """``run(folder)`` writes pnnx's files into a temp folder beside ``param_path``; the two ncnn files move out."""
    param_path = Path(param_path)
    bin_path = param_path.with_suffix(".bin")
    with tempfile.TemporaryDirectory(dir=param_path.parent) as tmp:
        t = Path(tmp)
        try:
            with quiet_fds():
                run(t)
        except Exception as exc:
            if not _only_its_python_copy_failed(exc, t):
                raise (disk_full(exc) or ExportError(f"ncnn conversion (pnnx) failed: {cause_line(exc)}")) from None
        if not (t / "m.ncnn.param").is_file():
            raise ExportError("ncnn conversion (pnnx) wrote no .ncnn.param file")
        shutil.move(str(t / "m.ncnn.param"), param_path)
        shutil.move(str(t / "m.ncnn.bin"), bin_path)
    return [param_path, bin_path]


def _only_its_python_copy_failed(exc: Exception, folder: Path) -> bool:
    """Whether pnnx wrote the ncnn files and then failed only to import the PyTorch copy of the model it also
    writes (``m_pnnx.py``), which cnnexport does not use: pnnx names attributes after module paths, so a model
    whose parameters sit directly in an ``nn.Sequential`` ("1.p") gets ``self.1_p``, a syntax error."""
    import traceback

    in_copy = (isinstance(exc, SyntaxError) and Path(exc.filename or "").name == "m_pnnx.py") or any(
        Path(frame.filename).name == "m_pnnx.py" for frame in traceback.extract_tb(exc.__traceback__))
    written = all((folder / name).is_file() and (folder / name).stat().st_size for name in ("m.ncnn.param",
                                                                                              "m.ncnn.bin"))
    return in_copy and written


def plain(module, x, path: Path) -> None:
    """``bench --plain``: ``pnnx.export(module, path, (x,))`` with its defaults."""
    import pnnx

    with tempfile.TemporaryDirectory(prefix="cnnexport-plain-ncnn-") as tmp:
        t = Path(tmp)
        pnnx.export(module, str(t / "m.pt"), (x,), **_pnnx_outputs(t))
        shutil.move(str(t / "m.ncnn.bin"), str(path.with_name(path.name.replace(".param", ".bin"))))
        shutil.move(str(t / "m.ncnn.param"), str(path))

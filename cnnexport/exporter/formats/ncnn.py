"""ncnn (.ncnn.param + .ncnn.bin): converted from the prepared module through pnnx, fp32 weights; no int8."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..._quiet import quiet_fds
from ...errors import ExportError, MissingDependencyError, disk_full, cause_line
from . import Artifact, ConvertSource

quantize = None  # cnnexport writes no ncnn int8 file (ncnn's own ncnn2int8 tool does)
describe_int8 = None


def convert(source: ConvertSource, dst: Path) -> Artifact:
    """The ncnn files of the prepared module, run once in a child process first (at the export's shape and at
    batch 3, as the check runs them): ncnn's runtime crashes the process outright on some converted graphs
    (SIGFPE), which would take the export down with it, its staging folder left behind."""
    from ...runtimes.smoke import crash_of

    files = to_ncnn(source.prepared, dst, source.shape)
    crash = crash_of("ncnn", str(files[0]), sorted({source.shape, (3, *source.shape[1:])}))
    if crash:
        for f in files:
            f.unlink(missing_ok=True)
        raise ExportError(f"ncnn's runtime {crash} running the converted file: ncnn cannot run this model "
                          "(leave out --ncnn)")
    return Artifact("ncnn", files, "ncnn")


def runtime_options(artifact: Artifact, batch_shape: tuple[int, ...]) -> dict:
    """ncnn's Python binding has no input shapes: the adapter takes the batch it will be fed."""
    return {"input_shape": tuple(batch_shape)}


def to_ncnn(module, param_path: str | os.PathLike, input_shape: tuple[int, ...]) -> list[Path]:
    """Write ``<name>.ncnn.param`` and ``<name>.ncnn.bin``; pnnx's own intermediates stay in a temp folder."""
    import torch

    try:
        import pnnx
    except ImportError:
        raise MissingDependencyError("the ncnn converter is not installed: pip install 'cnnexport[ncnn]'") from None
    param_path = Path(param_path)
    bin_path = param_path.with_suffix(".bin")
    with tempfile.TemporaryDirectory(dir=param_path.parent) as tmp:
        t = Path(tmp)
        try:
            with quiet_fds():
                pnnx.export(module, str(t / "m.pt"), (torch.randn(*input_shape),), fp16=False,
                            pnnxparam=str(t / "m.pnnx.param"), pnnxbin=str(t / "m.pnnx.bin"),
                            pnnxpy=str(t / "m_pnnx.py"), pnnxonnx=str(t / "m.pnnx.onnx"),
                            ncnnparam=str(t / "m.ncnn.param"), ncnnbin=str(t / "m.ncnn.bin"), ncnnpy=str(t / "m_ncnn.py"))
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
        pnnx.export(module, str(t / "m.pt"), (x,), ncnnparam=str(t / "m.ncnn.param"), ncnnbin=str(t / "m.ncnn.bin"),
                    pnnxparam=str(t / "m.pnnx.param"), pnnxbin=str(t / "m.pnnx.bin"), pnnxpy=str(t / "m_pnnx.py"),
                    pnnxonnx=str(t / "m.pnnx.onnx"), ncnnpy=str(t / "m_ncnn.py"))
        shutil.move(str(t / "m.ncnn.bin"), str(path.with_name(path.name.replace(".param", ".bin"))))
        shutil.move(str(t / "m.ncnn.param"), str(path))

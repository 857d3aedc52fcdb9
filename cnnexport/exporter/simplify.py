"""Graph simplification with onnxsim (onnxslim as the fallback)."""

from __future__ import annotations

import contextlib
import io
import os

from .._atomic import atomic_path


def simplify(src: str | os.PathLike, dst: str | os.PathLike, *,
             keep_batchnorm: bool = False) -> tuple[str, list[str], object | None]:
    """Simplify ``src`` into ``dst`` (may be the same path), atomically.

    Returns the tool used ("onnxsim", "onnxslim" or "none"), warnings, and the simplified
    ModelProto when one was loaded (None otherwise). A simplifier that fails or is absent leaves
    the graph as exported, with a warning, rather than failing the run.
    """
    warnings: list[str] = []
    try:
        import onnxsim

        with atomic_path(dst) as tmp, contextlib.redirect_stdout(io.StringIO()):
            # File to file: onnxsim's C++ core reads and writes the model itself, which spares a
            # Python load, a serialisation and a save of every weight (1 s of 1.4 for resnet50).
            simplified, ok = onnxsim.simplify(str(src), skip_fuse_bn=keep_batchnorm, output_path=str(tmp))
            if not ok:
                raise RuntimeError("onnxsim's own check of the simplified model failed")
        return "onnxsim", warnings, simplified
    except Exception as exc:
        warnings.append(f"onnxsim failed ({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})")
    import onnx

    model = onnx.load(str(src))
    simplified, tool = _slim(model, keep_batchnorm, warnings)
    if simplified is not model or str(src) != str(dst):
        with atomic_path(dst) as tmp:
            onnx.save(simplified, str(tmp))
    return tool, warnings, None


def _slim(model, keep_batchnorm: bool, warnings: list[str]):
    try:
        import onnxslim
    except ImportError:
        warnings.append("graph left unsimplified (pip install onnxslim for a fallback)")
        return model, "none"
    if keep_batchnorm:
        warnings.append("graph left unsimplified (onnxslim would fuse the BatchNorm nodes kept by --no-fold-bn)")
        return model, "none"
    try:
        return onnxslim.slim(model), "onnxslim"
    except Exception as exc:
        warnings.append(f"onnxslim failed too ({type(exc).__name__}); graph left unsimplified")
        return model, "none"

"""Graph simplification with onnxsim (onnxslim as the fallback)."""

from __future__ import annotations

import contextlib
import io
import os

from .._atomic import atomic_path


def simplify(src: str | os.PathLike, dst: str | os.PathLike, *, keep_batchnorm: bool = False) -> tuple[str, list[str]]:
    """Simplify ``src`` into ``dst`` (may be the same path), atomically.

    Returns the tool used ("onnxsim", "onnxslim" or "none") and warnings. A simplifier that
    fails or is absent leaves the graph as exported, with a warning, rather than failing the run.
    """
    import onnx

    warnings: list[str] = []
    model = onnx.load(str(src))
    try:
        import onnxsim

        with contextlib.redirect_stdout(io.StringIO()):
            simplified, ok = onnxsim.simplify(model, skip_fuse_bn=keep_batchnorm)
        if not ok:
            raise RuntimeError("onnxsim's own check of the simplified model failed")
        tool = "onnxsim"
    except Exception as exc:
        warnings.append(f"onnxsim failed ({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})")
        simplified, tool = _slim(model, keep_batchnorm, warnings)
    with atomic_path(dst) as tmp:
        onnx.save(simplified, str(tmp))
    return tool, warnings


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

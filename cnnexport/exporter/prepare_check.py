"""Facts measured in PyTorch before anything is exported.

* The model's own rounding floor: its fp32 outputs against the same model run in float64 on the
  same inputs. A correct export of a model whose fp32 result is already 8e-4 away from the exact one
  cannot be held to 1e-4; the tolerance takes the larger of the fixed rule and a small multiple of
  this floor, and a failure says which side of it the error lies.
* What a runtime's approximate functions (ncnn's and MNN's tanh, MNN's GELU: ``RUNTIME_TABLE``'s
  ``approximate_ops``) do to the model's outputs: float64 with those functions' results moved by up
  to their error, against float64 without. A file on that runtime is held to that floor as well.
* Whether ``prepare`` kept what the model computes: the prepared module against the original. When
  it did not, the changes are bisected (``prepare_with_summary(limit=k)``) to name the first one that
  broke it.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import PrepareError
from ..runtimes import RUNTIME_TABLE
from .verify import InputSet, compare, diagnosis




def _approximable() -> dict:
    """PyTorch's functions a runtime may approximate, by the name ``approximate_ops`` gives them."""
    import torch.nn.functional as F

    return {torch.tanh: "tanh", torch.Tensor.tanh: "tanh", F.gelu: "gelu"}


class _Approximated(torch.overrides.TorchFunctionMode):
    """Records which approximable functions run (``seen``), and adds to their results uniform noise of
    up to ``errors[name]`` (seeded: the same floor every time)."""

    def __init__(self, errors: dict[str, float] | None = None, seed: int = 0):
        super().__init__()
        self.errors, self.names, self.seen = errors or {}, _approximable(), set()
        self.generator = torch.Generator().manual_seed(seed)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = self.names.get(func)
        if name is not None and isinstance(out, torch.Tensor):
            self.seen.add(name)
            if name in self.errors:
                noise = torch.rand(out.shape, generator=self.generator, dtype=torch.float64).to(out.dtype)
                out = out + self.errors[name] * (2 * noise - 1)
        return out


def _float64_outputs(double: nn.Module, inputs: list[InputSet], forward, mode: _Approximated) -> list[np.ndarray]:
    with torch.no_grad(), mode:
        return [np.concatenate([forward(double, torch.from_numpy(b).double()).numpy() for b in s.batches])
                for s in inputs]


def approximation_floors(module: nn.Module, inputs: list[InputSet],
                         forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                         runtimes: dict[str, dict[str, float]] | None = None) -> dict[str, float]:
    """Per runtime of ``runtimes`` (runtime -> {function: absolute error}; default: ``RUNTIME_TABLE``'s
    ``approximate_ops``) whose approximate functions ``module`` calls: max |float64 outputs with those
    functions' results moved by up to their error - float64 outputs|, over ``inputs``. {} when the model
    calls none of them or does not run in float64."""
    if runtimes is None:
        runtimes = {r.name: dict(r.approximate_ops) for r in RUNTIME_TABLE.values() if r.approximate_ops}
    try:
        double = copy.deepcopy(module).eval().double()
        exact_mode = _Approximated()
        exact = _float64_outputs(double, inputs, forward, exact_mode)
        floors = {}
        for runtime, errors in runtimes.items():
            used = {k: v for k, v in errors.items() if k in exact_mode.seen}
            if used:
                moved = _float64_outputs(double, inputs, forward, _Approximated(used))
                floors[runtime] = max(float(np.abs(m - e).max()) for m, e in zip(moved, exact))
        return floors
    except Exception:  # an op without a float64 kernel, a dtype the model hard-codes
        return {}


def rounding_floor(module: nn.Module, inputs: list[InputSet], refs: list[np.ndarray],
                   forward: Callable[[nn.Module, torch.Tensor], torch.Tensor]) -> float | None:
    """max |fp32 output - float64 output| of ``module`` over ``inputs`` (``refs``: its fp32 outputs),
    or None when the model does not run in float64. Raises PrepareError when a copy of the model does
    not reproduce ``refs`` in fp32 (state kept between calls): then no difference is rounding."""
    copy32 = copy.deepcopy(module).eval()
    with torch.no_grad():
        first = inputs[0].batches[0]
        again = forward(copy32, torch.from_numpy(first)).numpy()
    ref = refs[0][:len(first)]
    diff = float(np.abs(again.reshape(ref.shape) - ref).max()) if again.size == ref.size else float("inf")
    if diff > 1e-6 * (float(np.abs(ref).max()) or 1.0):
        raise PrepareError(
            f"the model does not give the same outputs twice: a copy of it differs from it by {diff:.3g} on the same "
            "input; it keeps state between calls or is random in eval mode, and cnnexport cannot prove an export of "
            "what it cannot reproduce; make its eval-mode forward a pure function of its input")
    try:
        double = copy32.double()
        with torch.no_grad():
            worst = 0.0
            for s, ref in zip(inputs, refs):
                exact = np.concatenate([forward(double, torch.from_numpy(b).double()).numpy() for b in s.batches])
                worst = max(worst, float(np.abs(exact.reshape(ref.shape) - ref.astype(np.float64)).max()))
        return worst
    except Exception:  # an op without a float64 kernel, a dtype the model hard-codes
        return None


def check_prepared(prepared: nn.Module, refs: list[np.ndarray], inputs: list[InputSet], tol: float,
                   forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                   rebuild: Callable[[int], nn.Module], changes: list[str], floor: float | None) -> dict:
    """The prepared module against the original's ``refs``; on a mismatch, raise a PrepareError that
    names the first change (of ``changes``, made in order; ``rebuild(k)`` makes the first k) that breaks it."""
    def outputs(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
        return lambda b: forward(model, torch.from_numpy(b)).numpy()

    with torch.no_grad():
        try:
            eq = compare("prepared module", refs, outputs(prepared), inputs, atol=tol)
        except ValueError as exc:  # outputs not shaped per sample: the export's own checks name that
            return {"passed": None, "skipped": str(exc)}
        if eq.passed:
            return {"max_abs": eq.max_abs, "cosine": eq.cosine, "tolerance": tol, "passed": True,
                    "changes": len(changes)}
        unchanged = compare("", refs, outputs(rebuild(0)), inputs, atol=tol)
        if not unchanged.passed:
            raise PrepareError(
                f"the model does not give the same outputs twice: an unchanged copy of it differs from it by "
                f"{unchanged.max_abs:.3g} (cosine {unchanged.cosine:.6f}) on the same inputs; it keeps state between "
                "calls or is random in eval mode, and cnnexport cannot prove an export of what it cannot reproduce; "
                "make its eval-mode forward a pure function of its input")
        lo, hi = 0, len(changes)  # the first lo changes keep the outputs; the first hi do not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if compare("", refs, outputs(rebuild(mid)), inputs, atol=tol).passed:
                lo = mid
            else:
                hi = mid
    culprit = changes[hi - 1] if changes else "(no change recorded)"
    fix = ("export it without reparameterisation with --no-reparameterize" if culprit.startswith("reparameterise")
           else "export it unfolded with --no-fold-bn")
    raise PrepareError(
        f"preparation failed: '{culprit}' changed what the model computes (max abs error {eq.max_abs:.3g} > "
        f"{tol:.3g}, cosine {eq.cosine:.6f}: {diagnosis(eq.max_abs, eq.cosine, eq.top1_agreement, floor)}); "
        f"nothing was exported; {fix}, and please report the model")


"""Deploy-time reparameterisation that blocks offer themselves: several training branches become
one conv (RepVGG, MobileOne, FastViT's blocks), the same idea as folding BatchNorm, one level up.

The conventions followed are timm's ``reparameterize_model``: a block's ``fuse()`` returns the
module that replaces it; ``reparameterize()`` and ``switch_to_deploy()`` convert the block in place.
"""

from __future__ import annotations

import inspect

from torch import nn

_IN_PLACE = ("reparameterize", "switch_to_deploy")


def _callable_without_args(obj, name: str):
    method = getattr(obj, name, None)
    if not callable(method) or isinstance(method, nn.Module):
        return None
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return None
    needed = [p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return None if needed else method


def reparameterize_blocks(model: nn.Module, budget=None) -> list[dict]:
    """Apply every block's own deploy-time conversion (outermost first, as timm does); return what
    was converted: module path, its type, the method and the type it became. ``budget`` (prepare's
    change counter) may stop it early."""
    done = []

    def visit(parent: nn.Module, prefix: str) -> None:
        for child_name, child in list(parent.named_children()):
            path = f"{prefix}.{child_name}" if prefix else child_name
            fuse = _callable_without_args(child, "fuse")
            method = "fuse" if fuse else next((m for m in _IN_PLACE if _callable_without_args(child, m)), None)
            if method and (budget is None or budget.take(f"reparameterise {type(child).__name__} '{path}' "
                                                         f"({method}())")):
                before = type(child).__name__
                if fuse:
                    new = fuse()
                    if isinstance(new, nn.Module):
                        setattr(parent, child_name, new.eval())
                        child = new
                else:
                    getattr(child, method)()
                done.append({"module": path, "type": before, "method": method, "became": type(child).__name__})
            visit(child, path)

    visit(model, "")
    return done

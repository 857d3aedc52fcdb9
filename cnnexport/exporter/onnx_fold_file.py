"""``cnnexport fold``: fold an ONNX file (``onnx_fold.fold_model``), check the result and verify it
against the original with ONNX Runtime before it is written. numpy and onnx only (no torch), so it
runs on a deploy machine too. Apart from ``onnx_fold`` because it checks the file with ``graph``,
which counts foldable nodes with ``onnx_fold``."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, check_output_file
from ..errors import InvalidModelFileError, VerificationError
from .onnx_fold import fold_model


@dataclass
class FoldResult:
    op_counts_before: dict[str, int]
    op_counts_after: dict[str, int]
    folded: list[dict] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=dict)
    equivalence: dict | None = None

    def as_dict(self) -> dict:
        return {
            "nodes_before": sum(self.op_counts_before.values()),
            "nodes_after": sum(self.op_counts_after.values()),
            "op_counts_before": self.op_counts_before,
            "op_counts_after": self.op_counts_after,
            "folded": self.folded,
            "removed": self.removed,
            "equivalence": self.equivalence,
        }



def _count_ops(model) -> dict[str, int]:
    counts = Counter(n.op_type for n in model.graph.node)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _random_feeds(session, batch: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = []
    for i, spec in enumerate(session.inputs):
        shape = [d if d is not None else (batch if axis == 0 else 1) for axis, d in enumerate(spec.shape)]
        feeds.append(rng.standard_normal(shape).astype(spec.dtype))
    return feeds


def fold_file(src: str | os.PathLike, dst: str | os.PathLike, *, atol: float | None = None,
              rtol: float = 1e-4) -> FoldResult:
    """Fold ``src`` into ``dst`` and verify the result against the original with ONNX Runtime on
    random inputs (batch 1 and 3 on a dynamic batch axis). Nothing is written if verification fails."""
    import onnx

    from ..runtimes import load
    from ..profile import graph as graph_mod
    from .verify import InputSet, compare

    graph_mod.check(src)
    check_output_file(dst)
    model = onnx.load(str(src))
    before = _count_ops(model)
    model, folded, removed = fold_model(model)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # a bug here, not the user's: report it plainly
        raise InvalidModelFileError(f"folding produced an invalid graph ({str(exc).splitlines()[0][:200]})") from None
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
        original, candidate = load(src, "onnxruntime"), load(tmp, "onnxruntime")
        dynamic = any(s.shape and s.shape[0] is None for s in original.inputs)
        if len(original.inputs) != 1:
            raise InvalidModelFileError("fold verifies single-input models only; this one has "
                                        f"{len(original.inputs)} inputs")
        sets = [InputSet(f"random_b{b}", [_random_feeds(original, b, b)[0]]) for b in ((1, 3) if dynamic else (1,))]
        eq = compare(dst.name, lambda x: original.run(x)[0], lambda x: candidate.run(x)[0], sets, atol=atol,
                     rtol=rtol)
        if not eq.passed:
            raise VerificationError(f"the folded graph does not match the original: max abs error {eq.max_abs:.3g} > "
                                    f"tolerance {eq.tolerance:.3g}; nothing was written")
    return FoldResult(before, _count_ops(model), folded, removed, eq.as_dict())

"""``bench --data``: the top-1 and top-5 of every measured file, and of PyTorch, on the user's labelled
images, in the rows beside their latency (as Ultralytics' benchmark shows accuracy beside its timings).
Each file runs once over the data, on the runtime its rows measured it with, on the CPU; every row of that
file (each batch and thread count) carries the same figures, and its agreement with PyTorch's top-1. No
torch: PyTorch arrives as a runtime adapter (``runtimes.torch_eager``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from ..exporter import evaluate as ev
from ..runtimes import load_at_batch
from .jobs import Job

PYTORCH = "pytorch"  # the evaluation's name of PyTorch's model, the reference the files agree with
EVAL_BATCH = 32  # images per run: eval's default


@dataclass
class Candidate:
    """A model to evaluate: a runtime adapter and the preprocessing fields its export recorded."""
    model: object
    preprocess: dict = field(default_factory=dict)


def file_candidates(jobs: list[Job], threads: int) -> dict[str, Candidate]:
    """One candidate per measured file and runtime (keyed ``path [runtime]``), loaded as eval loads it (a
    dynamic batch made static at ``EVAL_BATCH``), with the preprocessing of the reference.npz beside it."""
    candidates = {}
    for job in jobs:
        spec = job.worker_job
        if spec.get("kind") == "artifact" and spec.get("device", "cpu") == "cpu" and job.result is not None:
            key = _key(spec["path"], spec["runtime"])
            if key not in candidates:
                fields = ev.reference_meta(None, [spec["path"]]).get("preprocess") or {}
                candidates[key] = Candidate(load_at_batch(spec["path"], spec["runtime"], threads, EVAL_BATCH),
                                            dict(fields))
    return candidates


def measure(candidates: dict[str, Candidate], data: str, *, count: int | None, given: tuple | None = None,
            classes_file: str | None = None, workers: int = 1,
            on_progress: Callable[[int, int, float], None] | None = None) -> list[dict]:
    """Top-1/top-5 of the candidates (PyTorch's under ``PYTORCH``) on the first ``count`` images of ``data``
    (a folder of class subfolders, digits, .npz with x, y): one ``cnnexport eval`` result per input size
    (files of several models can be measured together). ``given``: --input-size (C may be None), for files
    that leave it open."""
    from ..calib.labelled import load_labelled

    groups: dict[tuple, dict[str, Candidate]] = {}
    for key, cand in candidates.items():
        chw = ev.input_size_of({key: cand.model}, {}, given)
        if chw is None:
            raise UsageError(f"--data: '{key.rsplit(' [', 1)[0]}' leaves its input size open: give --input-size")
        groups.setdefault(chw, {})[key] = cand
    results = []
    for chw, group in groups.items():
        source = load_labelled(data, classes_file, size=tuple(chw[1:]), channels=chw[0])
        source.check_channels(chw[0])
        source = source.select(count)
        first = group.get(PYTORCH) or next(iter(group.values()))
        pre = ev.preprocess_for(first.preprocess, chw, source.preprocess)
        reference = PYTORCH if PYTORCH in group else None
        models = {k: c.model for k, c in group.items()}
        evaluation = ev.evaluate(models, source, pre, batch=EVAL_BATCH, workers=workers, reference=reference,
                                 on_progress=on_progress)
        if evaluation.partial:
            raise KeyboardInterrupt
        results.append(ev.report(evaluation, source, pre, batch=EVAL_BATCH, reference=reference,
                                 describe={k: {} for k in models}, limit=count, workers=workers))
    return results


def add_to_rows(rows: list[dict], jobs: list[Job], results: list[dict]) -> None:
    """Each CPU row gets its file's figures (PyTorch's eager rows PyTorch's): ``top1``, ``top5``, ``agreement``
    (the share of images whose top-1 is PyTorch's, when PyTorch was evaluated beside it) and ``eval_images``.
    Rows are matched to their job by file name and runtime; a file name measured from two folders stays empty."""
    by_key = {m["name"]: m for result in results for m in result["models"]}
    keys: dict[tuple[str, str], set[str]] = {}
    for job in jobs:
        spec = job.worker_job
        if spec.get("kind") == "artifact":
            keys.setdefault((Path(spec["path"]).name, job.runtime), set()).add(_key(spec["path"], spec["runtime"]))
    for row in rows:
        if row["device"] != "cpu":
            continue
        if row["artifact"] is None:
            figures = by_key.get(PYTORCH) if row["runtime"] == "torch" else None
        else:
            matched = keys.get((row["artifact"], row["runtime"]), set())
            figures = by_key.get(next(iter(matched))) if len(matched) == 1 else None
        if figures:
            row.update(top1=figures["top1"], top5=figures["top5"], agreement=figures.get("agreement"),
                       eval_images=figures["images"])


def _key(path: str, runtime: str) -> str:
    return f"{path} [{runtime}]"

"""``bench --data``: which files the rows measured, and each row's accuracy from their evaluation (the CLI
runs ``exporter.evaluate`` on them after the timed rounds). Each file runs once over the data, on the
runtime its rows measured it with, on the CPU; every row of that file (each batch and thread count)
carries the same figures, and its agreement with PyTorch's top-1."""

from __future__ import annotations

from pathlib import Path

from .jobs import Job

PYTORCH = "pytorch"  # the evaluation's name of PyTorch's eager model, the reference the files agree with


def measured_files(jobs: list[Job]) -> dict[str, tuple[str, str]]:
    """Each measured CPU file and runtime once, keyed as the evaluation names it (``path [runtime]``)."""
    files = {}
    for job in jobs:
        spec = job.worker_job
        if spec.get("kind") == "artifact" and spec.get("device", "cpu") == "cpu" and job.result is not None:
            files.setdefault(_key(spec["path"], spec["runtime"]), (spec["path"], spec["runtime"]))
    return files


def add_to_rows(rows: list[dict], jobs: list[Job], results: list[dict]) -> None:
    """Each CPU row gets its file's figures from the evaluations' ``results`` (PyTorch's eager rows
    PyTorch's): ``top1``, ``top5``, ``agreement`` (the share of images whose top-1 is PyTorch's, when PyTorch
    was evaluated beside it) and ``eval_images``. Rows are matched to their job by file name and runtime; a
    file name measured from two folders stays empty."""
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

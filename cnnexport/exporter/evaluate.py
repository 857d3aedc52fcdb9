"""``cnnexport eval``: top-1 and top-5 accuracy of model files (and of the PyTorch model, when it is
given) on a labelled set, streamed in batches; each model runs once per batch. No torch here: the
PyTorch model arrives as a runtime adapter like any file.

A result holds counts, not only ratios, so that the results of shards (``--shard K/N``) merge into
exactly the result of the whole set."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..calib.labelled import LabelledSource
from ..calib.images import Preprocess
from ..errors import UsageError

WORST = 5  # classes listed per model


@dataclass
class Tally:
    """Counts for one model over the images seen so far."""
    classes: int
    images: int = 0
    top1: int = 0
    top5: int = 0
    agree: int = 0  # top-1 equal to the reference model's
    seconds: float = 0.0  # inside the runtime
    class_images: np.ndarray = None
    class_top1: np.ndarray = None

    def __post_init__(self):
        if self.class_images is None:
            self.class_images = np.zeros(self.classes, np.int64)
            self.class_top1 = np.zeros(self.classes, np.int64)

    def add(self, logits: np.ndarray, y: np.ndarray, reference_top1: np.ndarray | None = None) -> np.ndarray:
        """Count one batch; returns its top-1 predictions."""
        k = min(5, logits.shape[1])
        top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
        pred = logits.argmax(1)
        hit = pred == y
        self.images += len(y)
        self.top1 += int(hit.sum())
        self.top5 += int((top == y[:, None]).any(1).sum())
        np.add.at(self.class_images, y, 1)
        np.add.at(self.class_top1, y, hit.astype(np.int64))
        if reference_top1 is not None:
            self.agree += int((pred == reference_top1).sum())
        return pred


def figures(name: str, tally: Tally, class_names: list[str], reference: Tally | None = None,
            describe: dict | None = None) -> dict:
    """A model's JSON entry: counts (what shards merge), accuracies, agreement with the reference model,
    and the worst classes (the largest drop from the reference, else the lowest accuracy)."""
    n = max(tally.images, 1)
    entry = {"name": name, **(describe or {}), "images": tally.images,
             "top1_correct": tally.top1, "top5_correct": tally.top5,
             "top1": tally.top1 / n if tally.images else None, "top5": tally.top5 / n if tally.images else None,
             "seconds": tally.seconds, "images_per_s": tally.images / tally.seconds if tally.seconds else None,
             "per_class": {c: [int(a), int(b)] for c, a, b in zip(class_names, tally.class_images, tally.class_top1)
                           if a}}
    seen = tally.class_images > 0
    acc = np.where(seen, tally.class_top1 / np.maximum(tally.class_images, 1), np.nan)
    if reference is not None and reference is not tally:
        entry.update(agree_top1=tally.agree, agreement=tally.agree / n if tally.images else None,
                     disagreements=tally.images - tally.agree,
                     drop_points=100.0 * (reference.top1 - tally.top1) / n if tally.images else None)
        ref_acc = np.where(seen, reference.class_top1 / np.maximum(reference.class_images, 1), np.nan)
        drop = ref_acc - acc
        order = [int(i) for i in np.argsort(-np.nan_to_num(drop, nan=-np.inf)) if seen[i] and drop[i] > 0][:WORST]
        entry["worst_classes"] = [{"class": class_names[i], "images": int(tally.class_images[i]),
                                   "top1": float(acc[i]), "reference_top1": float(ref_acc[i]),
                                   "drop_points": 100.0 * float(drop[i])} for i in order]
    else:
        order = [int(i) for i in np.argsort(np.nan_to_num(acc, nan=np.inf)) if seen[i] and acc[i] < 1][:WORST]
        entry["worst_classes"] = [{"class": class_names[i], "images": int(tally.class_images[i]),
                                   "top1": float(acc[i])} for i in order]
    return entry


@dataclass
class Evaluation:
    """What ``evaluate`` measured; ``partial`` when it was stopped before the end."""
    tallies: dict[str, Tally]
    skipped: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    partial: bool = False


def run_model(model, x: np.ndarray) -> np.ndarray:
    """Logits of one batch; a file with a static batch takes it in pieces, the last one padded."""
    from ..runtimes import run_nchw

    static = model.inputs[0].shape[0] if model.inputs[0].shape else None
    if static and len(x) % static:
        pad = static - len(x) % static
        return run_nchw(model, np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]))[:len(x)]
    return run_nchw(model, x)


def evaluate(models: dict[str, object], source: LabelledSource, preprocess: Preprocess, *, batch: int = 32,
             workers: int = 2, reference: str | None = None,
             on_progress: Callable[[int, int, float], None] | None = None) -> Evaluation:
    """Every model of ``models`` (name -> runtime adapter) on every image of ``source``, ``batch`` images
    at a time. ``reference`` names the model the others' agreement is measured against (PyTorch).
    Ctrl-C (KeyboardInterrupt) ends the run early with what was measured, marked partial."""
    classes = len(source.classes)
    for name, model in models.items():
        out = model.outputs[0].shape
        width = out[-1] if out else None
        if width is not None and width != classes:
            raise UsageError(f"'{name}' has {width} outputs but the data has {classes} classes "
                             f"({', '.join(source.classes[:4])}{', ...' if classes > 4 else ''}); give a --classes "
                             "file listing the model's classes in output order, or the data the model was trained for")
    result = Evaluation({name: Tally(classes) for name in models})
    order = sorted(models, key=lambda n: n != reference)  # the reference first: the others agree with it
    t0 = time.perf_counter()
    done = 0
    try:
        for b in source.batches(preprocess, batch, workers):
            result.skipped += b.skipped
            if len(b.y):
                ref_top1 = None
                for name in order:
                    t = time.perf_counter()
                    logits = np.asarray(run_model(models[name], b.x), np.float32).reshape(len(b.y), -1)
                    result.tallies[name].seconds += time.perf_counter() - t
                    if logits.shape[1] != classes:
                        raise UsageError(f"'{name}' gives {logits.shape[1]} outputs but the data has {classes} "
                                         "classes; give a --classes file listing the model's classes in output order")
                    pred = result.tallies[name].add(logits, b.y, ref_top1)
                    if name == reference:
                        ref_top1 = pred
            done += len(b.y) + len(b.skipped)
            if on_progress:
                on_progress(done, len(source), done / max(time.perf_counter() - t0, 1e-9))
    except KeyboardInterrupt:
        result.partial = True
    result.elapsed_s = time.perf_counter() - t0
    return result


def report(evaluation: Evaluation, source: LabelledSource, preprocess: Preprocess, *, batch: int,
           reference: str | None, describe: dict[str, dict], shard: tuple[int, int] | None = None,
           limit: int | None = None, workers: int | None = None, cache=None) -> dict:
    """The JSON result of ``cnnexport eval``. ``cache``: the ``PixelCache`` the images went through."""
    ref = evaluation.tallies.get(reference) if reference else None
    images = max((t.images for t in evaluation.tallies.values()), default=0)
    return {"data": {"source": source.name, "classes": source.classes, "images": images,
                     "skipped": len(evaluation.skipped), "skipped_files": evaluation.skipped[:20],
                     "shard": list(shard) if shard else None, "limit": limit, "workers": workers,
                     "cache": {"path": str(cache.root), "hits": cache.hits, "misses": cache.misses} if cache else None},
            "preprocess": preprocess.as_dict(), "batch": batch, "reference": reference,
            "partial": evaluation.partial, "elapsed_s": evaluation.elapsed_s,
            "images_per_s": images / evaluation.elapsed_s if evaluation.elapsed_s else None,
            "models": [figures(name, t, source.classes, ref, describe.get(name)) for name, t in
                       evaluation.tallies.items()]}


def merge(results: list[dict]) -> dict:
    """Shard results of one evaluation (same models, classes and preprocessing) as one result."""
    if not results:
        raise UsageError("nothing to merge: give the JSON results of cnnexport eval --shard K/N")
    first = results[0]
    if any(r["data"]["classes"] != first["data"]["classes"] for r in results):
        raise UsageError("the results differ in their classes: merge the shards of one evaluation only")
    models = [m["name"] for m in first["models"]]
    if any([m["name"] for m in r["models"]] != models for r in results) or \
            any(r["preprocess"] != first["preprocess"] for r in results):
        raise UsageError("the results evaluate different models or preprocessing: merge the shards of one "
                         "evaluation only")
    shards = [tuple(r["data"]["shard"]) for r in results if r["data"]["shard"]]
    if len(set(shards)) != len(shards):
        raise UsageError(f"shard {sorted(s for s in shards if shards.count(s) > 1)[0][0]} is given twice")
    if len({n for _, n in shards}) > 1:
        raise UsageError("the results come from different --shard K/N splits: merge the shards of one split")
    classes = first["data"]["classes"]
    tallies = {}
    for name in models:
        t = Tally(len(classes))
        for r in results:
            m = next(m for m in r["models"] if m["name"] == name)
            t.images += m["images"]
            t.top1 += m["top1_correct"]
            t.top5 += m["top5_correct"]
            t.agree += m.get("agree_top1", 0)
            t.seconds += m["seconds"]
            for c, (n, k) in m["per_class"].items():
                t.class_images[classes.index(c)] += n
                t.class_top1[classes.index(c)] += k
        tallies[name] = t
    reference = first["reference"]
    ref = tallies.get(reference) if reference else None
    whole = bool(shards) and len(shards) == shards[0][1]
    images = max((t.images for t in tallies.values()), default=0)
    elapsed = sum(r["elapsed_s"] for r in results)
    describe = {m["name"]: {k: m[k] for k in ("runtime", "path", "precision", "describe") if k in m}
                for m in first["models"]}
    return {"data": {**first["data"], "images": images, "skipped": sum(r["data"]["skipped"] for r in results),
                     "skipped_files": [f for r in results for f in r["data"]["skipped_files"]][:20],
                     "shard": None if whole else [s for s in sorted(shards)],
                     "cache": _merged_cache([r["data"].get("cache") for r in results]), "merged": len(results)},
            "preprocess": first["preprocess"], "batch": first["batch"], "reference": reference,
            "partial": any(r["partial"] for r in results) or (bool(shards) and not whole),
            "stopped_early": any(r["partial"] for r in results),
            "missing_shards": sorted(set(range(1, shards[0][1] + 1)) - {k for k, _ in shards}) if shards else [],
            "elapsed_s": elapsed, "images_per_s": images / elapsed if elapsed else None,
            "models": [figures(n, t, classes, ref, describe[n]) for n, t in tallies.items()]}


def _merged_cache(caches: list[dict | None]) -> dict | None:
    used = [c for c in caches if c]
    if not used:
        return None
    return {"path": sorted({c["path"] for c in used}), "hits": sum(c["hits"] for c in used),
            "misses": sum(c["misses"] for c in used)}


def eval_threads(workers: int | None, threads: int | None) -> tuple[int, int]:
    """Decoding workers and runtime threads that share the cores. Workers: the cores ``threads`` leaves
    free, else half the cores (1..8; on 2 cores a second decoder competing with 2 runtime threads is
    slower than one). Threads: the cores the workers leave, at least 1 (a runtime's own default takes
    every core: PyTorch ran the digits LeNet-5 at 112 images/s so, at 3,144 with one thread)."""
    cores = os.cpu_count() or 1
    workers = workers or max(1, min(8, cores - threads if threads else cores // 2))
    return workers, threads or max(1, cores - workers)


def reference_meta(reference: str | None, artifacts) -> dict:
    """The metadata of ``reference`` (``--reference``), or of the reference.npz beside the first file when it
    lists it ({} otherwise)."""
    from pathlib import Path

    from .verify import load_reference, reference_path

    path = Path(reference) if reference else (reference_path(artifacts[0]) if artifacts else None)
    if path is None or not path.is_file():
        if reference:
            raise UsageError(f"reference file '{reference}' does not exist (the export writes reference.npz)")
        return {}
    try:
        meta = load_reference(path)[2]
    except Exception as exc:
        raise UsageError(f"'{path}' is not a cnnexport reference.npz ({type(exc).__name__})") from None
    if not reference and Path(artifacts[0]).name not in meta.get("files", []):
        return {}
    return meta


def input_size_of(models: dict, meta: dict, given: tuple | None = None) -> tuple[int, int, int] | None:
    """C, H, W: ``given`` (--input-size: C may be None, then the files' own or 3), else the files' own (all
    alike), else the reference's (``meta``: ``reference_meta``); None when none of them fixes it."""
    sizes = {tuple(m.inputs[0].chw) for m in models.values()}
    if len(sizes) > 1:
        from ..runtimes.base import dims_text

        raise UsageError(f"the files take different inputs ({', '.join(dims_text(s) for s in sorted(sizes, key=str))}): "
                         "evaluate files of one model together")
    fixed = next(iter(sizes)) if sizes else None
    if given:
        channels = given[0] or (fixed[0] if fixed and fixed[0] else 3)
        return (channels, given[1], given[2])
    if fixed and len(fixed) == 3 and all(fixed):
        return tuple(int(d) for d in fixed)
    pre = meta.get("preprocess")
    if pre:
        return (int(pre["channels"]), *map(int, pre["size"]))
    return None


def preprocess_for(fields: dict, chw: tuple[int, int, int], data_own: Preprocess | None = None, *,
                   mean: tuple | None = None, std: tuple | None = None, crop_fraction: float | None = None,
                   ) -> Preprocess:
    """The preprocessing at ``chw``: the data's own where it has one (the digits'), else the recorded
    ``fields`` (the export's, the model's: crop_fraction, mean, std); ``mean``, ``std`` and
    ``crop_fraction`` (the user's) replace their fields."""
    import dataclasses

    pre = Preprocess(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in fields.items()
                        if k in ("crop_fraction", "mean", "std")}).at(chw[1:], chw[0])
    if data_own is not None:
        pre = data_own
    overrides = {k: v for k, v in (("mean", mean), ("std", std), ("crop_fraction", crop_fraction)) if v is not None}
    return dataclasses.replace(pre, **overrides) if overrides else pre


@dataclass
class Candidate:
    """A model to evaluate beside others: a runtime adapter and the preprocessing fields recorded for it (its
    export's reference.npz, the model's own)."""
    model: object
    preprocess: dict = field(default_factory=dict)
    classes: list[str] | None = None  # its class names in output order, where it carries them


def evaluate_by_input_size(candidates: dict[str, Candidate], data: str, *, count: int | None = None,
                           given: tuple | None = None, classes_file: str | None = None, reference: str | None = None,
                           batch: int = 32, workers: int = 1,
                           on_progress: Callable[[int, int, float], None] | None = None) -> list[dict]:
    """Top-1/top-5 of models that may take different input sizes (files of several models) on the first
    ``count`` images of ``data``: one ``report`` per input size, each with the preprocessing and class names of
    its first candidate (``reference``'s where it is in the group; the others' agreement is measured against it).
    ``given``: --input-size (C may be None), for files that leave it open."""
    from ..calib.labelled import load_labelled

    groups: dict[tuple, dict[str, Candidate]] = {}
    for name, cand in candidates.items():
        chw = input_size_of({name: cand.model}, {}, given)
        if chw is None:
            raise UsageError(f"'{name}' leaves its input size open: give --input-size")
        groups.setdefault(chw, {})[name] = cand
    results = []
    for chw, group in groups.items():
        ref = reference if reference in group else None
        first = group[ref] if ref else next(iter(group.values()))
        source = load_labelled(data, classes_file, size=tuple(chw[1:]), channels=chw[0], model_classes=first.classes)
        source.check_channels(chw[0])
        source = source.select(count)
        pre = preprocess_for(first.preprocess, chw, source.preprocess)
        models = {name: cand.model for name, cand in group.items()}
        evaluation = evaluate(models, source, pre, batch=batch, workers=workers, reference=ref,
                              on_progress=on_progress)
        if evaluation.partial:
            raise KeyboardInterrupt
        results.append(report(evaluation, source, pre, batch=batch, reference=ref,
                              describe={name: {} for name in models}, limit=count, workers=workers))
    return results

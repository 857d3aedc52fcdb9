"""``cnnexport eval``: top-1/top-5 of model files on labelled images."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import click

from ..exporter.formats import precision_of
from ..errors import UsageError
from .render import EvalProgress, print_eval
from .signals import first_signal, interrupted
from .app import cli, fail
from .options import (files_of_folders, float_list, load_artifact, parse_input_size, read_json, refuse_exported_file,
                      save_json, trust_pickle_option)


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    k, _, n = text.partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        k = n = 0
    if not 1 <= k <= n <= 4096:
        raise UsageError(f"bad --shard '{text}': give K/N with 1 <= K <= N, e.g. 1/4 for the first of four parts")
    return k, n


@cli.command("eval")
@click.argument("artifacts", nargs=-1)
@click.option("--data", "data", default=None,
              help="Labelled data: a folder with one subfolder per class, digits (its test split), or .npz with x, y.")
@click.option("--classes", "classes_file", type=click.Path(dir_okay=False), default=None,
              help="Class names in the model's output order, one per line (default: the folders sorted by name).")
@click.option("--model", "model_spec", default=None,
              help="The PyTorch model, for its accuracy and each file's agreement with it: a zoo name, timm:NAME, "
                   "package.module:callable or path/to/net.py:callable (needs torch).")
@click.option("--weights", default=None, help="Weights of --model: a state_dict file, or a shipped tag (digits).")
@click.option("--use-ema", is_flag=True, help="The --weights checkpoint's EMA weights (timm's state_dict_ema).")
@trust_pickle_option
@click.option("--num-classes", type=int, default=None, help="Classifier outputs of --model.")
@click.option("--reference", type=click.Path(dir_okay=False), default=None,
              help="reference.npz written by the export: the model's input size and preprocessing (default: the "
                   "one beside the first file, when it was written for it).")
@click.option("--limit", type=int, default=None, help="Evaluate the first N images of the data's fixed shuffled order.")
@click.option("--batch", type=int, default=32, show_default=True, help="Images per run of each model.")
@click.option("--shard", default=None, metavar="K/N", help="Evaluate part K of N (merge the JSON results with --merge).")
@click.option("--workers", type=int, default=None,
              help="Threads decoding images (default: the cores --threads leaves free, else half the cores; 1..8).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads of each runtime (default: the cores the decoding workers leave, at least 1).")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Keep an image folder's decoded, resized crops here; later runs on the same folder (other "
                   "files, shards) skip decoding.")
@click.option("--input-size", default=None, help="H, HxW or C,H,W when neither the files nor --model fix it.")
@click.option("--mean", default=None, help="Per-channel mean of the preprocessing (default: the model's, else ImageNet's).")
@click.option("--std", default=None, help="Per-channel std of the preprocessing (default: the model's, else ImageNet's).")
@click.option("--crop-fraction", type=float, default=None,
              help="Centre crop as a fraction of the resized image (default: the model's, else 0.875; 1: no crop).")
@click.option("--merge", "merge_files", is_flag=True, help="ARTIFACTS are JSON results of --shard runs: merge them.")
@click.option("--save", type=click.Path(dir_okay=False), default=None, help="Also write the JSON result to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result on stdout, nothing else.")
def eval_cmd(artifacts, data, classes_file, model_spec, weights, use_ema, trust_pickle, num_classes, reference, limit,
             batch, shard, workers, threads, cache_dir, input_size, mean, std, crop_fraction, merge_files, save, as_json):
    """Top-1 and top-5 accuracy of model files (or an export's folder: its files) on labelled images, beside
    PyTorch's with --model. Files alone need no torch."""
    from ..exporter import evaluate as ev

    if merge_files:
        result = ev.merge([read_json(a) for a in artifacts])
        if save:
            save_json(save, result)
        print_eval(result, as_json)
        return
    artifacts = files_of_folders(artifacts)
    if not data:
        raise UsageError("--data is required: a folder with one subfolder per class, digits, or a .npz with x and y")
    if not artifacts and not model_spec:
        raise UsageError("nothing to evaluate: give model files, --model NAME, or both")
    if not model_spec:
        given = [o for o, v in (("--weights", weights), ("--use-ema", use_ema), ("--num-classes", num_classes),
                                ("--trust-pickle", trust_pickle)) if v]
        if given:
            raise UsageError(f"{', '.join(given)} describe{'s' if len(given) == 1 else ''} --model's PyTorch model: "
                             "give --model NAME with it, or leave it out (a file carries its own weights)")
    if batch < 1 or batch > 4096 or (limit is not None and limit < 1) or (workers is not None and workers < 1) or \
            (threads is not None and threads < 1) or (crop_fraction is not None and not 0 < crop_fraction <= 1):
        raise UsageError("--batch must be 1..4096, --limit, --workers and --threads >= 1, --crop-fraction in (0, 1]")
    shard_kn = _parse_shard(shard)
    threads_chosen = threads is None
    workers, threads = ev.eval_threads(workers, threads)
    models, describe = {}, {}
    for path in artifacts:
        name = Path(path).name
        if name in models:
            raise UsageError(f"'{name}' is given twice")
        # Static at --batch, the last batch padded (run_model): what bench measures at that batch.
        m = load_artifact(path, None, threads, batch)
        models[name] = m
        describe[name] = {"path": str(path), "runtime": m.runtime, "precision": precision_of(path)}
    meta = ev.reference_meta(reference, artifacts)
    pre_fields = dict(meta.get("preprocess") or {})
    given = parse_input_size(input_size, None) if input_size else None
    model_classes = meta.get("classes")  # the model's own class names, where its export recorded them
    if model_spec:
        module, model_pre, model_chw, model_channels = _eval_torch_model(model_spec, weights, num_classes, use_ema,
                                                                         trust_pickle)
        if given and given[0] is None and not models:  # --input-size H: the model's channels (the files' first)
            given = (model_channels, *given[1:])
    chw = ev.input_size_of(models, meta, given)
    if model_spec:
        chw = chw or model_chw
        pre_fields.update(model_pre)
        model_classes = model_classes or getattr(module.model, "cnnexport_classes", None)
    if chw is None and not models:  # --model alone: a user's code that fixes no input size
        raise UsageError(f"the input size of '{model_spec}' is unknown (its code does not fix one): give --input-size "
                         "(H, HxW or C,H,W)")
    if chw is None:
        raise UsageError("the input size is unknown (the files leave it dynamic): give --input-size, --model, "
                         "or --reference with the export's reference.npz")
    if model_spec:
        from ..runtimes.torch_eager import TorchModel

        models = {"pytorch": TorchModel(module, (1, *chw), threads=threads), **models}
        describe["pytorch"] = {"runtime": "torch", "precision": "fp32", "path": model_spec}
    from ..calib.labelled import load_labelled
    from ..calib.pixel_cache import PixelCache

    cache = PixelCache(cache_dir) if cache_dir else None
    source = load_labelled(data, classes_file, size=tuple(chw[1:]), channels=chw[0], cache=cache,
                           model_classes=model_classes)
    source.check_channels(chw[0])
    pre = ev.preprocess_for(pre_fields, chw, source.preprocess, mean=float_list(mean, "--mean"),
                            std=float_list(std, "--std"), crop_fraction=crop_fraction)
    source = source.select(limit, shard_kn)
    for name, m in models.items():
        describe[name]["describe"] = m.describe()
    with EvalProgress(as_json, len(source)) as on_progress:
        evaluation = ev.evaluate(models, source, pre, batch=batch, workers=workers,
                                 reference="pytorch" if model_spec else None, on_progress=on_progress)
    result = ev.report(evaluation, source, pre, batch=batch, reference="pytorch" if model_spec else None,
                       describe=describe, shard=shard_kn, limit=limit, workers=workers, cache=cache)
    result["threads"] = {"per_runtime": threads, "decoding_workers": workers, "cores": os.cpu_count(),
                         "chosen": threads_chosen}
    from ..machine import EMULATED_ENV

    result["emulated"] = os.environ.get(EMULATED_ENV) or None  # images/s are then the emulator's
    if save:
        save_json(save, result)
    print_eval(result, as_json)
    if evaluation.partial:
        fail(*interrupted(first_signal() or signal.SIGINT))


def _eval_torch_model(spec: str, weights: str | None, num_classes: int | None, use_ema: bool = False,
                     trust_pickle: bool = False):
    """The PyTorch model of --model, its preprocessing fields, its input size (None where its code fixes none)
    and its channels (its first convolution's, for a user's model)."""
    from ..exporter.pipeline import exportable
    from ..models import is_registered, load_model, model_input_size
    from ..models.outputs import FirstOutput

    refuse_exported_file(spec)
    module = exportable(load_model(spec, num_classes=num_classes, weights=weights, use_ema=use_ema,
                                   trust_pickle=trust_pickle))[0]  # fp32
    # a zoo model's size, or timm's config's; the user's own code fixes none (the files or --input-size do)
    known = is_registered(spec) or hasattr(module, "cnnexport_input_size")
    own = tuple(model_input_size(spec, module, weights))
    # scored on its first output, as its files hold it (a model returning a dict or tuple)
    return FirstOutput(module), dict(getattr(module, "cnnexport_preprocess", {})), own if known else None, own[0]

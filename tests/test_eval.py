"""``cnnexport eval``: accuracy of real files on a real labelled set (the digits written as an image
folder of PNGs), against the digits benchmark's own path; shards, sources, errors and the int8 gates."""

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import cnnexport
from cnnexport.calib import Preprocess, sample_image_paths
from cnnexport.calib.digits import digit_images, load_digits, preprocess, write_image_folder
from cnnexport.calib.labelled import ImageFolder, load_labelled
from cnnexport.calib.pixel_cache import PixelCache
from cnnexport.cli import cli
from cnnexport.exporter.evaluate import evaluate
from cnnexport.models import create_model
from cnnexport.models.digits_training import accuracy
from cnnexport.runtimes import load, run_nchw


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("digits") / "test", "test")


@pytest.fixture(scope="module")
def lenet_files(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lenet5")
    cnnexport.export(create_model("lenet5", weights="digits"), (1, 1, 32, 32), out, formats=("onnx", "openvino"),
                     int8=True, calib="digits", calib_count=64, int8_min_cosine=0.0)
    return out


def _eval(*args) -> dict:
    result = CliRunner().invoke(cli, ["eval", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _top1_count(path: Path, x: np.ndarray, y: np.ndarray) -> int:
    return int((run_nchw(load(path), x).argmax(1) == y).sum())


def test_eval_model_use_ema_scores_the_checkpoints_ema_weights(digits_folder, tmp_path):
    """`eval --model NAME --weights CKPT --use-ema`: PyTorch's accuracy is the EMA weights' (here the trained
    digits weights, beside untrained plain ones), not the plain weights'."""
    import torch

    trained, untrained = create_model("lenet5", weights="digits"), create_model("lenet5", num_classes=10)
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"state_dict": untrained.state_dict(), "state_dict_ema": trained.state_dict()}, ckpt)
    test = load_digits()
    for use_ema, model in ((True, trained), (False, untrained)):
        result = _eval("--data", digits_folder, "--model", "lenet5", "--weights", ckpt, "--num-classes", "10",
                       "--mean", "0.5", "--std", "0.5", "--crop-fraction", "1", *(["--use-ema"] if use_ema else []))
        (scored,) = result["models"]
        assert scored["top1_correct"] == round(accuracy(model, test.x_test, test.y_test) * 450)


def test_eval_model_takes_a_torchscript_file(digits_folder, tmp_path):
    """`eval --model model.pt` for a torch.jit.save archive scores what the traced network computes."""
    import torch

    model = create_model("lenet5", weights="digits")
    torch.jit.trace(model, torch.zeros(1, 1, 32, 32)).save(str(tmp_path / "lenet.pt"))
    result = _eval("--data", digits_folder, "--model", tmp_path / "lenet.pt", "--input-size", "1,32,32",
                   "--mean", "0.5", "--std", "0.5", "--crop-fraction", "1")
    (scored,) = result["models"]
    test = load_digits()
    assert scored["top1_correct"] == round(accuracy(model, test.x_test, test.y_test) * 450)


_TWO_HEADS = """
from cnnexport.models import create_model
import torch.nn as nn


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = create_model("lenet5", weights="digits")

    def forward(self, x):
        return {"logits": self.net(x), "scaled": 2 * self.net(x)}
"""


def test_eval_model_that_returns_a_dict_is_scored_on_its_first_output(digits_folder, tmp_path, monkeypatch):
    """A model returning several outputs is scored on the first, the one its files hold (it was an
    internal error: the dict has no .float())."""
    (tmp_path / "two_heads.py").write_text(_TWO_HEADS)
    monkeypatch.chdir(tmp_path)
    result = _eval("--data", digits_folder, "--model", "two_heads.py:TwoHeads", "--input-size", "1,32,32",
                   "--mean", "0.5", "--std", "0.5", "--crop-fraction", "1")
    (scored,) = result["models"]
    test = load_digits()
    assert scored["top1_correct"] == round(accuracy(create_model("lenet5", weights="digits"), test.x_test,
                                                    test.y_test) * 450)


def test_the_png_folder_gives_the_digits_arrays_exactly(digits_folder):
    folder = ImageFolder(digits_folder)
    assert folder.classes == [str(d) for d in range(10)] and len(folder) == 450
    x, y, skipped = folder.arrays(preprocess(32, 1))
    test = load_digits()
    index = [int(folder.paths[i].stem) for i in folder.index]  # the files are named by test-split position
    assert skipped == [] and np.array_equal(y, test.y_test[index])
    assert np.array_equal(x, test.x_test[index])  # bit for bit: one preprocessing, not two copies


def test_eval_of_lenet5_files_equals_the_digits_path(digits_folder, lenet_files):
    files = [lenet_files / n for n in ("lenet5.onnx", "lenet5.int8.onnx", "lenet5.xml", "lenet5.int8.xml")]
    result = _eval(*files, "--data", digits_folder, "--model", "lenet5", "--weights", "digits", "--batch", "16")
    test = load_digits()
    models = {m["name"]: m for m in result["models"]}
    assert result["reference"] == "pytorch" and not result["partial"] and result["data"]["images"] == 450
    torch_acc = accuracy(create_model("lenet5", weights="digits"), test.x_test, test.y_test)
    assert models["pytorch"]["top1_correct"] == round(torch_acc * 450)
    for f in files:
        m = models[f.name]
        assert m["images"] == 450 and m["top1_correct"] == _top1_count(f, test.x_test, test.y_test)
        assert m["top5_correct"] >= m["top1_correct"] and m["precision"] == ("int8" if ".int8." in f.name else "fp32")
        assert m["disagreements"] == 450 - m["agree_top1"]
        assert m["drop_points"] == pytest.approx(100 * (models["pytorch"]["top1"] - m["top1"]))
        assert sum(n for n, _ in m["per_class"].values()) == 450
    assert models["lenet5.onnx"]["disagreements"] == 0  # the fp32 file computes what PyTorch computes


def test_an_export_folder_is_evaluated_as_the_files_its_report_lists(lenet_files):
    result = _eval(lenet_files, "--data", "digits", "--limit", "40")
    assert [m["name"] for m in result["models"]] == ["lenet5.onnx", "lenet5.xml", "lenet5.int8.onnx",
                                                     "lenet5.int8.xml"]
    assert all(m["images"] == 40 for m in result["models"])


def test_eval_of_the_depthwise_digits_network(digits_folder, tmp_path):
    cnnexport.export(create_model("shufflenet_v2_x0_5", weights="digits"), (1, 3, 64, 64), tmp_path)
    onnx = tmp_path / "shufflenet_v2_x0_5.onnx"
    result = _eval(onnx, "--data", digits_folder)  # no torch model: the reference.npz beside it gives 3x64x64
    test = load_digits(size=64, channels=3)
    (m,) = result["models"]
    assert result["reference"] is None and "agreement" not in m
    assert result["preprocess"]["size"] == [64, 64] and result["preprocess"]["mean"] == [0.5]
    assert m["top1_correct"] == _top1_count(onnx, test.x_test, test.y_test)
    assert m["top1"] > 0.95


def test_a_corrupt_image_is_skipped_and_counted(digits_folder, lenet_files, tmp_path):
    folder = tmp_path / "digits"
    shutil.copytree(digits_folder, folder)
    (folder / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    result = _eval(lenet_files / "lenet5.onnx", "--data", folder)
    assert result["data"]["skipped"] == 1 and "3/broken.png" in result["data"]["skipped_files"][0]
    assert result["models"][0]["images"] == 450


def test_shards_merge_into_the_whole(digits_folder, lenet_files, tmp_path):
    files = [lenet_files / "lenet5.onnx", lenet_files / "lenet5.int8.xml"]
    whole = _eval(*files, "--data", digits_folder, "--limit", "301")
    parts = []
    for k in (1, 2, 3):
        save = tmp_path / f"part{k}.json"
        part = _eval(*files, "--data", digits_folder, "--limit", "301", "--shard", f"{k}/3", "--save", save)
        assert part["data"]["shard"] == [k, 3] and json.loads(save.read_text()) == part
        parts.append(save)
    assert sum(json.loads(p.read_text())["data"]["images"] for p in parts) == 301
    merged = _eval("--merge", *parts)
    assert merged["data"]["shard"] is None and not merged["partial"] and merged["data"]["images"] == 301
    for m, w in zip(merged["models"], whole["models"]):
        for key in ("images", "top1_correct", "top5_correct", "top1", "top5", "per_class"):
            assert m[key] == w[key], key
    partial = _eval("--merge", parts[0], parts[1])
    assert partial["partial"] and partial["data"]["shard"] == [[1, 3], [2, 3]]


def test_a_merge_of_some_shards_is_labelled_incomplete_not_stopped_early(digits_folder, lenet_files, tmp_path):
    onnx = lenet_files / "lenet5.onnx"
    parts = []
    for k in (1, 2):
        parts.append(tmp_path / f"part{k}.json")
        _eval(onnx, "--data", digits_folder, "--limit", "30", "--shard", f"{k}/3", "--save", parts[-1])
    merged = _eval("--merge", *parts)
    assert merged["partial"] and merged["missing_shards"] == [3] and not merged["stopped_early"]
    table = CliRunner().invoke(cli, ["eval", "--merge", *map(str, parts)])
    assert table.exit_code == 0, table.output
    assert "INCOMPLETE: shard(s) 3 of 3 not merged" in table.stdout and "stopped early" not in table.stdout


def test_npz_sources_float_inputs_and_uint8_images(lenet_files, tmp_path):
    test = load_digits()
    images, labels = digit_images("test")
    np.savez(tmp_path / "inputs.npz", x=test.x_test, y=test.y_test)
    np.savez(tmp_path / "images.npz", x=images, y=labels)
    onnx = lenet_files / "lenet5.onnx"
    expected = _top1_count(onnx, test.x_test, test.y_test)
    for name in ("inputs.npz", "images.npz"):
        (m,) = _eval(onnx, "--data", tmp_path / name)["models"]
        assert m["images"] == 450 and m["top1_correct"] == expected, name
    (m,) = _eval(onnx, "--data", "digits")["models"]
    assert m["top1_correct"] == expected


def test_a_classes_file_sets_the_label_order(digits_folder, tmp_path):
    reverse = tmp_path / "classes.txt"
    reverse.write_text("\n".join(str(d) for d in range(9, -1, -1)) + "\n")
    folder = ImageFolder(digits_folder, reverse)
    assert folder.classes[0] == "9"
    assert all(folder.labels[i] == 9 - int(p.parent.name) for i, p in enumerate(folder.paths))


def test_stopping_early_returns_what_was_measured_marked_partial(lenet_files):
    class StopsAfterTwoBatches:  # a real ONNX Runtime model; Ctrl-C arrives during its third run
        def __init__(self, model):
            self.model, self.calls = model, 0
            self.inputs, self.outputs = model.inputs, model.outputs

        def run_batches(self, x):
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return self.model.run_batches(x)

    model = StopsAfterTwoBatches(load(lenet_files / "lenet5.onnx"))
    data = load_labelled("digits")
    result = evaluate({"lenet5.onnx": model}, data, data.preprocess, batch=50)
    assert result.partial and result.tallies["lenet5.onnx"].images == 100


def test_the_cache_gives_the_same_inputs_bit_for_bit_and_misses_what_changed(tmp_path):
    root = tmp_path / "photos"  # colour JPEGs (uint8 crops cached) beside grayscale PNGs (float crops)
    for k, path in enumerate(sample_image_paths()[:4]):
        (root / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / f"c{k % 2}" / path.name)
    shutil.copy(next(write_image_folder(tmp_path / "digits", "test").glob("0/*.png")), root / "c0" / "digit.png")
    pre = Preprocess(size=(48, 40))
    x, y, _ = ImageFolder(root).arrays(pre)
    cache = PixelCache(tmp_path / "cache")
    for run in (1, 2):
        cx, cy, _ = ImageFolder(root, cache=cache).arrays(pre)
        assert np.array_equal(cx, x) and np.array_equal(cy, y)
        assert (cache.hits, cache.misses) == ((0, 5) if run == 1 else (5, 5))
    ImageFolder(root, cache=cache).arrays(dataclasses.replace(pre, mean=(0.5,) * 3))  # normalised after the cache
    assert (cache.hits, cache.misses) == (10, 5)
    ImageFolder(root, cache=cache).arrays(pre.at((40, 40), 3))  # another crop geometry: all new
    assert (cache.hits, cache.misses) == (10, 10)
    # An edited image and a damaged entry are decoded again, and still give the plain path's inputs.
    edited = sorted(root.glob("c1/*.jpg"))[0]
    shutil.copy(sample_image_paths()[5], edited)
    damaged = next((tmp_path / "cache").rglob("*.npy"))
    damaged.write_bytes(b"not an array")
    x, y, _ = ImageFolder(root).arrays(pre)
    before = cache.hits, cache.misses
    cx, cy, _ = ImageFolder(root, cache=cache).arrays(pre)
    assert np.array_equal(cx, x) and np.array_equal(cy, y)
    assert cache.misses - before[1] in (1, 2) and cache.hits - before[0] == 5 - (cache.misses - before[1])
    assert not list((tmp_path / "cache").rglob(".tmp-*"))


def test_eval_with_a_cache_reports_the_same_figures_and_its_hits(digits_folder, lenet_files, tmp_path):
    onnx = lenet_files / "lenet5.onnx"
    plain = _eval(onnx, "--data", digits_folder, "--limit", "200")
    first = _eval(onnx, "--data", digits_folder, "--limit", "200", "--cache", tmp_path / "cache")
    second = _eval(onnx, "--data", digits_folder, "--limit", "200", "--cache", tmp_path / "cache")
    assert first["data"]["cache"]["misses"] == 200 and second["data"]["cache"] == {
        "path": str(tmp_path / "cache"), "hits": 200, "misses": 0}
    for result in (first, second):
        for key in ("images", "top1_correct", "top5_correct", "per_class"):
            assert result["models"][0][key] == plain["models"][0][key], key
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 200


def test_decode_workers_and_runtime_threads_share_the_cores(monkeypatch):
    """Workers take the cores the runtime leaves; by default the runtime takes the cores the workers
    leave (its own default, every core, competed with the decoders: 112 against 3,144 images/s)."""
    from cnnexport.exporter.evaluate import eval_threads

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert eval_threads(None, 2) == (1, 2) and eval_threads(None, 1) == (1, 1) and eval_threads(None, None) == (1, 1)
    monkeypatch.setattr("os.cpu_count", lambda: 32)
    assert eval_threads(None, 4) == (8, 4) and eval_threads(None, 28) == (4, 28)
    assert eval_threads(None, None) == (8, 24) and eval_threads(3, None) == (3, 29) and eval_threads(2, 5) == (2, 5)


def test_eval_prints_the_threads_it_chose(lenet_files, digits_folder):
    result = CliRunner().invoke(cli, ["eval", str(lenet_files / "lenet5.onnx"), "--data", "digits", "--limit", "64"])
    assert result.exit_code == 0, result.output
    cores = os.cpu_count()
    workers = max(1, min(8, cores // 2))
    assert (f"threads: {max(1, cores - workers)} per runtime beside {workers} decoding worker(s) on {cores} cores "
            "(chosen" in result.stdout), result.stdout
    given = CliRunner().invoke(cli, ["eval", str(lenet_files / "lenet5.onnx"), "--data", "digits", "--limit", "64",
                                     "--threads", "1", "--json"])
    assert json.loads(given.stdout)["threads"] == {"per_runtime": 1, "decoding_workers": max(1, min(8, cores - 1)),
                                                   "cores": cores, "chosen": False}


@pytest.mark.parametrize("case", ["empty", "loose", "mismatch", "duplicates", "channels", "missing", "merge", "cache",
                                  "weights"])
def test_bad_data_is_one_line_exit_2_and_nothing_written(case, digits_folder, lenet_files, tmp_path):
    onnx = lenet_files / "lenet5.onnx"
    save = tmp_path / "out.json"
    args = [str(onnx), "--save", str(save)]
    if case == "empty":
        (tmp_path / "empty").mkdir()
        args += ["--data", str(tmp_path / "empty")]
    elif case == "loose":
        (tmp_path / "loose").mkdir()
        shutil.copy(next(digits_folder.glob("0/*.png")), tmp_path / "loose" / "a.png")
        args += ["--data", str(tmp_path / "loose")]
    elif case == "mismatch":
        few = tmp_path / "few"
        for c in ("0", "1", "2"):
            shutil.copytree(digits_folder / c, few / c)
        args += ["--data", str(few)]
    elif case == "duplicates":
        (tmp_path / "classes.txt").write_text("0\n1\n1\n2\n")
        args += ["--data", str(digits_folder), "--classes", str(tmp_path / "classes.txt")]
    elif case == "channels":
        np.savez(tmp_path / "rgb.npz", x=np.zeros((4, 3, 32, 32), np.float32), y=np.zeros(4, np.int64))
        args += ["--data", str(tmp_path / "rgb.npz")]
    elif case == "missing":
        args += ["--data", str(tmp_path / "nowhere")]
    elif case == "cache":  # a file where the cache folder should go
        (tmp_path / "cache").write_text("")
        args += ["--data", str(digits_folder), "--cache", str(tmp_path / "cache")]
    elif case == "weights":  # --weights is --model's: without --model it would be ignored
        args += ["--data", str(digits_folder), "--weights", "digits", "--use-ema"]
    else:
        (tmp_path / "a.json").write_text(json.dumps({"data": {"classes": ["a"]}, "models": []}))
        (tmp_path / "b.json").write_text(json.dumps({"data": {"classes": ["b"]}, "models": []}))
        args = ["--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--save", str(save)]
    result = CliRunner().invoke(cli, ["eval", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
    assert not save.exists()
    if case == "weights":
        assert "--weights, --use-ema" in lines[0] and "--model" in lines[0]


def test_the_int8_drop_gate_refuses_and_writes_nothing(tmp_path, lenet_files):
    # Calibrated on inputs a tenth of the real range: int8 clips real digits and loses half its accuracy.
    np.save(tmp_path / "tiny.npy", load_digits().x_train[:64] * 0.1)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["lenet5", "--weights", "digits", "--int8", "--calib", str(tmp_path / "tiny.npy"),
                                      "--eval", "digits", "--int8-max-drop", "1", "--int8-min-cosine", "0",
                                      "-o", str(out)])
    assert result.exit_code != 0 and "--int8-max-drop 1" in result.output and "nothing was written" in result.output
    assert not out.exists()
    dst = tmp_path / "q.int8.onnx"
    result = CliRunner().invoke(cli, ["quantize", str(lenet_files / "lenet5.onnx"), "--calib",
                                      str(tmp_path / "tiny.npy"), "--eval", "digits", "--int8-max-drop", "1",
                                      "-o", str(dst)])
    assert result.exit_code != 0 and "top-1 falls" in result.output and not dst.exists()
    # the same gate passes a well-calibrated file and reports accuracy fp32 -> int8
    result = CliRunner().invoke(cli, ["quantize", str(lenet_files / "lenet5.onnx"), "--calib", "digits", "--eval",
                                      "digits", "--int8-max-drop", "1", "--keep-float", "auto", "-o", str(dst),
                                      "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["evaluation"]["accuracy_drop_points"] <= 1 and dst.exists()
    search = info["quantization"]["keep_float_search"]
    assert search["metric"] == "top1_drop_points" and search["reached"] and search["tune_samples"] == 200


def test_int8_max_drop_needs_labelled_evaluation_data(tmp_path):
    result = CliRunner().invoke(cli, ["lenet5", "--int8", "--calib", "samples", "--int8-max-drop", "1",
                                      "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "needs labelled evaluation data" in result.output
    assert not (tmp_path / "o").exists()


def test_a_labelled_calibration_folder_keeps_its_labels_through_the_split(digits_folder):
    from cnnexport.exporter.int8 import split_data

    data = split_data(str(digits_folder), (1, 1, 32, 32), 120, preprocess=preprocess(32, 1))
    test = load_digits()
    label_of = {x.tobytes(): y for x, y in zip(test.x_test, test.y_test)}
    assert len(data.calibration) == len(data.evaluation) == 60
    assert [label_of[x.tobytes()] for x in data.evaluation] == list(data.labels)
    assert [label_of[x.tobytes()] for x in data.calibration] == list(data.calibration_labels)
    assert len(set(data.calibration_labels)) == 10  # the fixed shuffled order draws from every class


def test_under_an_emulator_eval_says_its_images_per_s_are_the_emulators(digits_folder, lenet_files, monkeypatch):
    from cnnexport.machine import EMULATED_ENV

    monkeypatch.setenv(EMULATED_ENV, "qemu-aarch64 -cpu cortex-a53")  # what scripts/arm_env.sh sets
    args = ["eval", str(lenet_files / "lenet5.onnx"), "--data", str(digits_folder), "--limit", "32"]
    assert json.loads(CliRunner().invoke(cli, [*args, "--json"]).stdout)["emulated"] == "qemu-aarch64 -cpu cortex-a53"
    text = CliRunner().invoke(cli, args).stdout
    assert "the images/s are the emulator's, not the CPU's" in " ".join(text.split())
    monkeypatch.delenv(EMULATED_ENV)
    assert "emulator" not in CliRunner().invoke(cli, args).stdout

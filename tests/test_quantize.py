"""int8 with calibration data: readers on real images, ONNX Runtime QDQ, accuracy on held-out data."""

import dataclasses
import json
from collections import Counter

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image

import cnnexport
from cnnexport.calib import (OrtCalibrationReader, Preprocess, check_disjoint, image_folder, load_samples,
                             representative_dataset, sample_image_paths, split)
from cnnexport.cli import cli
from cnnexport.errors import CalibrationError
from cnnexport.exporter.formats.onnx.quantize_ort import decide_reduce_range, quantize_onnx
from cnnexport.exporter.verify import int8_figures, sqnr_db
from cnnexport.models import create_model
from cnnexport.runtimes import load
from conftest import run_cli


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """The bundled photographs saved as jpg/png/bmp in nested folders, as a user's folder would be."""
    root = tmp_path_factory.mktemp("photos")
    for i, path in enumerate(sample_image_paths()):
        sub = root / ("a" if i % 2 else "b" / __import__("pathlib").Path("deeper"))
        sub.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as img:
            img.convert("RGB").save(sub / f"img{i}.{('jpg', 'png', 'bmp')[i % 3]}")
    (root / "notes.txt").write_text("not an image")
    return root


def test_image_folder_reads_every_image_recursively(photo_folder):
    x = image_folder(photo_folder, Preprocess(size=(64, 48)))
    assert x.shape == (len(sample_image_paths()), 3, 64, 48) and x.dtype == np.float32
    assert -3 < x.min() < 0 < x.max() < 3  # ImageNet-normalised
    gray = image_folder(photo_folder, Preprocess(size=(32, 32), channels=1))
    assert gray.shape[1:] == (1, 32, 32)


def test_16_bit_images_and_every_imagefolder_format_read_as_their_8_bit_twin(tmp_path):
    """A 16-bit PNG or TIFF (microscopy, medical, industrial cameras) read as white: PIL's conversion to 8 bits
    clips every sample over 255. Now scaled, it gives the 8-bit image's inputs; ppm, pgm, tiff and webp files,
    which torchvision's ImageFolder reads, are read too (an earlier version took jpg, png and bmp only)."""
    with Image.open(sample_image_paths()[0]) as photo:
        rgb = photo.convert("RGB").resize((96, 80))
    gray = rgb.convert("L")
    deep = np.asarray(gray, np.uint16) * 257  # the same picture in 16 bits: 255 -> 65535
    rgb.save(tmp_path / "0_rgb.png")
    gray.save(tmp_path / "1_gray.png")
    Image.fromarray(deep).save(tmp_path / "2_deep.png")
    Image.fromarray(deep).save(tmp_path / "3_deep.tif")
    rgb.save(tmp_path / "4_rgb.ppm")
    gray.save(tmp_path / "5_gray.pgm")
    rgb.save(tmp_path / "6_rgb.webp", lossless=True)
    assert Image.open(tmp_path / "2_deep.png").mode.startswith("I")  # 16 bits as PIL opens them
    for channels in (3, 1):
        x = image_folder(tmp_path, Preprocess(size=(48, 48), channels=channels))
        assert x.shape == (7, channels, 48, 48)
        for i in (2, 3, 5):  # the 16-bit and pgm files against the 8-bit grayscale png
            assert np.abs(x[i] - x[1]).max() < 1e-5, i
        for i in (4, 6):  # ppm and lossless webp against the colour png
            assert np.abs(x[i] - x[0]).max() < 1e-5, i


def test_a_folder_with_loose_images_is_one_unlabelled_tree(tmp_path, photo_folder):
    """Images beside subfolders are not a class layout: calibration reads them all (an earlier version took the
    one subfolder as the only class and dropped the rest), and eval refuses to leave them out of its accuracy."""
    from cnnexport.calib.labelled import ImageFolder, is_labelled
    from cnnexport.calib.sources import load_labelled_samples
    from cnnexport.errors import CalibrationError

    paths = sample_image_paths()
    (tmp_path / "sub").mkdir()
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            img.convert("RGB").save(tmp_path / ("sub" if i == 0 else ".") / f"img{i}.png")
    assert is_labelled(str(photo_folder)) and not is_labelled(str(tmp_path))
    x, labels = load_labelled_samples(str(tmp_path), Preprocess(size=(32, 32)))
    assert labels is None and len(x) == len(paths)
    with pytest.raises(CalibrationError, match=f"{len(paths) - 1} image\\(s\\) of .* lie in the folder itself"):
        ImageFolder(tmp_path)


def test_a_limit_takes_images_from_the_whole_tree(tmp_path):
    """--calib-count N took the first N sorted paths: every one from the first subfolders of a nested tree."""
    for folder in ("a", "b", "c", "d"):
        (tmp_path / folder).mkdir()
        for i in range(10):
            value = {"a": 0, "b": 80, "c": 160, "d": 240}[folder]
            Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(tmp_path / folder / f"{i}.png")
    x = image_folder(tmp_path, Preprocess(size=(8, 8)), limit=8)
    assert len(x) == 8 and len(np.unique(x[:, 0, 0, 0])) == 4  # every subfolder represented
    assert np.array_equal(x, image_folder(tmp_path, Preprocess(size=(8, 8)), limit=8))  # the same choice each time


def test_unreadable_calibration_images_are_named(tmp_path, photo_folder):
    from cnnexport.exporter.int8 import split_data

    (tmp_path / "pool").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):  # images of their own: the evaluation folder below holds the photographs
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "pool" / f"img{i}.png")
    (tmp_path / "pool" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    data = split_data(str(tmp_path / "pool"), (1, 3, 32, 32))
    assert len(data.calibration) + len(data.evaluation) == 3
    assert any("1 calibration image(s) could not be read" in w and "broken.jpg" in w for w in data.warnings)
    (photo_folder / "a" / "broken.png").write_bytes(b"not a png")  # a labelled folder's too
    try:
        data = split_data(str(tmp_path / "pool"), (1, 3, 32, 32), eval_source=str(photo_folder))
        assert any("1 evaluation image(s)" in w and "broken.png" in w for w in data.warnings), data.warnings
    finally:
        (photo_folder / "a" / "broken.png").unlink()


def test_one_sample_cannot_be_split():
    from cnnexport.calib.sources import split_order
    from cnnexport.errors import CalibrationError

    with pytest.raises(CalibrationError, match="1 sample\\(s\\) cannot be split.*--eval"):
        split_order(1)


def test_readers_feed_every_sample():
    x = load_samples("samples", Preprocess(size=(32, 32)), 20)
    assert len(x) == 20 and len({s.tobytes() for s in x}) == 20  # crops beyond the 6 photos are distinct
    reader = OrtCalibrationReader(x, "input", batch_size=3)
    batches = iter(reader.get_next, None)
    sizes = [b["input"].shape[0] for b in batches]
    assert sizes == [3] * 6 + [2] and len(reader) == 7
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["input"], x[:3])
    rep = list(representative_dataset(x[:2]))
    assert len(rep) == 2 and rep[0][0].shape == (1, 32, 32, 3)


def test_split_is_disjoint_and_overlap_is_refused():
    x = load_samples("samples", Preprocess(size=(16, 16)), 30)
    calib, evaluation = split(x)
    assert len(calib) + len(evaluation) == 30
    check_disjoint(calib, evaluation)
    with pytest.raises(CalibrationError, match="also calibration samples"):
        check_disjoint(calib, np.concatenate([evaluation, calib[:2]]))


@pytest.mark.parametrize("flags,expected", [
    ({"avx2": True, "avx512f": False, "avx512_vnni": False, "avx_vnni": False}, True),
    ({"avx2": True, "avx512f": True, "avx512_vnni": False, "avx_vnni": False}, True),
    ({"avx2": True, "avx512f": True, "avx512_vnni": True, "avx_vnni": False}, False),
    ({"avx2": True, "avx512f": False, "avx512_vnni": False, "avx_vnni": True}, False),
])
def test_reduce_range_follows_the_cpu_flags(flags, expected):
    decision, reason = decide_reduce_range(flags, "x86_64")
    assert decision is expected and ("VNNI" in reason)
    assert decide_reduce_range(flags, "aarch64")[0] is False


def test_activation_type_follows_the_architecture(tmp_path):
    from cnnexport.exporter.formats.onnx.quantize_ort import decide_activation_type

    assert decide_activation_type("x86_64")[0] == "uint8" and decide_activation_type("aarch64")[0] == "int8"
    cnnexport.export(create_model("lenet5", weights="digits"), (1, 1, 32, 32), tmp_path, name="lenet5", photos=False)
    from cnnexport.calib.digits import load_digits

    calib = load_digits().x_train[:64]
    for machine, dtype in (("x86_64", onnx.TensorProto.UINT8), ("aarch64", onnx.TensorProto.INT8)):
        out = tmp_path / f"{machine}.onnx"
        info = quantize_onnx(tmp_path / "lenet5.onnx", out, calib, machine=machine)
        assert info["activation_type"] == ("uint8" if dtype == onnx.TensorProto.UINT8 else "int8")
        model = onnx.load(str(out))
        inits = {i.name: i for i in model.graph.initializer}
        first_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
        assert inits[first_q.input[2]].data_type == dtype  # the activations' zero point carries the type


def test_sqnr():
    ref = np.ones(100)
    assert sqnr_db(ref, ref) == float("inf")
    assert abs(sqnr_db(ref, ref + 0.1) - 20.0) < 1e-9  # signal 1, noise 0.1: 20 dB


def test_lenet5_digits_int8_costs_under_one_point(tmp_path):
    cnnexport.export(create_model("lenet5", weights="digits"), (1, 1, 32, 32), tmp_path, name="lenet5",
                     photos=False)
    result = CliRunner().invoke(cli, ["quantize", str(tmp_path / "lenet5.onnx"), "--calib", "digits", "--per-layer",
                                      "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    sqnr = [row["sqnr_db"] for row in out["per_layer_sqnr"]]
    assert len(sqnr) > 10 and sqnr == sorted(sqnr) and all(s > 10 for s in sqnr)  # worst first
    q = out["quantization"]
    assert q["quantize_nodes"] > 0 and q["dequantize_nodes"] > 0 and q["per_channel"]
    ops = Counter(n.op_type for n in onnx.load(str(tmp_path / "lenet5.int8.onnx")).graph.node)
    assert ops["QuantizeLinear"] == q["quantize_nodes"] and ops["DequantizeLinear"] == q["dequantize_nodes"]
    ev = out["evaluation"]
    assert ev["samples"] == 450 and ev["accuracy_fp32"] >= 0.98
    assert ev["accuracy_drop_points"] < 1.0, ev
    assert ev["sqnr_db"] > 20 and ev["top1_agreement"] > 0.98 and out["replaced"] == []


def test_quantize_replaces_an_existing_int8_file_only_with_force(tmp_path):
    """`quantize model.onnx` silently overwrote the .int8.onnx the export wrote: now it refuses without
    --force, and says what it replaced with it."""
    cnnexport.export(create_model("lenet5", weights="digits"), (1, 1, 32, 32), tmp_path, name="lenet5",
                     photos=False)
    earlier = tmp_path / "lenet5.int8.onnx"
    earlier.write_bytes(b"the export's int8 file")
    args = ["quantize", str(tmp_path / "lenet5.onnx"), "--calib", "digits", "--calib-count", "50"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and "already exists" in refused.stderr and "--force" in refused.stderr
    assert earlier.read_bytes() == b"the export's int8 file"
    forced = CliRunner().invoke(cli, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert "replaced the earlier lenet5.int8.onnx" in forced.stdout
    assert onnx.load(str(earlier)).graph.node  # the new, real file
    assert not list(tmp_path.glob(".cnnexport-staging-*"))


def test_resnet18_int8_on_real_photographs(tmp_path):
    cnnexport.export(create_model("resnet18"), (1, 3, 224, 224), tmp_path, name="resnet18", photos=False)
    out_path = tmp_path / "r8.onnx"
    result = CliRunner().invoke(cli, ["quantize", str(tmp_path / "resnet18.onnx"), "--calib", "samples",
                                      "--calib-count", "40", "--keep-float", "first,last", "-o", str(out_path),
                                      "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert len(out["quantization"]["excluded_nodes"]) == 2
    assert out["evaluation"]["cosine_mean"] >= 0.98 and "sqnr_db" in out["evaluation"]
    assert any("fewer than 100" in w for w in out["warnings"])
    assert out["sizes_bytes"]["int8"] < 0.4 * out["sizes_bytes"]["fp32"]


def test_keep_float_depthwise_leaves_exactly_the_depthwise_convolutions_in_float(tmp_path):
    from cnnexport.exporter.formats.onnx.quantize_ort import depthwise_convs

    cnnexport.export(create_model("mobilenet_v1_0_25"), (1, 3, 64, 64), tmp_path, name="m", photos=False)
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    groups = {n.name: next((a.i for a in n.attribute if a.name == "group"), 1) for n in graph.node if n.op_type == "Conv"}
    dw = depthwise_convs(onnx.load(str(tmp_path / "m.onnx")))
    assert len(dw) == 13 and all(groups[n] > 1 for n in dw)  # MobileNetV1: 13 depthwise, 14 dense convolutions
    assert sum(g == 1 for g in groups.values()) == 14
    out_path = tmp_path / "m.dw.onnx"
    result = CliRunner().invoke(cli, ["quantize", str(tmp_path / "m.onnx"), "--calib", "samples", "--calib-count", "16",
                                      "--keep-float", "depthwise", "-o", str(out_path), "--json"])
    assert result.exit_code == 0, result.output
    q = onnx.load(str(out_path)).graph
    produced_by = {o: n.op_type for n in q.node for o in n.output}
    float_weights = {n.name for n in q.node if n.op_type == "Conv" and produced_by.get(n.input[1]) != "DequantizeLinear"}
    assert float_weights == set(dw)  # the 14 dense ones take int8 weights
    assert set(json.loads(result.stdout)["quantization"]["excluded_nodes"]) == set(dw)


def test_calibration_errors(tmp_path, photo_folder):
    cnnexport.export(create_model("lenet5"), (1, 1, 32, 32), tmp_path, name="m", photos=False)
    model = str(tmp_path / "m.onnx")
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"not a png")
    np.save(tmp_path / "rgb.npy", np.zeros((10, 3, 32, 32), np.float32))
    cases = [(str(tmp_path / "empty"), "holds no images (jpg/jpeg/png"), (str(tmp_path / "junk"), "could be read"),
             (str(tmp_path / "nope"), "does not exist"), (str(tmp_path / "rgb.npy"), "wrong channel count")]
    for source, message in cases:
        result = CliRunner().invoke(cli, ["quantize", model, "--calib", source])
        assert result.exit_code == 2 and message in result.stderr, (source, result.stderr)
        assert result.stderr.startswith("error: ")
    assert not (tmp_path / "m.int8.onnx").exists()
    result = CliRunner().invoke(cli, ["quantize", model, "--calib", "digits", "--eval", "digits:train"])
    assert result.exit_code == 2 and "also calibration samples" in result.stderr


def test_int8_figures_with_labels():
    a = np.eye(4)[[0, 1, 2, 3]] * 5
    b = a.copy()
    b[3] = np.eye(4)[0] * 5
    fig = int8_figures(a, b, np.array([0, 1, 2, 3]))
    assert fig["top1_agreement"] == 0.75 and fig["accuracy_fp32"] == 1.0 and fig["accuracy_drop_points"] == 25.0


def test_openvino_nncf_int8_on_digits(tmp_path):
    cnnexport.export(create_model("lenet5", weights="digits"), (1, 1, 32, 32), tmp_path, name="lenet5",
                     photos=False)
    result = CliRunner().invoke(cli, ["quantize", str(tmp_path / "lenet5.onnx"), "--calib", "digits", "--runtime",
                                      "openvino", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["output"].endswith("lenet5.int8.xml") and (tmp_path / "lenet5.int8.bin").is_file()
    assert out["quantization"]["fake_quantize_nodes"] > 0
    assert out["quantization"]["overflow_fix"] in ("enable", "first_layer_only")
    assert out["evaluation"]["accuracy_drop_points"] < 1.0 and out["evaluation"]["samples"] == 450
    rt = load(tmp_path / "lenet5.int8.xml")
    assert rt.describe()["runtime"] == "openvino"


@pytest.fixture(scope="module")
def lenet5_int8(tmp_path_factory):
    """One `export --int8` of the digits LeNet-5 (ONNX, OpenVINO, TFLite): its folder and CLI result."""
    folder = tmp_path_factory.mktemp("lenet5_int8")
    result = CliRunner().invoke(cli, ["lenet5", "--weights", "digits", "--openvino", "--tflite", "--int8", "--calib",
                                      "digits", "-o", str(folder), "--json"])
    return folder, result


@pytest.mark.xdist_group("lenet5_int8")
def test_export_int8_flag_writes_and_checks_int8_artifacts(lenet5_int8, tmp_path):
    folder, result = lenet5_int8
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    int8 = [a for a in report["artifacts"] if a["precision"] == "int8"]
    assert [Path_name(a["path"]) for a in int8] == ["lenet5.int8.onnx", "lenet5.int8.xml", "lenet5.int8.tflite"]
    eq = {e["artifact"]: e for e in report["equivalence"]}
    for name in ("lenet5.int8.onnx", "lenet5.int8.xml", "lenet5.int8.tflite"):
        assert eq[name]["passed"] and eq[name]["cosine_mean"] >= 0.98 and eq[name]["samples"] == 450
    assert [q["runtime"] for q in report["quantization"]] == ["onnxruntime", "openvino", "tflite"]
    # the .tflite is fully integer: int8 input and output, int8 weights
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(folder / "lenet5.int8.tflite"))
    assert interp.get_input_details()[0]["dtype"] == np.int8 and interp.get_output_details()[0]["dtype"] == np.int8
    assert sum(d["dtype"] == np.int8 for d in interp.get_tensor_details()) > 10
    model = load(folder / "lenet5.int8.tflite")
    tfl = model.describe()
    assert tfl["io_dtype"] == "int8" and tfl["io_quantization"]["input"][0] > 0
    # bench's timed call: the input quantized once beforehand, the same outputs as a float-fed call, batch 3
    # as 3 calls of the file's batch 1
    x = np.random.default_rng(3).standard_normal((3, 32, 32, 1)).astype(np.float32)
    np.testing.assert_array_equal(model.timed_call(x)(), model.run_batches(x))
    assert "quantize" in report["timings_s"]
    missing = CliRunner().invoke(cli, ["lenet5", "--int8", "-o", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "--calib" in missing.stderr and not (tmp_path / "x").exists()


@pytest.mark.xdist_group("lenet5_int8")
def test_verify_checks_an_int8_file_by_the_int8_rule_its_export_recorded(lenet5_int8, tmp_path):
    """`verify x.int8.* --reference reference.npz` passes the files the export passed: the export records its
    held-out samples, PyTorch's outputs on them and the rule (mean cosine, top-1 drop) in reference.npz."""
    from cnnexport.exporter.verify import load_int8_reference, load_reference, save_reference

    folder, _ = lenet5_int8
    ref = folder / "reference.npz"
    for name in ("lenet5.int8.onnx", "lenet5.int8.xml", "lenet5.int8.tflite"):
        result = CliRunner().invoke(cli, ["verify", str(folder / name), "--reference", str(ref), "--json"])
        assert result.exit_code == 0, result.output
        eq = json.loads(result.stdout)
        assert eq["precision"] == "int8" and eq["cosine_mean"] >= 0.98 and eq["samples"] == 450
        assert eq["accuracy_drop_points"] < 1.0
    held = load_int8_reference(ref)
    inputs, refs, meta = load_reference(ref)
    wrong = tmp_path / "wrong.npz"  # PyTorch's held-out outputs replaced by others: the int8 rule fails
    save_reference(wrong, inputs, refs, meta, dataclasses.replace(held, outputs=held.outputs[::-1].copy()))
    result = CliRunner().invoke(cli, ["verify", str(folder / "lenet5.int8.onnx"), "--reference", str(wrong)])
    assert result.exit_code == 5 and "int8 mean cosine" in result.stderr, result.output
    without = tmp_path / "fp32_only.npz"
    save_reference(without, inputs, refs, {k: v for k, v in meta.items() if k != "int8"})
    result = CliRunner().invoke(cli, ["verify", str(folder / "lenet5.int8.onnx"), "--reference", str(without)])
    assert result.exit_code == 2 and "holds no int8 check data" in result.stderr, result.output


def test_quantize_checks_its_output_folder_before_calibrating(tmp_path):
    """`quantize -o missing_dir/q.int8.onnx` was found only after calibration, as an internal error."""
    cnnexport.export(create_model("lenet5"), (1, 1, 32, 32), tmp_path, name="lenet5", photos=False)
    # the calibration folder does not exist either: the output is checked first, so its error comes
    result = CliRunner().invoke(cli, ["quantize", str(tmp_path / "lenet5.onnx"), "--calib", str(tmp_path / "no_calib"),
                                      "-o", str(tmp_path / "missing_dir" / "q.int8.onnx")])
    assert result.exit_code == 4 and "output folder" in result.stderr and "does not exist" in result.stderr
    assert not (tmp_path / "missing_dir").exists()


def Path_name(p: str) -> str:
    from pathlib import Path

    return Path(p).name


def test_tflite_full_integer_on_digits(tmp_path):
    cnnexport.export(create_model("lenet5", weights="digits"), (1, 1, 32, 32), tmp_path, name="lenet5",
                     formats=("tflite",), photos=False)
    result = CliRunner().invoke(cli, ["quantize", str(tmp_path / "lenet5.tflite"), "--calib", "digits", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["output"].endswith("lenet5.int8.tflite") and out["quantization"]["runtime"] == "tflite"
    assert out["evaluation"]["accuracy_drop_points"] < 1.0


def test_int8_tolerance_is_enforced(tmp_path):
    """An int8 file that misses the cosine bar is refused like an fp32 mismatch: exit 5, nothing written."""
    result = CliRunner().invoke(cli, ["lenet5", "--weights", "digits", "--int8", "--calib", "digits",
                                      "--int8-min-cosine", "1.0", "-o", str(tmp_path / "o")])
    assert result.exit_code == 5 and "lenet5.int8.onnx does not match PyTorch" in result.stderr
    assert not (tmp_path / "o").exists()


def test_export_int8_summary_shows_the_gated_mean_cosine_and_the_accuracy(tmp_path):
    proc = run_cli("lenet5", "--weights", "digits", "--int8", "--calib", "digits", "--calib-count", "100", "-o",
                str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    eq = next(e for e in report["equivalence"] if e["artifact"] == "lenet5.int8.onnx")
    assert eq["tolerance"].startswith("mean cosine >=") and eq["cosine_min"] <= eq["cosine_mean"]
    cosine_row = next(line for line in proc.stdout.splitlines() if line.startswith("│ cosine"))
    assert f"mean {eq['cosine_mean']:.4f} (min {eq['cosine_min']:.4f})" in cosine_row
    assert eq["samples"] == 450 and 0.9 < eq["accuracy_int8"] <= 1
    accuracy_row = next(line for line in proc.stdout.splitlines() if line.startswith("│ accuracy"))
    assert f"int8 {eq['accuracy_int8']:.2%}" in accuracy_row and f"fp32 {eq['accuracy_fp32']:.2%}" in accuracy_row

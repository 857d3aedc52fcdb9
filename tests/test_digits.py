"""The really trained model: LeNet-5 on scikit-learn's digits, shipped with the package."""

import json

import numpy as np
from click.testing import CliRunner

from cnnexport.calib.digits import TEST_SIZE, load_digits
from cnnexport.cli import cli
from cnnexport.models import bundled_weights, create_model
from cnnexport.models.digits_training import accuracy


def test_split_is_fixed_and_disjoint():
    a, b = load_digits(), load_digits()
    assert a.x_train.shape == (1797 - TEST_SIZE, 1, 32, 32) and a.x_test.shape == (TEST_SIZE, 1, 32, 32)
    assert np.array_equal(a.y_test, b.y_test) and np.array_equal(a.x_train, b.x_train)
    assert -1.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    assert set(np.unique(a.y_test)) == set(range(10))
    # no test image is also a training image
    train = {x.tobytes() for x in a.x_train}
    assert not any(x.tobytes() in train for x in a.x_test)


def test_shipped_lenet5_reaches_its_accuracy_on_the_held_out_digits():
    assert bundled_weights("lenet5") == ["digits"]
    model = create_model("lenet5", weights="digits")
    data = load_digits()
    acc = accuracy(model, data.x_test, data.y_test)
    assert acc >= 0.98, acc
    untrained = create_model("lenet5")
    assert accuracy(untrained, data.x_test, data.y_test) < 0.5  # the weights are what makes it work


def test_trained_lenet5_exports_and_verifies(tmp_path):
    result = CliRunner().invoke(cli, ["lenet5", "--weights", "digits", "-o", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["equivalence"][0]["passed"] and report["input_shape"] == [1, 1, 32, 32]
    assert {p["input"] for p in report["equivalence"][0]["per_input"]} == {"random_b1", "random_b3", "photos"}


def test_shipped_depthwise_network_reaches_its_accuracy():
    assert bundled_weights("shufflenet_v2_x0_5") == ["digits"]
    model = create_model("shufflenet_v2_x0_5", weights="digits")  # 10 classes from the shipped weights
    data = load_digits(size=64, channels=3)
    assert accuracy(model, data.x_test, data.y_test) >= 0.95
    assert accuracy(create_model("shufflenet_v2_x0_5", num_classes=10), data.x_test, data.y_test) < 0.5


def test_depthwise_network_int8_is_measured_and_explained(tmp_path):
    """The export picks the trained input size; int8 accuracy is reported on the test split, and the
    per-layer table names the depthwise convolutions among the worst layers."""
    runner = CliRunner()
    result = runner.invoke(cli, ["shufflenet_v2_x0_5", "--weights", "digits", "-o", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["input_shape"] == [1, 3, 64, 64]
    result = runner.invoke(cli, ["quantize", str(tmp_path / "shufflenet_v2_x0_5.onnx"), "--calib", "digits",
                                 "--calib-count", "300", "--per-layer", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    ev = out["evaluation"]
    assert ev["samples"] == 450 and ev["accuracy_fp32"] >= 0.95
    assert abs(ev["accuracy_drop_points"]) < 5 and ev["top1_agreement"] > 0.95
    worst = [row["op"] for row in out["per_layer_sqnr"][:10]]
    assert worst.count("Conv depthwise") >= 5, worst

"""The export pipeline: graph facts read from the saved file, equivalence, atomic output."""

import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnexport
from cnnexport.errors import ExportError, OutputError, UsageError, VerificationError
from cnnexport.exporter import check
from cnnexport.models import create_model
from cnnexport.calib import sample_image_paths
from conftest import SmallNet, UsersNet, one_line_export_failure, randomize_bn_stats, run_cli_without

REPORT_KEYS = {"model", "params", "input_shape", "artifacts", "graph", "equivalence", "timings_s", "warnings",
               "versions"}
GRAPH_KEYS = {"op_counts", "batchnorm_nodes", "dropout_nodes", "nodes_before_simplify", "nodes_after_simplify"}
EQ_KEYS = {"artifact", "max_abs", "max_rel", "cosine", "top1_agreement", "passed"}


def _ops(path) -> dict:
    counts = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _export(model, tmp_path, **kw):
    return cnnexport.export(model, (1, 3, 32, 32), tmp_path / "out", name="small", **kw)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_fold_bn_export_has_no_batchnorm_or_dropout(small_net, tmp_path, exporter):
    report = _export(small_net, tmp_path, exporter=exporter)
    path = tmp_path / "out" / "small.onnx"
    ops = _ops(path)  # read from the saved file, independently of the report
    assert "BatchNormalization" not in ops and "Dropout" not in ops
    assert ops["Conv"] == 2 and ops.get("Mul", 0) >= 1 and ops.get("Add", 0) >= 1  # the unfoldable BN
    assert report["graph"]["op_counts"] == {k: v for k, v in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))}
    assert report["graph"]["batchnorm_nodes"] == 0 and report["graph"]["dropout_nodes"] == 0
    assert report["exporter"] == exporter and report["opset"] == 18
    assert onnx.load(str(path)).opset_import[0].version == 18
    onnx.checker.check_model(str(path), full_check=True)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_no_fold_bn_keeps_batchnorm_nodes(small_net, tmp_path, exporter):
    report = _export(small_net, tmp_path, exporter=exporter, fold_bn=False)
    ops = _ops(tmp_path / "out" / "small.onnx")
    assert ops["BatchNormalization"] == 3 == report["graph"]["batchnorm_nodes"]
    assert "Dropout" not in ops
    assert report["equivalence"][0]["passed"]


def test_report_fields_and_files(small_net, tmp_path):
    report = _export(small_net, tmp_path)
    assert REPORT_KEYS <= set(report)
    assert GRAPH_KEYS <= set(report["graph"])
    assert report["graph"]["nodes_after_simplify"] <= report["graph"]["nodes_before_simplify"]
    (eq,) = report["equivalence"]
    assert EQ_KEYS <= set(eq) and eq["passed"] and eq["cosine"] > 0.99999 and eq["top1_agreement"] == 1.0
    assert {p["input"] for p in eq["per_input"]} == {"random_b1", "random_b3", "photos"}
    assert eq["max_abs"] <= eq["tolerance"]
    (art,) = report["artifacts"]
    assert art["format"] == "onnx" and art["precision"] == "fp32"
    assert art["size_bytes"] == (tmp_path / "out" / "small.onnx").stat().st_size
    assert set(report["timings_s"]) == {"prepare", "export", "simplify", "verify"}
    assert set(report["versions"]) >= {"torch", "onnx", "onnxruntime", "onnxsim", "python"}
    assert report["params"] == sum(p.numel() for p in small_net.parameters())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["reference.npz", "report.json", "small.onnx"]
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report


def test_reexport_removes_the_earlier_exports_files_it_does_not_write_again(small_net, tmp_path):
    """One folder holds one export: a re-export without --openvino removes the earlier .xml/.bin (which
    would fail the new reference.npz) and names them; files cnnexport did not write stay."""
    out = tmp_path / "out"
    _export(small_net, tmp_path, formats=("onnx", "openvino"))
    assert {"small.xml", "small.bin", "small.config.json"} <= {p.name for p in out.iterdir()}
    for mine in ("notes.txt", "small.notes", "other.onnx"):
        (out / mine).write_text("the user's")
    report = _export(small_net, tmp_path)
    assert sorted(report["removed_earlier_files"]) == ["small.bin", "small.config.json", "small.xml"]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "other.onnx", "reference.npz", "report.json",
                                                     "small.notes", "small.onnx"]
    assert json.loads((out / "report.json").read_text())["removed_earlier_files"] == report["removed_earlier_files"]
    assert _export(small_net, tmp_path)["removed_earlier_files"] == []


def test_dynamic_batch_axis_runs_at_several_batch_sizes(small_net, tmp_path):
    import onnxruntime as ort

    _export(small_net, tmp_path)
    facts = check(tmp_path / "out" / "small.onnx")
    assert facts.dynamic_batch and facts.inputs[0]["shape"][1:] == [3, 32, 32]
    session = ort.InferenceSession(str(tmp_path / "out" / "small.onnx"))
    for b in (1, 5):
        x = np.random.default_rng(b).standard_normal((b, 3, 32, 32)).astype(np.float32)
        with torch.no_grad():
            np.testing.assert_allclose(session.run(None, {"input": x})[0], small_net(torch.from_numpy(x)).numpy(),
                                       atol=1e-4)


def test_static_batch(small_net, tmp_path):
    report = cnnexport.export(small_net, (2, 3, 32, 32), tmp_path / "o", name="small", dynamic_batch=False)
    facts = check(tmp_path / "o" / "small.onnx")
    assert not facts.dynamic_batch and facts.inputs[0]["shape"] == [2, 3, 32, 32]
    assert {p["input"] for p in report["equivalence"][0]["per_input"]} == {"random_b2", "photos"}


def test_no_simplify_keeps_node_count(small_net, tmp_path):
    report = _export(small_net, tmp_path, simplify=False)
    g = report["graph"]
    assert g["nodes_before_simplify"] == g["nodes_after_simplify"] and g["simplifier"] == "none"


def test_training_mode_model_exports_eval_graph_and_says_so(tmp_path):
    model = randomize_bn_stats(SmallNet()).train()
    report = _export(model, tmp_path)
    assert report["prepare"]["was_training"] and any("training mode" in w for w in report["warnings"])
    assert report["equivalence"][0]["passed"]  # the reference was computed in eval mode
    assert model.training  # and the caller's module was left as it was


class FeaturesToo(nn.Module):
    """Returns its logits and its features, as a dict or a tuple (retrieval and distillation models do)."""

    def __init__(self, as_dict: bool):
        super().__init__()
        self.net, self.as_dict = randomize_bn_stats(SmallNet()).eval(), as_dict

    def forward(self, x):
        logits = self.net(x)
        features = self.net.features(x).mean((2, 3))
        return {"logits": logits, "features": features} if self.as_dict else (logits, features)


@pytest.mark.parametrize("as_dict", [True, False])
def test_a_model_with_several_outputs_exports_the_one_verified(tmp_path, as_dict):
    """pnnx refused a dict at the output; every file now holds the first output, the one checked."""
    pytest.importorskip("pnnx", reason="the ncnn extra (pnnx) is not installed")
    model = FeaturesToo(as_dict)
    report = cnnexport.export(model, (1, 3, 32, 32), tmp_path, name="m", formats=("onnx", "ncnn"), photos=False)
    assert report["prepare"]["outputs"] == ({"returned": "a dict of 2 outputs (logits, features)", "kept": "'logits'"}
                                            if as_dict else {"returned": "a tuple of 2 outputs", "kept": "#0"})
    assert any("the files hold its first output" in w for w in report["warnings"])
    assert [o.name for o in onnx.load(tmp_path / "m.onnx").graph.output] == ["output"]
    assert all(e["passed"] for e in report["equivalence"]) and len(report["equivalence"]) == 2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_model_held_in_another_float_type_exports_from_an_fp32_copy(tmp_path, dtype):
    """A half model failed as 'cannot take input shape ... pass the size it expects'."""
    model = randomize_bn_stats(SmallNet()).eval().to(dtype)
    report = _export(model, tmp_path)
    assert report["equivalence"][0]["passed"]
    assert any(f"weights are {str(dtype)[6:]}: it was exported from an fp32 copy" in w for w in report["warnings"])
    assert next(model.parameters()).dtype == dtype  # the caller's model untouched


def test_torch_compile_wrapper_is_taken_off(tmp_path):
    model = randomize_bn_stats(SmallNet()).eval()
    report = cnnexport.export(torch.compile(model), (1, 3, 16, 16), tmp_path / "c", photos=False)
    assert report["model"] == "smallnet" and report["equivalence"][0]["passed"]
    assert any("wrapped by torch.compile" in w for w in report["warnings"])


def test_data_parallel_wrappers_are_taken_off_in_any_order(tmp_path):
    """A training script's DataParallel (under torch.compile too) failed in both ONNX exporters."""
    model = randomize_bn_stats(SmallNet()).eval()
    report = cnnexport.export(torch.compile(nn.DataParallel(model)), (1, 3, 16, 16), tmp_path / "d", photos=False)
    assert report["model"] == "smallnet" and report["equivalence"][0]["passed"]
    assert report["graph"]["batchnorm_nodes"] == 0
    wrapped = [w for w in report["warnings"] if "came wrapped by" in w]
    assert len(wrapped) == 2 and "DataParallel" in wrapped[1]


@pytest.mark.parametrize("capture", ["script", "trace"])
def test_a_torchscript_module_exports_through_onnx_unprepared(tmp_path, capture):
    """No Python forward to prepare: exported as it is, its BatchNorms folded in the ONNX graph, verified against
    the module itself; the formats converted from the Python module are refused before any work."""
    model = randomize_bn_stats(SmallNet()).eval()
    scripted = torch.jit.script(model) if capture == "script" else torch.jit.trace(model, torch.randn(1, 3, 16, 16))
    report = cnnexport.export(scripted, (1, 3, 16, 16), tmp_path / "s", formats=("onnx", "openvino"),
                              photos=False)
    assert report["model"] == "smallnet" and report["prepare"]["torchscript"] and not report["prepare"]["folded"]
    assert report["graph"]["batchnorm_nodes"] == 0 and report["graph"]["dropout_nodes"] == 0
    assert len(report["equivalence"]) == 2 and all(e["passed"] for e in report["equivalence"])
    assert any("TorchScript module has no Python forward" in w for w in report["warnings"])
    from cnnexport.runtimes import load

    with torch.no_grad():  # the file computes what the module does (eval mode: dropout off)
        x = torch.randn(2, 3, 16, 16)
        (got,) = load(tmp_path / "s" / "smallnet.onnx").run(x.numpy())
        assert np.allclose(got, model(x).numpy(), atol=1e-4)
    with pytest.raises(UsageError, match="--tflite converts the Python module, which a TorchScript file does not"):
        cnnexport.export(scripted, (1, 3, 16, 16), tmp_path / "t", formats=("tflite",), photos=False)
    with pytest.raises(UsageError, match="the dynamo exporter traces Python code"):
        cnnexport.export(scripted, (1, 3, 16, 16), tmp_path / "t", exporter="dynamo", photos=False)
    assert not (tmp_path / "t").exists()


class TraceUnsafe(nn.Module):
    """Its output changes from call to call; a traced export freezes one call."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.conv(x).mean((2, 3)) * self.calls


def test_failed_verification_leaves_nothing_and_keeps_earlier_artifacts(tmp_path, small_net):
    out = tmp_path / "out"
    # caught in PyTorch before anything is exported: a copy of it, unchanged, already differs
    with pytest.raises(VerificationError, match="does not give the same outputs twice"):
        cnnexport.export(TraceUnsafe(), (1, 3, 16, 16), out, name="unsafe")
    assert not out.exists()
    # an earlier run's files in the same folder are not touched
    _export(small_net, tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(VerificationError):
        cnnexport.export(TraceUnsafe(), (1, 3, 16, 16), out, name="small")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_atol_overrides_the_tolerance(small_net, tmp_path):
    report = _export(small_net, tmp_path, atol=0.5)
    assert report["equivalence"][0]["tolerance"] == 0.5


def test_bad_inputs_raise_usage_errors(small_net, tmp_path):
    with pytest.raises(UsageError, match="cannot take input shape"):
        cnnexport.export(small_net, (1, 1, 32, 32), tmp_path / "x")
    with pytest.raises(UsageError, match="input shape"):
        cnnexport.export(small_net, (1, 3, -4, 32), tmp_path / "x")
    with pytest.raises(UsageError, match="exporter"):
        cnnexport.export(small_net, (1, 3, 32, 32), tmp_path / "x", exporter="tf")
    assert not (tmp_path / "x").exists()


def test_a_forward_that_needs_two_inputs_is_refused_with_their_names(small_net, tmp_path):
    """No input size fits forward(x, mask): the refusal names the arguments and the fix, not --input-size."""

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = small_net

        def forward(self, x, mask, scale=1.0):
            return self.net(x * mask) * scale

    with pytest.raises(UsageError, match=r"forward needs 2 inputs \(x, mask\).*wrap it") as info:
        cnnexport.export(TwoInputs(), (1, 3, 32, 32), tmp_path / "x")
    assert "--input-size" not in str(info.value) and not (tmp_path / "x").exists()

    class Wrapped(nn.Module):  # the fix the message gives, and a forward(*args) passes the check
        def __init__(self):
            super().__init__()
            self.inner = TwoInputs()

        def forward(self, *args):
            return self.inner(args[0], torch.ones_like(args[0]))

    assert _export(Wrapped(), tmp_path)["equivalence"][0]["passed"]


def test_models_quantized_by_torch_ao_are_refused_naming_it(tmp_path):
    """quantize_dynamic's model failed in both exporters: it is named with the fix (a QAT model before convert
    exports: test_qat); fuse_modules' float modules export."""
    from torch.ao import quantization as tq

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 3))

    dynamic = tq.quantize_dynamic(net().eval(), {nn.Linear}, dtype=torch.qint8)
    with pytest.raises(UsageError, match=r"the model holds torch.ao's quantized modules \(Linear: .*--int8 --calib"):
        cnnexport.export(dynamic, (1, 3, 16, 16), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    fused = tq.fuse_modules(net().eval(), [["0", "1", "2"]])  # torch.ao.nn.intrinsic's float ConvReLU2d
    assert type(fused[0]).__module__.startswith("torch.ao.nn.intrinsic")
    assert cnnexport.export(fused, (1, 3, 16, 16), tmp_path / "f")["equivalence"][0]["passed"]


def test_export_options_are_checked_once_and_errors_name_the_parameter(small_net, tmp_path):
    """An API caller reads the parameter's name, the CLI its flag; options and keywords combine."""
    from cnnexport.cli.app import flag_of
    from cnnexport.errors import ParameterError
    from cnnexport.exporter.options import ExportOptions

    with pytest.raises(ParameterError, match=r"^atol must be a finite number >= 0, got -1") as caught:
        cnnexport.export(small_net, (1, 3, 32, 32), tmp_path / "x", atol=-1.0)
    assert caught.value.with_names(flag_of).startswith("--atol must be")
    with pytest.raises(ParameterError) as caught:
        cnnexport.export(small_net, (1, 3, 32, 32), tmp_path / "x", engine_max_batch=8)
    assert str(caught.value) == "engine_max_batch takes 1..4096 and applies to tensorrt"
    assert caught.value.with_names(flag_of) == "--tensorrt-max-batch takes 1..4096 and applies to --tensorrt"
    with pytest.raises(ParameterError, match="unknown exporter '{tf}'"):  # a caller's braces are not parameters
        ExportOptions.of(exporter="{tf}")
    with pytest.raises(TypeError, match="unexpected keyword argument.*colour"):
        cnnexport.export(small_net, (1, 3, 32, 32), tmp_path / "x", colour="red")
    assert not (tmp_path / "x").exists()
    base = ExportOptions(formats=("onnx",), atol=0.5)
    report = cnnexport.export(small_net, (1, 3, 32, 32), tmp_path / "y", options=base, simplify=False)
    assert report["equivalence"][0]["tolerance"] == 0.5 and report["graph"]["simplifier"] == "none"


def test_convert_and_verify_is_the_exports_own_step(tmp_path):
    """The public step scripts call: each format written and checked as the export does it, fp16 by fp16's
    rule with the fp32 file it was made from."""
    from cnnexport.exporter.pipeline import convert_and_verify, reference_of
    from cnnexport.exporter.prepare import prepare
    from cnnexport.exporter.onnx_export import to_onnx
    from cnnexport.exporter.formats import ConvertSource

    torch.manual_seed(0)
    model, shape = create_model("lenet5"), (1, 1, 32, 32)
    reference = reference_of(model, shape)
    assert reference.floor is not None and reference.scale > 0 and reference_of(model, shape, floor=False).floor is None
    prepared = prepare(model)
    onnx_path = tmp_path / "lenet5.onnx"
    to_onnx(prepared, onnx_path, shape)
    source = ConvertSource(prepared, onnx_path, shape)
    fp32 = convert_and_verify(source, reference, tmp_path, "lenet5", ["onnx", "openvino"])
    assert [c.artifact.files[0].name for c in fp32] == ["lenet5.onnx", "lenet5.xml"]
    assert all(c.entry["passed"] and c.fp32 is None and c.entry["max_rel"] < 1e-5 for c in fp32)
    (half,) = convert_and_verify(source, reference, tmp_path, "lenet5", ["openvino"], precision="fp16")
    assert half.artifact.precision == "fp16" and half.fp32.files[0].name == "lenet5.xml"
    assert half.entry["passed"] and "fp16_check" in half.entry


def test_unwritable_output_dir(small_net, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write to output directory"):
        cnnexport.export(small_net, (1, 3, 32, 32), blocker / "sub")
    assert blocker.read_text() == "not a folder"


def test_tflite_maxpool_padding_becomes_a_zero_pad_only_after_relu():
    from cnnexport.exporter.prepare import prepare
    from cnnexport.exporter.formats.xnnpack_rewrites import zero_pad_maxpool_after_relu

    model = prepare(create_model("resnet18"))
    rewritten, changes = zero_pad_maxpool_after_relu(model)
    assert len(changes) == 1 and isinstance(rewritten.maxpool[0], nn.ZeroPad2d)
    assert isinstance(model.maxpool, nn.MaxPool2d)  # the original is left alone
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), rewritten(x))
    # a pool whose input may be negative keeps its -inf padding
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(3, 2, 1)).eval()
    assert zero_pad_maxpool_after_relu(plain) == (plain, [])


def test_litert_rewrites_compute_the_same_values():
    from cnnexport.exporter.formats.tflite.litert_rewrites import for_litert

    model = randomize_bn_stats(UsersNet()).eval()
    x = torch.randn(2, 3, 32, 32)
    rewritten, changes = for_litert(model, x)
    assert [c.split(" (")[0].split(":")[0] for c in changes] == [
        "2 expands before a broadcasting element-wise op dropped",  # one per SE gate
        "1 adaptive max-pool done as a max-pool of kernel = stride",
        "1 batched matrix-vector product done as a product and a sum"]
    assert not any(op in rewritten.code for op in ("expand", "matmul", "adaptive_max_pool2d"))
    with torch.no_grad():
        assert torch.allclose(rewritten(x), model(x), atol=1e-6)

    class Kept(nn.Module):  # an expand whose shape a use does not broadcast to by itself stays
        def forward(self, x):
            y = x.mean((2, 3), keepdim=True).expand_as(x)
            return torch.cat([x * y, y], 1)

    kept = Kept().eval()
    assert for_litert(kept, x) == (kept, [])


def test_tflite_of_the_blocks_users_write(tmp_path):
    """The classic SE block (x * y.expand_as(x)), GCNet's context block and CBAM convert: rewritten on
    litert-torch's failure, the file verified against PyTorch, and the changes named in the report."""
    report = cnnexport.export(randomize_bn_stats(UsersNet()), (1, 3, 32, 32), tmp_path, formats=("tflite",),
                              photos=False)
    entry = next(a for a in report["artifacts"] if a["format"] == "tflite")
    assert len(entry["graph_changes"]) == 3
    assert all(e["passed"] for e in report["equivalence"]) and len(report["equivalence"]) == 2


class RelativePositionNet(nn.Module):
    """BotNet's relative-position logits in small (timm's rel_logits_1d): a map tiled by ``expand`` and then
    permuted, and one given a new leading axis by ``expand`` and then transposed; weighted by position, so
    that a transpose left out changes the output."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.tiled_weight = nn.Parameter(torch.randn(1, 8, 8, 8, 8))
        self.stacked_weight = nn.Parameter(torch.randn(3, 8, 8, 8))

    def forward(self, x):
        y = self.conv(x)
        tiled = y.reshape(-1, 8, 1, 8, 8).expand(-1, -1, 8, -1, -1).permute(0, 1, 3, 2, 4)
        stacked = y.expand(3, -1, -1, -1, -1).transpose(0, 1)
        return (tiled * self.tiled_weight).sum((2, 3, 4)) + (stacked * self.stacked_weight).sum((1, 3, 4))


def test_permutes_of_an_expand_are_made_before_it_for_litert():
    """Made before every conversion (litert-torch converts them wrongly without an error); nothing else is
    changed unless litert-torch refused the model."""
    from cnnexport.exporter.formats.tflite.litert_rewrites import for_litert

    torch.manual_seed(0)
    model, x = RelativePositionNet().eval(), torch.randn(1, 3, 8, 8)
    rewritten, changes = for_litert(model, x, refused=False)
    assert [c.split(" (")[0] for c in changes] == ["2 permutes of an expanded tensor done before the expand"]
    graph = rewritten.graph
    permuted = [n for n in graph.nodes if n.op == "call_function" and "permute" in str(n.target)]
    assert len(permuted) == 2 and not any("expand" in str(n.args[0].target) for n in permuted)
    with torch.no_grad():
        assert torch.allclose(rewritten(x), model(x), atol=1e-5)
    users = randomize_bn_stats(UsersNet()).eval()  # its expands feed a broadcasting op, not a permute
    assert for_litert(users, torch.randn(1, 3, 32, 32), refused=False) == (users, [])


def test_tflite_of_relative_position_logits(tmp_path):
    """Before the change litert-torch wrote the tiled map's broadcast without its transpose: botnet26t_256 was
    off by 0.23 of its output scale, this model by 0.66 (the stacked map, a new leading axis, it got right)."""
    torch.manual_seed(0)
    report = cnnexport.export(RelativePositionNet().eval(), (1, 3, 8, 8), tmp_path, formats=("tflite",),
                              photos=False)
    entry = next(a for a in report["artifacts"] if a["format"] == "tflite")
    assert [c.split(" (")[0] for c in entry["graph_changes"]] == ["2 permutes of an expanded tensor done before the expand"]
    assert all(e["passed"] for e in report["equivalence"]) and len(report["equivalence"]) == 2


def test_ncnn_of_a_bare_sequential_with_a_prelu(tmp_path):
    """pnnx writes a PyTorch copy of the model beside the ncnn files and imports it; for a bare nn.Sequential with a
    PReLU it names an attribute ``self.1...``, a syntax error, after the ncnn files are written. The files are
    used and verified; the copy's failure is not the conversion's."""
    pytest.importorskip("pnnx", reason="the ncnn converter is not installed (pip install 'cnnexport[ncnn]')")
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.PReLU(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    report = cnnexport.export(model.eval(), (1, 3, 8, 8), tmp_path, formats=("ncnn",), photos=False)
    assert [e["artifact"] for e in report["equivalence"]] == ["sequential.onnx", "sequential.ncnn.param"]
    assert all(e["passed"] for e in report["equivalence"])


class StackedSum(nn.Module):
    """Branches fused by ``torch.stack(..., 0).sum(0)``: ncnn's runtime dies of SIGFPE running what pnnx makes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        y = self.conv(x)
        return torch.stack([y, y * 2], 0).sum(0).mean((2, 3))


def make_stacked_sum(num_classes: int = 8) -> nn.Module:
    torch.manual_seed(0)
    return StackedSum().eval()


def test_ncnn_runtime_crash_is_one_line_and_writes_nothing(tmp_path):
    """The converted file is run first in a child process: the crash is named, exit 7, nothing written (the
    crash used to take the export down with it: 'Floating point exception', its staging folder left)."""
    pytest.importorskip("pnnx", reason="the ncnn converter is not installed (pip install 'cnnexport[ncnn]')")
    line = one_line_export_failure("test_export:make_stacked_sum", "--ncnn", tmp_path / "out")
    assert "ncnn's runtime crashed (SIGFPE)" in line


class GeMGate(nn.Module):
    """Generalised-mean pooling gating the map, as users write it: pnnx's TorchScript route writes layers ncnn has
    no kernel for (pnnx.Expression, aten::avg_pool2d), its ONNX route plain Pooling and BinaryOp pow."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1)
        self.p = nn.Parameter(torch.ones(1) * 3)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.conv(x)
        pooled = F.avg_pool2d(x.clamp(min=1e-6).pow(self.p), (x.size(-2), x.size(-1))).pow(1.0 / self.p)
        return self.fc((pooled.expand_as(x) * x).mean((2, 3)))


def test_ncnn_converts_from_the_onnx_file_where_the_modules_route_fails(tmp_path):
    """The ncnn file from pnnx's ONNX route, verified, where the module's route wrote layers ncnn cannot load;
    the report says which route wrote it and why the first failed (ncnn failed to load the file before)."""
    pytest.importorskip("pnnx", reason="the ncnn converter is not installed (pip install 'cnnexport[ncnn]')")
    torch.manual_seed(0)
    report = cnnexport.export(GeMGate().eval(), (1, 3, 32, 32), tmp_path / "g", formats=("onnx", "ncnn"))
    (art,) = [a for a in report["artifacts"] if a["format"] == "ncnn"]
    assert art["converted_from"] == "onnx" and "ncnn has no kernel for" in art["module_route_failed"]
    assert "pnnx.Expression" in art["module_route_failed"]
    assert all(e["passed"] for e in report["equivalence"]) and len(report["equivalence"]) == 2
    ordinary = cnnexport.export(randomize_bn_stats(SmallNet()).eval(), (1, 3, 16, 16), tmp_path / "s",
                                formats=("onnx", "ncnn"), photos=False)
    assert [a["converted_from"] for a in ordinary["artifacts"] if a["format"] == "ncnn"] == ["module"]


class FocusStem(nn.Module):
    """YOLOv5's Focus: space to depth by strided slicing, which pnnx leaves to ncnn as Tensor.slice."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(12, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)
        return self.fc(self.conv(y).mean((2, 3)))


def test_strided_slices_become_a_slice_and_a_one_by_one_max_pool_that_picks_the_same_elements(tmp_path):
    """Each slice with a step over height or width, odd lengths, offsets, ends and negative bounds among them,
    computes the same values after the rewrite (ONNX Runtime, exactly); a step over the channels is left."""
    import onnxruntime as ort

    from cnnexport.exporter.formats.ncnn.onnx_slices import strided_slices_as_pools

    class Slices(nn.Module):
        def forward(self, x):
            parts = [x[..., ::2, ::2], x[..., 1::2, :], x[:, :, 1:6:3, ::2], x[..., -5::2, 2:-1:2], x[:, ::2]]
            return torch.cat([p.flatten(1) for p in parts], 1)

    x = torch.randn(2, 4, 11, 9)
    torch.onnx.export(Slices(), (x,), str(tmp_path / "s.onnx"), dynamo=False, opset_version=18)
    model = onnx.load(str(tmp_path / "s.onnx"))
    # the TorchScript exporter writes one Slice per axis: 2 + 1 + 2 + 2, and not x[:, ::2] (over the channels)
    assert strided_slices_as_pools(model) == 7
    assert sum(n.op_type == "MaxPool" for n in model.graph.node) == 7
    onnx.checker.check_model(model)
    feed = {model.graph.input[0].name: x.numpy()}
    before = ort.InferenceSession(str(tmp_path / "s.onnx")).run(None, feed)[0]
    after = ort.InferenceSession(model.SerializeToString()).run(None, feed)[0]
    assert np.array_equal(before, after) and np.array_equal(after, Slices()(x).numpy())


def test_ncnn_runs_a_focus_stem_through_the_onnx_route_and_its_slice_rewrite(tmp_path):
    pytest.importorskip("pnnx", reason="the ncnn converter is not installed (pip install 'cnnexport[ncnn]')")
    torch.manual_seed(0)
    report = cnnexport.export(FocusStem().eval(), (1, 3, 32, 32), tmp_path / "f", formats=("onnx", "ncnn"))
    (art,) = [a for a in report["artifacts"] if a["format"] == "ncnn"]
    assert art["converted_from"] == "onnx" and "Tensor.slice" in art["module_route_failed"]
    assert art["graph_changes"] and art["graph_changes"][0].startswith("4 strided slice(s)")
    assert all(e["passed"] for e in report["equivalence"]) and len(report["equivalence"]) == 2


def test_simplify_file_to_file_in_place_and_beside(small_net, tmp_path):
    """onnxsim reads and writes the files itself: the result is a checked graph with fewer nodes, the
    proto it returns is the file's, and no temporary file is left in the folder either way."""
    from cnnexport.exporter.onnx_export import to_onnx
    from cnnexport.exporter.simplify import simplify

    src = tmp_path / "a.onnx"
    to_onnx(small_net.eval(), src, (1, 3, 32, 32), keep_batchnorm=True)  # BatchNormalization nodes to fuse
    before = check(src)
    assert before.batchnorm_nodes
    tool, warnings, model = simplify(src, tmp_path / "b.onnx")
    assert (tool, warnings) == ("onnxsim", [])
    after = check(tmp_path / "b.onnx", model=model)
    assert after.op_counts == check(tmp_path / "b.onnx").op_counts and after.nodes < before.nodes
    assert check(src).nodes == before.nodes  # the source is left as it was
    tool, _, _ = simplify(src, src)
    assert tool == "onnxsim" and check(src).nodes == after.nodes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx"]


@pytest.mark.parametrize("simplify", [True, False])
def test_foreign_blocks_export_folded_and_verified(tmp_path, simplify):
    """A BatchNorm subclass with an activation, conv-norm-act blocks, a functional batch_norm and a block
    with reparameterize(): folded where the call is, verified, and the saved file proves it."""
    from test_prepare import foreign_net

    from cnnexport.exporter.onnx_fold import count_affine_after_conv

    report = cnnexport.export(foreign_net(), (1, 3, 32, 32), tmp_path / "f", name="foreign", simplify=simplify)
    path = tmp_path / "f" / "foreign.onnx"
    ops = _ops(path)
    assert "BatchNormalization" not in ops and ops.get("Mul", 0) == 0  # every BN sat after a conv
    assert count_affine_after_conv(onnx.load(str(path))) == 0 == report["graph"]["foldable_affine_after_conv"]
    assert ops["Conv"] == 4 and ops["HardSwish"] == 2  # rep's two branches are one conv; activations kept
    levels = {(f["level"], f["count"]) for f in report["graph"]["folded"]}
    assert ("graph", 3) in levels or {("graph", 2), ("graph", 1)} <= levels, levels
    assert report["prepare"]["reparameterized"][0]["module"] == "rep"
    assert report["prepare"]["check"]["passed"] is True
    assert report["equivalence"][0]["passed"] and report["equivalence"][0]["cosine"] > 0.99999


def test_a_prepare_change_that_breaks_the_model_is_named(tmp_path, monkeypatch):
    from test_prepare import foreign_net

    import cnnexport.exporter.prepare as prepare_mod

    real = prepare_mod.folded_params

    def wrong_for_depthwise(weight, bias, bn, transposed_groups=None):
        w, b = real(weight, bias, bn, transposed_groups)
        return (w * -1, b) if weight.shape[1] == 1 else (w, b)  # a bug that hits only the depthwise conv

    monkeypatch.setattr(prepare_mod, "folded_params", wrong_for_depthwise)
    with pytest.raises(VerificationError) as exc:
        cnnexport.export(foreign_net(), (1, 3, 32, 32), tmp_path / "b", name="broken")
    message = str(exc.value)
    assert message.startswith("preparation failed: 'fold ") and "into Conv2d 'dw.conv'" in message
    assert "--no-fold-bn" in message and "raise --atol" not in message and "wrong, not rounding" in message
    assert not (tmp_path / "b").exists()


def test_rounding_floor_is_measured_and_raises_the_tolerance_only_above_the_fixed_rule(small_net, tmp_path):
    report = _export(small_net, tmp_path)
    floor = report["rounding_floor"]
    assert 0 < floor["max_abs"] < 1e-4 * report["equivalence"][0]["output_scale"]
    assert report["equivalence"][0]["tolerance_rule"] == "1e-04 x max |output|"

    class Offset(nn.Module):  # adds and removes 1e5: fp32 keeps ~3 decimals of the result, float64 all
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return (self.fc(x.flatten(1)) + 1e5) - 1e5

    out = cnnexport.export(Offset(), (1, 1, 8, 8), tmp_path / "offset", name="offset", photos=False)
    eq, floor = out["equivalence"][0], out["rounding_floor"]["max_abs"]
    assert eq["passed"] and floor > 1e-4 * eq["output_scale"]  # the fixed rule alone could not hold it
    assert eq["tolerance"] == pytest.approx(4 * floor) and eq["tolerance_rule"].startswith("4 x the model's fp32")
    assert eq["conclusive"] and floor < 1e-2 * eq["output_scale"]


def test_a_floor_too_wide_to_tell_makes_the_check_inconclusive(tmp_path):
    """fp32 that cannot represent the model (its floor past 1e-2 of the scale) gives a tolerance a wrong file
    would meet too: the check passes, and says it is inconclusive, rather than a plain 'passed'."""
    class Offset(nn.Module):  # adds and removes 1e8: fp32 keeps no decimal of the result (its step is 8)
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return (self.fc(x.flatten(1)) * 100 + 1e8) - 1e8

    out = cnnexport.export(Offset(), (1, 1, 8, 8), tmp_path / "o", name="offset", photos=False)
    eq = out["equivalence"][0]
    assert out["rounding_floor"]["relative"] > 1e-2
    assert eq["passed"] and not eq["conclusive"] and "inconclusive" in eq["tolerance_rule"]
    assert any("checks are inconclusive" in w for w in out["warnings"])
    chosen = cnnexport.export(Offset(), (1, 1, 8, 8), tmp_path / "a", name="offset", photos=False, atol=1e3)
    assert chosen["equivalence"][0]["conclusive"]  # the caller's own tolerance is the caller's rule


def test_approximation_floors_follow_the_functions_the_model_calls():
    from cnnexport.exporter.pipeline import _forward
    from cnnexport.exporter.prepare_check import approximation_floors
    from cnnexport.exporter.verify import FLOOR_NAME, floor_for, make_inputs

    torch.manual_seed(0)
    tanh_net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(144, 3)).eval()
    relu_net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3)).eval()
    inputs = make_inputs((1, 1, 8, 8), dynamic_batch=False, photos=False)
    tables = {"a": {"tanh": 1e-6}, "b": {"gelu": 1e-3}, "c": {"tanh": 1e-4}}
    floors = approximation_floors(tanh_net, inputs, _forward, tables)
    assert set(floors) == {"a", "c"}  # b approximates only a function the model never calls
    assert 0 < floors["a"] < 1e-4 and floors["c"] == pytest.approx(100 * floors["a"], rel=1e-6)  # seeded, linear
    assert floors == approximation_floors(tanh_net, inputs, _forward, tables)
    assert approximation_floors(relu_net, inputs, _forward, tables) == {}
    assert floor_for(1e-9, {"ncnn": 1e-7}, "ncnn") == (1e-7, "the model's floor under ncnn's approximate tanh")
    assert floor_for(1e-6, {"ncnn": 1e-7}, "ncnn") == (1e-6, FLOOR_NAME)   # the larger floor holds
    assert floor_for(1e-9, {"ncnn": 1e-7}, "onnxruntime") == (1e-9, FLOOR_NAME)


@pytest.mark.parametrize("fmt", ["ncnn", "mnn"])
def test_an_untrained_tanh_network_passes_on_runtimes_that_approximate_tanh(fmt, tmp_path):
    """Random-init LeNet-5: outputs ~1e-4, so ncnn's and MNN's tanh (off by ~1e-7 near zero, where PyTorch's
    is exact) missed 1e-4 x max |output| and read "wrong, not rounding". A wrong file still fails."""
    torch.manual_seed(0)
    report = cnnexport.export(create_model("lenet5"), (1, 1, 32, 32), tmp_path / "l5", name="lenet5", formats=(fmt,))
    eq = {e["artifact"]: e for e in report["equivalence"]}
    checked = next(e for name, e in eq.items() if name != "lenet5.onnx")
    assert checked["passed"] and checked["tolerance_rule"].startswith(f"4 x the model's floor under {fmt}'s approximate")
    assert eq["lenet5.onnx"]["tolerance_rule"] == "1e-04 x max |output|"  # ONNX Runtime's tanh is exact enough
    assert checked["tolerance"] < 0.05 * checked["output_scale"]
    assert checked["tolerance"] == pytest.approx(4 * report["approximation_floors"][fmt]["max_abs"])
    torch.manual_seed(1)  # another network's reference: the file is wrong for it and must still fail
    other = cnnexport.export(create_model("lenet5"), (1, 1, 32, 32), tmp_path / "other", name="lenet5",
                             formats=("onnx",))
    from click.testing import CliRunner
    from cnnexport.cli import cli

    result = CliRunner().invoke(cli, ["verify", str(tmp_path / "l5" / checked["artifact"]), "--reference",
                                      str(tmp_path / "other" / "reference.npz")])
    assert result.exit_code == 5 and "does not match" in result.stderr, result.output
    assert other["equivalence"][0]["output_scale"] > 0


def test_failure_diagnosis_tells_rounding_from_wrong():
    from cnnexport.exporter.verify import diagnosis, tolerance

    assert "rounding, not a wrong export" in diagnosis(3e-4, 0.999999, 1.0, floor=1e-4)
    assert "wrong, not rounding" in diagnosis(3e-4, 0.98, 1.0, floor=1e-4)     # the direction changed
    assert "wrong, not rounding" in diagnosis(5e-2, 0.999999, 1.0, floor=1e-4)  # 500 floors away
    assert "wrong, not rounding" in diagnosis(3e-4, 0.999999, 1.0, floor=None)  # no floor measured
    assert tolerance(1e-4, 10.0, None) == (1e-3, "1e-04 x max |output|")
    assert tolerance(1e-4, 10.0, 1e-3)[0] == 4e-3 and tolerance(1e-4, 10.0, 1e-5)[0] == 1e-3


class UnevenPool(nn.Module):
    """An adaptive pool whose output size does not divide its input (timm's vgg at a small input): the
    TorchScript exporter has no conversion for it."""

    def __init__(self):
        super().__init__()
        self.conv, self.pool, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(7), nn.Linear(196, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


def test_auto_exporter_falls_back_to_dynamo_where_torchscript_has_no_conversion(tmp_path):
    with pytest.raises(ExportError, match="torchscript exporter failed.*try --exporter dynamo"):
        cnnexport.export(UnevenPool().eval(), (1, 3, 12, 12), tmp_path / "ts", exporter="torchscript", photos=False)
    assert not (tmp_path / "ts").exists() or not any((tmp_path / "ts").iterdir())
    report = cnnexport.export(UnevenPool().eval(), (1, 3, 12, 12), tmp_path / "auto", photos=False)
    assert report["exporter"] == "dynamo" and report["exporter_requested"] == "auto"
    assert any("TorchScript exporter cannot write this model" in w for w in report["warnings"])
    assert report["equivalence"][0]["passed"]
    plain = cnnexport.export(nn.Sequential(nn.Conv2d(3, 4, 3)).eval(), (1, 3, 8, 8), tmp_path / "p", photos=False)
    assert plain["exporter"] == "torchscript"  # auto keeps TorchScript wherever it works


class BatchStatistics(nn.Module):
    """A BatchNorm that normalises by each batch's own statistics, in eval mode too: the TorchScript exporter
    fails on it with a dynamic batch (and printed its whole graph to stderr), the dynamo exporter writes it."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


def test_auto_exporter_falls_back_on_any_torchscript_failure_and_names_both_causes(tmp_path, capfd):
    report = cnnexport.export(BatchStatistics().eval(), (1, 3, 8, 8), tmp_path / "auto", photos=False)
    assert report["exporter"] == "dynamo" and report["equivalence"][0]["passed"]
    assert any("TorchScript exporter cannot write this model (batch_size and channel_size" in w
               for w in report["warnings"])
    assert "Torch IR graph" not in capfd.readouterr().err
    with pytest.raises(ExportError, match=r"^the torchscript exporter failed: .*linalg_svdvals.*; then the dynamo "
                                          r"exporter failed: .*_linalg_svd"):
        cnnexport.export(SingularValues().eval(), (1, 3, 4, 4), tmp_path / "both", photos=False)
    assert not (tmp_path / "both").exists() or not any((tmp_path / "both").iterdir())


class SingularValues(nn.Module):
    """An operator neither exporter has a conversion for."""

    def forward(self, x):
        return torch.linalg.svdvals(x.flatten(2)).flatten(1)


def test_photo_check_runs_without_scikit_image(tmp_path):
    """The quick start's `pip install .` has no scikit-image: the real-photograph check must still run."""
    assert len(sample_image_paths()) == 6
    assert all("cnnexport" in p.parts and p.stat().st_size < 100_000 for p in sample_image_paths())
    proc = run_cli_without("skimage", "lenet5", "--weights", "digits", "-o", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (eq,) = report["equivalence"]
    photos = [p for p in eq["per_input"] if p["input"] == "photos"]
    assert photos and photos[0]["samples"] == 6 and eq["samples"] == 1 + 3 + 6
    assert report["warnings"] == []


def test_an_input_photographs_cannot_fill_is_a_warning_not_a_silent_skip(tmp_path):
    import torch

    two_channel = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    two_channel(torch.zeros(1, 2, 16, 16))
    report = cnnexport.export(two_channel.eval(), (1, 2, 16, 16), tmp_path, name="m")
    assert {p["input"] for p in report["equivalence"][0]["per_input"]} == {"random_b1", "random_b3"}
    assert any("random inputs only" in w for w in report["warnings"])


def _convnext_like():
    """Two ConvNeXt blocks: depthwise conv, permute to NHWC, LayerNorm over the last axis,
    Linear-GELU-Linear, permute back, layer scale, in-place residual add. A batch-1 example made
    torch.export pin the batch here ("Invalid ranges [2:1]")."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c=8):
            super().__init__()
            self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
            self.norm = nn.LayerNorm(c)
            self.fc1, self.act, self.fc2 = nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c)
            self.layer_scale = nn.Parameter(torch.full((c, 1, 1), 0.5))

        def forward(self, x):
            y = self.dw(x).permute(0, 2, 3, 1)
            y = self.fc2(self.act(self.fc1(self.norm(y)))).permute(0, 3, 1, 2)
            y = self.layer_scale * y
            y += x
            return y

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 4, 4), Block(), Block(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 5)).eval()


def test_dynamo_keeps_the_batch_dynamic_through_permute_layernorm_linear(tmp_path):
    from cnnexport.profile.graph import check

    report = cnnexport.export(_convnext_like(), (1, 3, 32, 32), tmp_path, name="cnx", exporter="dynamo")
    assert check(tmp_path / "cnx.onnx").dynamic_batch
    assert report["equivalence"][0]["passed"]
    assert {p["input"] for p in report["equivalence"][0]["per_input"]} >= {"random_b1", "random_b3"}


def test_dynamo_failure_names_its_cause_without_the_banner(tmp_path):
    import pytest
    from torch import nn

    from cnnexport.errors import ExportError

    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = self.conv(x)
            return (y * 2 if y.sum() > 0 else y).mean((2, 3))

    class BranchesOnBatch(DataDependent):
        def forward(self, x):
            y = self.conv(x)
            return (y * 2 if x.shape[0] == 2 else y).mean((2, 3))

    with pytest.raises(ExportError) as info:
        cnnexport.export(DataDependent().eval(), (1, 3, 16, 16), tmp_path / "a", exporter="dynamo")
    message = str(info.value)
    assert "data-dependent" in message and "\x1b" not in message and "step 1/3" not in message
    assert "--exporter torchscript" in message and "--batch" not in message
    with pytest.raises(ExportError) as info:
        cnnexport.export(BranchesOnBatch().eval(), (1, 3, 16, 16), tmp_path / "b", exporter="dynamo")
    assert "batch" in str(info.value) and "--batch N" in str(info.value)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    static = cnnexport.export(BranchesOnBatch().eval(), (2, 3, 16, 16), tmp_path / "c", exporter="dynamo",
                              dynamic_batch=False)
    assert static["equivalence"][0]["passed"]


def test_the_api_names_files_after_the_registry_name(tmp_path):
    from cnnexport.models import create_model

    report = cnnexport.export(create_model("resnet18"), (1, 3, 32, 32), tmp_path, photos=False)
    assert report["model"] == "resnet18" and (tmp_path / "resnet18.onnx").is_file()


def test_tiny_outputs_get_a_relative_tolerance_and_a_warning(tmp_path):
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e-5)
    report = cnnexport.export(model, (1, 3, 8, 8), tmp_path / "o", name="tiny", photos=False)
    (eq,) = report["equivalence"]
    assert eq["output_scale"] < 1e-6 and eq["tolerance"] == eq["output_scale"] * 1e-4
    assert eq["tolerance_rule"] == "1e-04 x max |output|"
    assert any("near zero" in w for w in report["warnings"])
    big = cnnexport.export(nn.Sequential(nn.Conv2d(3, 4, 3)).eval(), (1, 3, 8, 8), tmp_path / "b", photos=False)
    assert not any("near zero" in w for w in big["warnings"])


def _with_file_size_limit(limit_bytes: int):
    """preexec_fn: the kernel refuses writes past ``limit_bytes`` (EFBIG), like a full small disk."""
    import resource
    import signal

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


@pytest.mark.parametrize("limit", [200_000, 3_000_000])
def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, limit):
    """A write that the file system refuses (kernel file-size limit: the ONNX file at 200 kB, the
    OpenVINO weights at 3 MB) ends with exit 4, one line, and no file, staged or final."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    exe = shutil.which("cnnexport", path=str(Path(sys.executable).parent)) or "cnnexport"
    out = tmp_path / "out"
    proc = subprocess.run([exe, "resnet18", "--input-size", "64", "--openvino", "-o", str(out)],
                          capture_output=True, text=True, timeout=600, preexec_fn=_with_file_size_limit(limit))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 4, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: no room to write") and "File too large" in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_model_over_the_protobuf_limit_is_refused_before_writing(tmp_path):
    """A 2.5 GiB model (meta tensors: no memory used) gets a clear error and no output folder."""
    import torch

    import cnnexport
    from cnnexport.errors import UsageError

    with torch.device("meta"):
        big = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 224 * 224, 4400))
    with pytest.raises(UsageError, match="2 GiB single-file limit"):
        cnnexport.export(big, (1, 3, 224, 224), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_reflect_padding_exports_without_the_exporters_folding_note(tmp_path):
    """Reflect padding's reversed slice makes the TorchScript exporter note that it folds only step-1
    slices; onnxsim folds it, so the note says nothing to the user and is not passed on."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
    report = cnnexport.export(model, (1, 3, 8, 8), tmp_path)
    assert report["equivalence"][0]["passed"]
    assert not any("constant folded" in w or "Constant folding" in w for w in report["warnings"]), report["warnings"]


def test_keep_going_leaves_out_a_format_that_cannot_be_made_and_writes_the_rest(tmp_path, monkeypatch):
    """AOTInductor without a C++ compiler: by default the export stops and writes nothing; with keep_going the
    ONNX and OpenVINO files are written and verified, and the package is named in ``failed`` with why."""
    from cnnexport.errors import MissingDependencyError
    from cnnexport.exporter.verify import load_reference

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-compiler"))
    model, shape = create_model("lenet5", weights="digits"), (1, 1, 32, 32)
    with pytest.raises(MissingDependencyError, match="no C\\+\\+ compiler"):
        cnnexport.export(model, shape, tmp_path / "strict", formats=("openvino", "aoti"), photos=False)
    assert not (tmp_path / "strict").exists()
    report = cnnexport.export(model, shape, tmp_path / "out", formats=("openvino", "aoti"), photos=False,
                              keep_going=True)
    [failed] = report["failed"]
    assert failed["file"] == "lenet5.pt2" and failed["stage"] == "convert" and failed["runtime"] == "aoti"
    assert failed["error_type"] == "MissingDependencyError" and "no C++ compiler" in failed["error"]
    assert [a["format"] for a in report["artifacts"]] == ["onnx", "openvino"]
    assert all(e["passed"] for e in report["equivalence"]) and len(report["equivalence"]) == 2
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert "lenet5.pt2" not in written and {"lenet5.onnx", "lenet5.xml", "report.json"} <= written
    assert "lenet5.pt2" not in load_reference(tmp_path / "out" / "reference.npz")[2]["files"]


def test_keep_going_leaves_out_a_file_that_fails_its_check(tmp_path):
    """int8 files held to a mean cosine of 1.0 all fail it: with keep_going they are left out with their check,
    the fp32 files are written; the ONNX fp32 file failing would still stop the export (every file starts
    from it)."""
    model, shape = create_model("lenet5", weights="digits"), (1, 1, 32, 32)
    report = cnnexport.export(model, shape, tmp_path / "out", formats=("openvino",), int8=True, calib="digits",
                              calib_count=50, eval_count=50, int8_min_cosine=1.0, photos=False, keep_going=True)
    assert sorted(f["file"] for f in report["failed"]) == ["lenet5.int8.onnx", "lenet5.int8.xml"]
    assert all(f["stage"] == "verify" and f["error_type"] == "VerificationError" and not f["check"]["passed"]
               and "mean cosine" in f["error"] for f in report["failed"])
    assert [(a["format"], a["precision"]) for a in report["artifacts"]] == [("onnx", "fp32"), ("openvino", "fp32")]
    assert not list((tmp_path / "out").glob("*.int8.*"))
    with pytest.raises(VerificationError, match="nothing was written"):
        cnnexport.export(model, shape, tmp_path / "tight", formats=("openvino",), atol=0.0, rtol=0.0, photos=False,
                         keep_going=True)
    assert not (tmp_path / "tight").exists()


def test_a_torch_fx_graph_module_exports_with_its_batchnorm_folded(tmp_path):
    """A model traced by torch.fx (feature extractors, FX pruning and quantization tools hand one over) was an
    internal error: its generated forward has no __module__."""
    model = torch.fx.symbolic_trace(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                                                  nn.Linear(8 * 14 * 14, 3)).eval())
    report = cnnexport.export(randomize_bn_stats(model), (1, 3, 16, 16), tmp_path / "out", photos=False)
    assert report["equivalence"][0]["passed"] and report["graph"]["batchnorm_nodes"] == 0
    assert len(report["prepare"]["folded"]) == 1


def test_a_torch_export_programs_module_is_refused_in_one_line(tmp_path):
    """ExportedProgram.module() (and PT2E quantization's results, made the same way): torch disables its eval(),
    and the export was an internal error (NotImplementedError) at the first call of it."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 3)).eval()
    exported = torch.export.export(model, (torch.randn(1, 3, 16, 16),)).module()
    with pytest.raises(UsageError, match="torch.export program's module .*give cnnexport the nn.Module it was "
                                         "captured from"):
        cnnexport.export(exported, (1, 3, 16, 16), tmp_path / "out")
    assert not (tmp_path / "out").exists()

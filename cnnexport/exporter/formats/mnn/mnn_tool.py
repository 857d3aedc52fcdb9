"""MNN's converter and quantizer, run in a child process by ``formats.mnn``:

    python -m cnnexport.exporter.formats.mnn.mnn_tool convert SRC.onnx DST.mnn N,C,H,W [--fp16]
    python -m cnnexport.exporter.formats.mnn.mnn_tool quantize SRC.mnn DST.mnn CALIBRATION.npy SCALE_UPDATE

A child process because MNN's converter reports an unsupported operator only on stdout (and still
returns success), crashes outright on some graphs, its runtime crashes on some converted files (LRN),
and its quantizer aborts the process on bad input: the parent reads what it printed and its exit
status. A converted file is run here first, at the export's shape and at batches 2 and 3, before the
parent loads it. MNN's ``MNN.tools`` wrappers are never
imported (their logger pip-installs a cloud logging SDK and sends usage logs)."""

from __future__ import annotations

import sys

import numpy as np

RUN_CHECK = "cnnexport: running the converted file once"


def convert(src: str, dst: str, shape: list[int], fp16: bool) -> int:
    import _tools

    args = ["mnnconvert", "-f", "ONNX", "--modelFile", src, "--MNNModel", dst, "--bizCode", "cnnexport"]
    if not _tools.mnnconvert(args + (["--fp16"] if fp16 else [])):
        return 1
    print(RUN_CHECK, flush=True)
    for batch in sorted({shape[0], 2, 3}):  # a crash here kills this process, not the parent; LRN's kernel
        smoke_test(dst, [batch, *shape[1:]])  # ran at batch 1 and crashed at 2
    return 0


def smoke_test(path: str, shape: list[int]) -> None:
    """Load ``path`` with MNN's runtime and run it once on zeros of ``shape``."""
    import MNN

    interpreter = MNN.Interpreter(path)
    session = interpreter.createSession({"numThread": 1})
    tensor = interpreter.getSessionInput(session)
    interpreter.resizeTensor(tensor, tuple(shape))
    interpreter.resizeSession(session)
    zeros = np.zeros(shape, np.float32)
    tensor.copyFrom(MNN.Tensor(tuple(shape), MNN.Halide_Type_Float, zeros, MNN.Tensor_DimensionType_Caffe))
    interpreter.runSession(session)


def quantize(src: str, dst: str, calibration: str, scale_update: str) -> int:
    """Post-training int8 with MNN's own quantization module (``nn.compress.train_quant``): the model is
    loaded for training, its fake-quant observers see every calibration sample in training mode (no
    gradient step), then it is saved in inference mode with int8 weights and activation scales. The
    saved graph takes any batch."""
    import MNN
    import MNN.expr as F
    import MNN.nn as nn

    samples = np.load(calibration)
    interpreter = MNN.Interpreter(src)  # the model's own input and output, not every dangling tensor
    session = interpreter.createSession({"numThread": 1})
    in_name = next(iter(interpreter.getSessionInputAll(session)))
    out_name = next(iter(interpreter.getSessionOutputAll(session)))
    variables = F.load_as_dict(src)
    net = nn.load_module([variables[in_name]], [variables[out_name]], True)
    method = nn.compress.MAXIMUM if scale_update == "maximum" else nn.compress.MOVING_AVERAGE
    nn.compress.train_quant(net, quant_bits=8, scale_update_method=method)
    net.train(True)
    for i in range(0, len(samples), 8):
        batch = np.ascontiguousarray(samples[i:i + 8], np.float32)
        net(F.convert(F.const(batch.ravel().tolist(), list(batch.shape), F.NCHW), F.NC4HW4))
    net.train(False)
    placeholder = F.placeholder([-1, *samples.shape[1:]], F.NC4HW4)
    placeholder.name = in_name
    out = net(placeholder)
    out.name = out_name
    F.save([out], dst)
    return 0


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "convert":
        sys.exit(convert(rest[0], rest[1], [int(d) for d in rest[2].split(",")], "--fp16" in rest[3:]))
    sys.exit(quantize(*rest))

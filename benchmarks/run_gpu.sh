#!/usr/bin/env bash
# Every GPU check and benchmark, as one script for a lent CUDA machine: the GPU tests (marker `gpu`),
# the device's limits and the studies with PyTorch (the roofline/cross-machine issue), and, where
# TensorRT is importable, the TensorRT and ONNX Runtime GPU rows (the fp16/TensorRT issue).
#
#   bash benchmarks/run_gpu.sh [OUT_DIR]      (default: $OUT when set, else benchmarks/results)
#
# Installs: the wheels in .whl/ (carried beside the working tree) go to /tmp/site, ahead of the machine's
# own packages. For the lent H200 (Python 3.12, torch and onnx already there), from a machine with pip:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#     onnxsim==0.8.1 onnxconverter-common==1.16.0 ml_dtypes==0.6.0          (10 MB; .whl/ is git-ignored)
# and run it with carry [".whl"]. cnnexport needs onnxsim there;
# the TensorRT half needs the `gpu` extra's wheels (tensorrt, onnxruntime-gpu, cuda-python): where they
# are missing, that half is skipped and says so. JSON rows, the plot and the test log (8 files at most, what
# the device tool brings back) land in OUT_DIR; afterwards,
# here: python benchmarks/run_all.py --only cross_machine,report
set -uo pipefail
out=${1:-${OUT:-benchmarks/results}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 CNNEXPORT_CACHE=/tmp/cnnexport-cache
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
python3 - <<'EOF' | tee "$out/gpu_tests.log"
import importlib, torch
print("gpu:", torch.cuda.get_device_name() if torch.cuda.is_available() else None, "| torch", torch.__version__)
for name in ("onnxruntime", "tensorrt", "cuda.bindings", "onnxsim"):
    try:
        m = importlib.import_module(name)
        extra = m.get_available_providers() if name == "onnxruntime" else ""
        print(name, getattr(m, "__version__", "?"), extra)
    except Exception as exc:
        print(name, "missing:", type(exc).__name__, exc)
EOF
status=0
python3 -m pytest -q -m gpu -n 0 -p no:cacheprovider tests/test_runtimes.py tests/test_tensorrt.py \
    2>&1 | tee -a "$out/gpu_tests.log" || status=1

# The roofline and cross-machine issue: the device's limits in every row, PyTorch eager and CUDA graphs.
python3 -m cnnexport study guidelines --device cuda --runtime torch --batch 8 --rounds 2 --runs 20 --min-time 0.3 \
    --max-time 2 --save "$out/guidelines_cuda.json" || status=1
python3 -m cnnexport study zoo --device cuda --runtime torch --batch 1,8 --rounds 2 --runs 20 --min-time 0.3 --max-time 2 \
    --models 'shufflenet_v2*,mobilenet*,shufflenet_v1_g3*,resnet18,resnet50,resnet101,vgg16,squeezenet1_1,densenet121,googlenet,alexnet,resnext50_32x4d,inception_v3' \
    --plot "$out/latency_vs_macs_cuda.png" --save "$out/zoo_cuda.json" || status=1

if python3 -c "import tensorrt" 2>/dev/null; then
    # fp16 / TensorRT targets: resnet50 b1 (TensorRT fp16 vs CUDA-graph fp32), b64 (share of the tensor-core
    # peak), shufflenet_v2_x1_0 b1 (TensorRT fp16 vs eager); every GPU runtime, fp32 / fp16 / int8.
    python3 -m cnnexport bench resnet50 --device cuda --runtime torch,onnxruntime,tensorrt --precision fp32,fp16,int8 \
        --batch 1,8,64 --rounds 3 --runs 30 --min-time 0.3 --pick --json > "$out/bench_resnet50_cuda.json" || status=1
    python3 -m cnnexport bench shufflenet_v2_x1_0 --device cuda --runtime torch,onnxruntime,tensorrt \
        --precision fp32,fp16 --batch 1,8,64 --rounds 3 --runs 30 --min-time 0.3 --pick --json \
        > "$out/bench_shufflenet_v2_x1_0_cuda.json" || status=1
    python3 -m cnnexport study guidelines --device cuda --runtime torch,tensorrt --batch 8 --rounds 2 --runs 20 \
        --min-time 0.3 --max-time 2 --save "$out/guidelines_cuda_tensorrt.json" || status=1
    python3 -m cnnexport study zoo --device cuda --runtime torch,tensorrt --batch 1,8,64 --rounds 2 --runs 20 \
        --min-time 0.3 --max-time 2 --no-plain \
        --models 'shufflenet_v2*,mobilenet*,resnet18,resnet50,vgg16,squeezenet1_1,densenet121,googlenet' \
        --save "$out/zoo_cuda_tensorrt.json" || status=1
else
    echo "TensorRT is not importable here: the TensorRT half (bench and study rows) was skipped" | tee -a "$out/gpu_tests.log"
fi
exit $status

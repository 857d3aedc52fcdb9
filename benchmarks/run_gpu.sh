#!/usr/bin/env bash
# The GPU half of the study, as it was run once on a lent CUDA machine (results in benchmarks/results/*_cuda.json).
#   bash benchmarks/run_gpu.sh [OUT_DIR]
set -euo pipefail
out=${1:-benchmarks/results}
python3 -m cnnexport study guidelines --device cuda --runtime torch --batch 8 --rounds 2 --runs 20 --min-time 0.3 \
    --max-time 2 --save "$out/guidelines_cuda.json"
python3 -m cnnexport study zoo --device cuda --runtime torch --batch 1,8 --rounds 2 --runs 20 --min-time 0.3 --max-time 2 \
    --models 'shufflenet_v2*,mobilenet*,shufflenet_v1_g3*,resnet18,resnet50,resnet101,vgg16,squeezenet1_1,densenet121,googlenet,alexnet,resnext50_32x4d,inception_v3' \
    --plot benchmarks/latency_vs_macs_cuda.png --save "$out/zoo_cuda.json"
python3 -m cnnexport bench resnet50 --device cuda --runtime torch --batch 1,8 --rounds 2 --runs 30 --pick

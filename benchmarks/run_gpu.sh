#!/usr/bin/env bash
# Every GPU check and benchmark, as one script for the lent CUDA machine (an H100 or H200 with PyTorch 2.11+CUDA,
# onnx and the CPU onnxruntime; no network, 64 MiB carried with the tree; 15 minutes of device time in all):
#
#   bash benchmarks/run_gpu.sh [OUT_DIR]      (default: $OUT when set, else benchmarks/results)
#
# In priority order, each step only while the time budget lasts (GPU_BUDGET_S, default 450 s: under 8 minutes
# with the install), what was skipped for time said in run_gpu.log:
#   1. the device's limits: fp32 / TF32 / fp16 / bf16 matmul peaks and memory bandwidth (gpu_limits.json), measured
#      until stable once, and read by every later command (CNNEXPORT_GPU_LIMITS) rather than measured again;
#   2. the GPU tests (pytest -m gpu: AOTInductor CUDA packages, torch.compile with CUDA graphs, eager, TensorRT
#      where importable), their output in run_gpu.log;
#   3. resnet50, mobilenet_v2 and shufflenet_v2_x1_0: .pt2 packages fp32 / fp16 / bf16 (one dynamic batch 1..64
#      each), PyTorch eager, CUDA graphs and torch.compile at batch 1, 8 and 64, paired by round
#      (bench_cuda_<model>.json). The nine packages are exported in the background from the start, three
#      models side by side, while steps 1-2 run; with random weights a precision can fail its rule (mobilenet_v2's
#      default init has outputs near 2e-9, below fp16's range): its verdict is logged, the model exported again
#      without it, and benched at the precisions that verified; then resnet50 at batch 1 again with static batch-1
#      packages (fp32, fp16), beside eager and CUDA graphs: the headline pair as a batch-1 deployment compiles it
#      (bench_cuda_resnet50_b1.json), in 3 rounds: the paired test calls nothing from 2 (its best split, 2 to 0,
#      happens by chance one time in two), which steps 3 and 4 keep to fit the budget;
#   4. the Table-8 study (its 14 models) and 5. the guidelines study (G1-G4 on the paper's x1 micro-networks, in 3
#      rounds: each verdict is a paired call), eager, CUDA graphs and compiled, batch 8 as the paper's GPU figures
#      (zoo_cuda_compiled.json, guidelines_cuda_compiled.json; zoo_cuda.json and guidelines_cuda.json hold the
#      earlier eager-only runs, in 2 rounds: their guideline verdicts are inconclusive by today's rule).
# torch.compile runs in mode reduce-overhead here (CUDA graphs without max-autotune's search over kernels, so that
# compiling each model in each round's fresh worker fits the budget; CNNEXPORT_COMPILE_MODE=max-autotune for the
# full search); every row records its mode.
#
# Wheels: what the machine lacks travels in .whl/ (git-ignored; carry [".whl"]); from a machine with pip:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     onnxsim==0.8.1 onnxconverter-common==1.16.0                    (about 10 MB)
# With no CUDA device the script says so and exits 3; CNNEXPORT_GPU_SMOKE=1 then runs each step on the CPU at toy
# size (lenet5, batch 1-2) to check the script itself. Afterwards, here:
#   python benchmarks/run_all.py --only cross_machine,report
# At most 8 files land in OUT_DIR (what the device tool brings back).
set -uo pipefail
out=${1:-${OUT:-benchmarks/results}}
mkdir -p "$out"
start=$SECONDS
budget=${GPU_BUDGET_S:-450}
log="$out/run_gpu.log"
: > "$log"
say() { echo "[$((SECONDS - start))s] $*" | tee -a "$log" >&2; }
left() { echo $((budget - (SECONDS - start))); }
export PYTHONUNBUFFERED=1 CNNEXPORT_CACHE=/tmp/cnnexport-cache CNNEXPORT_COMPILE_MODE=${CNNEXPORT_COMPILE_MODE:-reduce-overhead}
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { say "the carried wheels did not install"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
python3 - <<'EOF' 2>&1 | tee -a "$log"
import importlib, shutil, torch
print("gpu:", torch.cuda.get_device_name() if torch.cuda.is_available() else None, "| torch", torch.__version__,
      "| cuda", torch.version.cuda, "| c++:", shutil.which("g++") or shutil.which("c++"))
for name in ("onnx", "onnxruntime", "onnxsim", "onnxconverter_common", "triton", "tensorrt", "cnnexport"):
    try:
        m = importlib.import_module(name)
        print(" ", name, getattr(m, "__version__", "?"))
    except Exception as exc:
        print(" ", name, "missing:", type(exc).__name__, exc)
EOF
device=cuda
read -r -a models <<< "${GPU_MODELS:-resnet50 mobilenet_v2 shufflenet_v2_x1_0}"  # GPU_MODELS: others
batches=1,8,64
study_models='shufflenet_v2_x0_5,mobilenet_v1_0_25,shufflenet_v1_g3_0_5,shufflenet_v2_x1_0,mobilenet_v1_0_5,shufflenet_v1_g3,shufflenet_v2_x1_5,mobilenet_v2,shufflenet_v1_g3_1_5,mobilenet_v1_0_75,shufflenet_v2_x2_0,mobilenet_v1,shufflenet_v1_g3_2_0,mobilenet_v2_1_4'
study_batch=8
guide_args=(--widths 1 --align none)  # the paper's x1 networks: each is compiled anew per round
timing=(--rounds 2 --runs 20 --min-time 0.2 --max-time 1)
headline_rounds=(--rounds 3)  # after timing's: the comparisons whose ranking the paired test confirms
if ! python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    if [ "${CNNEXPORT_GPU_SMOKE:-}" != 1 ]; then
        say "no CUDA device: nothing measured (CNNEXPORT_GPU_SMOKE=1 checks the script on the CPU)"
        exit 3
    fi
    say "smoke run on the CPU: every step at toy size, no GPU figures"
    read -r -a models <<< "${GPU_MODELS:-lenet5}"
    device=cpu batches=1,2 study_models=lenet5 study_batch=1 timing=(--rounds 1 --runs 3 --min-time 0)
    headline_rounds=()
    guide_args=(--guidelines G1 --widths 1 --align none)
fi
status=0
step() {  # step NAME SECONDS_NEEDED STDOUT_FILE|+FILE (appended, stderr too)|- command...: runs it if the budget
          # allows, logs how it went
    local name=$1 need=$2 to=$3 rc
    shift 3
    if [ "$(left)" -lt "$need" ]; then
        say "SKIPPED for time: $name (needs about ${need}s, $(left)s left)"
        status=1
        return
    fi
    say "start: $name"
    if [ "$to" = - ]; then
        timeout "$(left)" "$@"
    elif [ "${to:0:1}" = + ]; then
        timeout "$(left)" "$@" >> "${to:1}" 2>&1
    else
        timeout "$(left)" "$@" > "$to" 2>> "$log"
    fi
    rc=$?
    [ $rc -eq 0 ] || status=1
    say "done: $name (exit $rc$([ $rc -eq 124 ] && echo ': out of time'))"
}

# 1. the device's limits, first, on a quiet GPU
if [ "$device" = cuda ]; then
    # measured until stable (fresh workers), once: every later command reads them (CNNEXPORT_GPU_LIMITS)
    step "limits" 60 "$out/gpu_limits.json" python3 -c 'import json; from cnnexport.bench.schedule import cuda_limits, \
stable_limit; print(json.dumps(stable_limit(cuda_limits, "gflops"), indent=1))'
    [ -s "$out/gpu_limits.json" ] && export CNNEXPORT_GPU_LIMITS="$out/gpu_limits.json"
fi

# In the background while the tests run: each model's packages, and torch.compile's kernels compiled once so that
# the timed runs' fresh workers find them in Inductor's caches (compiling is mostly CPU work). Nothing is timed
# until all of it has finished.
export_model() {  # MODEL DIR PRECISION_FLAGS... [-- EXPORT_FLAGS...]: the model's packages with the reduced
                  # precisions given, or with those of them that verify
    local m=$1 dir=$2 flags f precisions
    shift 2
    local tries=() extra=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do tries+=("$1"); shift; done
    [ $# -gt 0 ] && shift && extra=("$@")
    tries+=("")
    for flags in "${tries[@]}"; do
        rm -rf "$dir"
        # shellcheck disable=SC2086
        if timeout "$budget" python3 -m cnnexport "$m" --aoti --device "$device" $flags "${extra[@]}" \
            -o "$dir" --json > "$dir.json" 2> "$dir.err"; then
            precisions=fp32
            for f in $flags; do precisions="$precisions,${f#--}"; done
            echo "$precisions" > "$dir.precisions"
            return 0
        fi
        # a file that does not verify makes the export write nothing: its verdict is kept, the rest tried again
        echo "with '${flags:-fp32 only}': $(tail -n 1 "$dir.err")" >> "$dir.failed"
    done
    return 1
}
warm=(--rounds 1 --runs 1 --min-time 0 --max-time 0.1)
warm_compiled() {  # one untimed pass of every torch.compile configuration the benches and studies time
    local m
    for m in "${models[@]}"; do
        timeout "$budget" python3 -m cnnexport bench "$m" --device "$device" --runtime torch-compile --batch "$batches" \
            "${warm[@]}" --warmup 1 --no-ceiling --json > /dev/null 2>> /tmp/gpu-export/warm.err
    done
    timeout "$budget" python3 -m cnnexport study zoo --device "$device" --runtime torch-compile --batch "$study_batch" \
        "${warm[@]}" --models "$study_models" --no-plain --plot /tmp/gpu-export/warm.png \
        --save /tmp/gpu-export/warm_zoo.json > /dev/null 2>> /tmp/gpu-export/warm.err
    timeout "$budget" python3 -m cnnexport study guidelines --device "$device" --runtime torch-compile \
        --batch "$study_batch" "${guide_args[@]}" "${warm[@]}" --save /tmp/gpu-export/warm_guidelines.json \
        > /dev/null 2>> /tmp/gpu-export/warm.err
}
mkdir -p /tmp/gpu-export
exports=()
for m in "${models[@]}"; do
    rm -f "/tmp/gpu-export/$m.failed"
    export_model "$m" "/tmp/gpu-export/$m" "--fp16 --bf16" "--bf16" "--fp16" -- --aoti-max-batch "${batches##*,}" &
    exports+=($!)
done
# the first model's headline pair at batch 1, as a batch-1 deployment compiles it: static packages, fp32 and fp16
b1=${models[0]}
rm -f "/tmp/gpu-export/b1.failed"
export_model "$b1" /tmp/gpu-export/b1 "--fp16" &
export_b1=$!
warm_compiled &
warming=$!
say "exporting ${models[*]} and compiling torch.compile's kernels in the background"

# 2. the GPU tests (their timings are not results: they run beside the background work)
step "GPU tests" 60 "+$log" python3 -m pytest -q -rs -m gpu -n 0 -p no:cacheprovider tests/test_aoti.py \
    tests/test_runtimes.py tests/test_roofline.py tests/test_tensorrt.py

# 3. the three models: their packages beside eager, CUDA graphs and torch.compile, paired by round
failed_exports=()
for i in "${!models[@]}"; do
    m=${models[$i]}
    wait "${exports[$i]}" || failed_exports+=("$m")
    if [ -s "/tmp/gpu-export/$m.failed" ]; then
        while read -r line; do say "export of $m $line"; done < "/tmp/gpu-export/$m.failed"
        status=1
    fi
done
wait "$export_b1" || failed_exports+=(b1)
[ -s /tmp/gpu-export/b1.failed ] && while read -r line; do say "export of $b1 at batch 1 $line"; done < /tmp/gpu-export/b1.failed
wait "$warming" || say "the torch.compile warm-up did not finish cleanly: $(tail -n 1 /tmp/gpu-export/warm.err 2>/dev/null)"
say "background work done"
for m in "${models[@]}"; do
    if [[ " ${failed_exports[*]} " == *" $m "* ]]; then
        say "no package of $m verified: nothing to bench"
        continue
    fi
    say "exported $m: $(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(', '.join(f\"{e['artifact']} {'passed' if e['passed'] else 'FAILED'} (max rel {e['max_rel']:.2g})\" for e in r['equivalence'] if e['artifact'].endswith('.pt2')))" "/tmp/gpu-export/$m/report.json")"
    step "bench $m" 45 - python3 -m cnnexport bench "$m" --reuse -o "/tmp/gpu-export/$m" --device "$device" \
        --runtime torch,torch-compile,aoti --precision "$(cat "/tmp/gpu-export/$m.precisions")" --batch "$batches" \
        "${timing[@]}" --pick --save "$out/bench_cuda_$m.json"
done

if [[ " ${failed_exports[*]} " != *" b1 "* ]]; then
    step "bench $b1 at batch 1, static packages" 40 - python3 -m cnnexport bench "$b1" --reuse -o /tmp/gpu-export/b1 \
        --device "$device" --runtime torch,aoti --precision "$(cat /tmp/gpu-export/b1.precisions)" --batch 1 \
        "${timing[@]}" "${headline_rounds[@]}" --pick --save "$out/bench_cuda_${b1}_b1.json"
fi

# 4-5. the studies with the compiled runtime beside eager
step "Table-8 study" 90 - python3 -m cnnexport study zoo --device "$device" --runtime torch,torch-compile \
    --batch "$study_batch" "${timing[@]}" --models "$study_models" --no-plain \
    --plot /tmp/gpu-export/latency_vs_macs_cuda.png --save "$out/zoo_cuda_compiled.json"
step "guidelines study" 120 - python3 -m cnnexport study guidelines --device "$device" --runtime torch,torch-compile \
    --batch "$study_batch" "${guide_args[@]}" "${timing[@]}" "${headline_rounds[@]}" \
    --save "$out/guidelines_cuda_compiled.json"
say "finished (exit $status); files: $(ls "$out" | tr '\n' ' ')"
exit $status

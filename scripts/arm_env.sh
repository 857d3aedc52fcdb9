#!/usr/bin/env bash
# The deploy side on 64-bit ARM kernels, emulated: an arm64 Debian root file system (debootstrap) with
# Debian's aarch64 Python, the aarch64 wheels of the deploy side and the runtimes, run under
# qemu-aarch64-static through binfmt_misc. Needs root (debootstrap, chroot, binfmt_misc) and apt.
#
#   scripts/arm_env.sh build                       # or rebuild, when its inputs changed
#   scripts/arm_env.sh run [--cpu max|cortex-a53] -- cnnexport verify FILE --reference reference.npz
#   scripts/arm_env.sh check DIR      # CI: the digits LeNet-5 files in DIR (and DIR/digits) on both CPUs
#   scripts/arm_env.sh ready          # exit 0 when a built, up-to-date environment can run here; else why not
#
# --cpu max emulates a current phone core (fp16 arithmetic, int8 dot product, i8mm, bf16); cortex-a53 a
# plain ARMv8.0 one (NEON only), so both kernel families run. The current folder is visible as /work.
# Processes run with CNNEXPORT_EMULATED set: cnnexport records it in every row and refuses to time an
# emulator (bench, study). The root is cached in $CNNEXPORT_ARM_ROOT (default ~/.cache/cnnexport/arm64)
# and rebuilt when this script, requirements-deploy.txt or the checkout's package change.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
root=${CNNEXPORT_ARM_ROOT:-$HOME/.cache/cnnexport/arm64}
suite=bookworm
# the runtimes with aarch64 wheels that the deploy side loads (the same list as .ci/run's deploy venv)
runtimes=(openvino "ai-edge-litert>=2.3,<2.4" ncnn "mnn==3.6.1")
platforms=(manylinux2014_aarch64 manylinux_2_17_aarch64 manylinux_2_24_aarch64 manylinux_2_27_aarch64
           manylinux_2_28_aarch64 manylinux_2_31_aarch64 manylinux_2_34_aarch64 manylinux_2_35_aarch64
           manylinux_2_36_aarch64)  # Debian bookworm's glibc is 2.36

need_root() { [ "$(id -u)" = 0 ] || { echo "arm_env.sh needs root (debootstrap, chroot, binfmt_misc)" >&2; exit 1; }; }

host_tools() {
    command -v qemu-aarch64-static >/dev/null && command -v debootstrap >/dev/null && return
    (apt-get update -q && apt-get install -y -q qemu-user-static debootstrap) >/dev/null \
        || { echo "could not install qemu-user-static and debootstrap with apt" >&2; exit 1; }
}

binfmt() {  # aarch64 ELF files run through qemu, also inside the chroot (flag F: the interpreter is held open)
    [ -f /proc/sys/fs/binfmt_misc/register ] || mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
}

stamp() {  # what the environment is made of
    # the files' contents as they are now (an index hash would miss an uncommitted edit)
    { cat "$0" "$here/requirements-deploy.txt"; (cd "$here" && git ls-files -z -co --exclude-standard cnnexport pyproject.toml 2>/dev/null \
        | xargs -0 cat) || find "$here/cnnexport" -name '*.py' -exec cat {} +; } | sha256sum | cut -c1-16
}

build() {
    need_root; host_tools; binfmt
    local want; want=$(stamp)
    if [ -f "$root/.cnnexport-stamp" ] && [ "$(cat "$root/.cnnexport-stamp")" = "$want" ]; then
        echo "arm64 environment up to date: $root"; return
    fi
    if [ ! -x "$root/usr/bin/python3" ]; then
        rm -rf "$root"; mkdir -p "$root"
        debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,libgomp1 "$suite" "$root" \
            http://deb.debian.org/debian >/dev/null
    fi
    rm -rf "$root/wheels" "$root/opt/venv"; mkdir -p "$root/wheels"
    local plat=(); for p in "${platforms[@]}"; do plat+=(--platform "$p"); done
    python3 -m pip download -q --only-binary=:all: "${plat[@]}" --python-version 3.11 --implementation cp \
        -c "$here/constraints.txt" -d "$root/wheels" -r "$here/requirements-deploy.txt" "${runtimes[@]}"
    python3 -m pip wheel -q --no-deps -w "$root/wheels" "$here"
    # the host's pip settings (PIP_FIND_LINKS and the like name host folders) stay outside the chroot
    local clean=(env -i PATH=/usr/bin:/bin HOME=/root)
    chroot "$root" "${clean[@]}" python3 -m venv /opt/venv
    local whl; whl=$(cd "$root/wheels" && ls cnnexport-*.whl)
    chroot "$root" "${clean[@]}" /opt/venv/bin/pip install -q --no-index --no-deps "/wheels/$whl"
    { grep -v '^#' "$here/requirements-deploy.txt"; printf '%s\n' "${runtimes[@]}"; } > "$root/wheels/requirements.txt"
    chroot "$root" "${clean[@]}" /opt/venv/bin/pip install -q --no-index --find-links /wheels -r /wheels/requirements.txt
    echo "$want" > "$root/.cnnexport-stamp"
    echo "arm64 environment built: $root"
}

run() {  # run [--cpu CPU] -- COMMAND...: COMMAND from /opt/venv/bin, in /work (the current folder)
    need_root; binfmt
    local cpu=max
    [ "${1:-}" = "--cpu" ] && { cpu=$2; shift 2; }
    [ "${1:-}" = "--" ] && shift
    [ -f "$root/.cnnexport-stamp" ] || { echo "no arm64 environment: run scripts/arm_env.sh build" >&2; exit 1; }
    mkdir -p "$root/work" "$root/proc"
    while mountpoint -q "$root/work"; do umount "$root/work"; done  # one left by a run that was killed
    mount --bind "$PWD" "$root/work"
    # /proc, not /sys: with the host's /sys, cpuinfo (inside ONNX Runtime) reads x86 CPU registers and the
    # aarch64 process crashes on import; without it ONNX Runtime warns and takes the features from the
    # kernel's hwcaps (what MLAS, its kernel library, reads)
    mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
    local status=0
    chroot "$root" /usr/bin/env -i PATH=/opt/venv/bin:/usr/bin:/bin HOME=/root QEMU_CPU="$cpu" \
        CNNEXPORT_EMULATED="qemu-aarch64 -cpu $cpu" /bin/sh -c 'cd /work && exec "$@"' sh "$@" || status=$?
    umount "$root/work"; umount "$root/proc" 2>/dev/null || true
    return $status
}

check() {  # check DIR: the digits LeNet-5 files in DIR verified, and evaluated on DIR/digits, on both CPUs
    local cpu f
    cd "$1"
    # OpenVINO's CPU plugin did not finish loading lenet5.xml in 8 CPU-minutes under qemu-user: left out here
    local files=(lenet5.onnx lenet5.tflite lenet5.ncnn.param lenet5.mnn lenet5.fp16.onnx lenet5.fp16.tflite
                 lenet5.fp16.mnn lenet5.int8.onnx lenet5.int8.tflite lenet5.int8.mnn)
    for cpu in max cortex-a53; do
        for f in "${files[@]}"; do
            run --cpu "$cpu" -- cnnexport verify "$f" --reference reference.npz
        done
        run --cpu "$cpu" -- cnnexport eval lenet5.onnx lenet5.tflite lenet5.ncnn.param lenet5.mnn --data ./digits \
            --save "eval_arm_$cpu.json"
        run --cpu "$cpu" -- python -c "import json, sys; r = json.load(open('eval_arm_$cpu.json')); \
sys.exit(0 if all(m['top1'] > 0.98 and m['images'] == 450 for m in r['models']) else 'eval on ARM: wrong accuracy')"
    done
    echo "arm64 (emulated, -cpu max and cortex-a53): every LeNet-5 file verified and evaluated"
}

ready() {  # whether run can start now, without building anything (the tests ask this before they emulate)
    [ "$(id -u)" = 0 ] || { echo "not root: chroot and binfmt_misc need it"; return 1; }
    command -v qemu-aarch64-static >/dev/null || { echo "no qemu-aarch64-static: apt install qemu-user-static"; return 1; }
    [ -f "$root/.cnnexport-stamp" ] && [ "$(cat "$root/.cnnexport-stamp")" = "$(stamp)" ] \
        || { echo "no up-to-date arm64 environment in $root: run scripts/arm_env.sh build"; return 1; }
    echo "arm64 environment ready: $root"
}

requirements() {  # what a real board (Raspberry Pi, Jetson) installs beside cnnexport's wheel: the same list as here
    grep -v '^#' "$here/requirements-deploy.txt"
    printf '%s\n' "${runtimes[@]}"
}

case "${1:-}" in
    requirements) requirements ;;
    ready) ready ;;
    build) build ;;
    run) shift; run "$@" ;;
    check) shift; build; check "$@" ;;
    *) echo "usage: scripts/arm_env.sh build | run [--cpu max|cortex-a53] -- COMMAND... | check DIR | ready | requirements" >&2
       exit 2 ;;
esac

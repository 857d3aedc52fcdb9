#!/usr/bin/env bash
# The deploy side on 64-bit ARM kernels, emulated: an arm64 Debian root file system (debootstrap) with
# Debian's aarch64 Python, the aarch64 wheels of the deploy side and the runtimes, run under
# qemu-aarch64-static through binfmt_misc. Needs root (debootstrap, chroot, binfmt_misc) and apt.
#
#   scripts/arm_env.sh build                       # or rebuild, when its inputs changed
#   scripts/arm_env.sh run [--cpu cortex-a710|max|cortex-a53] -- cnnexport verify FILE... --reference reference.npz
#   scripts/arm_env.sh check DIR      # CI: the digits LeNet-5 files in DIR (and DIR/digits), cortex-a710 and a53
#   scripts/arm_env.sh ready          # exit 0 when a built, up-to-date environment can run here; else why not
#
# --cpu cortex-a710 emulates a current phone core (ARMv9.0: fp16 arithmetic, int8 dot product, i8mm, bf16, SVE2);
# max everything qemu emulates (SME and SME2 too: what the newest cores add; the runtimes ran 3-17x slower
# there under qemu than on cortex-a710, so CI uses cortex-a710); cortex-a53 a plain ARMv8.0 core (NEON only): the kernel
# families a phone runs. The current folder is visible as /work. Needs qemu 10 or later (build installs it).
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

qemu_major() { qemu-aarch64-static --version 2>/dev/null | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -n1; }

host_tools() {
    command -v debootstrap >/dev/null || (apt-get update -q && apt-get install -y -q debootstrap) >/dev/null \
        || { echo "could not install debootstrap with apt" >&2; exit 1; }
    [ "$(qemu_major)" -ge 10 ] 2>/dev/null && return
    # qemu 10 or later: bookworm's qemu 7.2 emulates an SVE int8 instruction wrongly on -cpu max (OpenVINO's
    # int8 LeNet-5 gave 52% top-1 there, 97.6% under qemu 10 and on every other emulated core); Debian's
    # backports of the host's release carry qemu 10
    local codename; codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    if [ -n "$codename" ] && ! apt-cache policy qemu-user-static 2>/dev/null | grep -q "${codename}-backports"; then
        printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$codename" > /etc/apt/sources.list.d/cnnexport-backports.sources
    fi
    (apt-get update -q && { apt-get install -y -q -t "${codename}-backports" qemu-user-static \
        || apt-get install -y -q qemu-user-static; }) >/dev/null 2>&1
    [ "$(qemu_major)" -ge 10 ] 2>/dev/null \
        || { echo "arm_env.sh needs qemu-user-static 10 or later (found: $(qemu-aarch64-static --version 2>/dev/null | head -n1 || echo none)); apt could not install it from ${codename}-backports" >&2; exit 1; }
    # a registration made with the old emulator holds it open (flag F): register the new one
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && echo -1 > /proc/sys/fs/binfmt_misc/qemu-aarch64
    return 0
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

rootfs() {  # the arm64 Debian root: debootstrap's first stage, then every package extracted natively
    # debootstrap's second stage runs dpkg and the packages' scripts under qemu: the full debootstrap took 327 s of
    # CPU, most of the environment's build from nothing. Python, its venv and the runtimes' wheels need only the
    # packages' files (the libraries lie in the paths ld.so searches without a cache; no service, user or
    # alternative is set up), so the packages the first stage downloaded are extracted here as it extracted its own
    local new="$root.partial" deb
    rm -rf "$root" "$new"; mkdir -p "$new"
    debootstrap --foreign --arch=arm64 --variant=minbase --include=python3,python3-venv,libgomp1 "$suite" "$new" \
        http://deb.debian.org/debian >/dev/null
    for deb in "$new"/var/cache/apt/archives/*.deb; do
        dpkg-deb --fsys-tarfile "$deb" | tar -xf - -C "$new" --keep-directory-symlink
    done
    [ -f "$new/etc/passwd" ] || cp "$new/usr/share/base-passwd/passwd.master" "$new/etc/passwd"  # base-passwd's setup
    [ -f "$new/etc/group" ] || cp "$new/usr/share/base-passwd/group.master" "$new/etc/group"
    rm -rf "$new/debootstrap" "$new"/var/cache/apt/archives/*.deb
    chroot "$new" /usr/bin/env -i PATH=/usr/bin:/bin python3 -c "import ctypes, ssl, venv" \
        || { echo "the arm64 root's Python does not run under qemu" >&2; exit 1; }
    mv -T "$new" "$root"
}

build() {
    need_root; host_tools; binfmt
    local want; want=$(stamp)
    if [ -f "$root/.cnnexport-stamp" ] && [ "$(cat "$root/.cnnexport-stamp")" = "$want" ]; then
        echo "arm64 environment up to date: $root"; return
    fi
    if [ ! -x "$root/usr/bin/python3" ]; then
        rootfs
    fi
    rm -rf "$root/wheels" "$root/opt/venv" "$root/fake-sys"; mkdir -p "$root/wheels"
    local plat=(); for p in "${platforms[@]}"; do plat+=(--platform "$p"); done
    python3 -m pip download -q --only-binary=:all: "${plat[@]}" --python-version 3.11 --implementation cp \
        -c "$here/constraints.txt" -d "$root/wheels" -r "$here/requirements-deploy.txt" "${runtimes[@]}"
    python3 -m pip wheel -q --no-deps -w "$root/wheels" "$here"
    # the host's pip settings (PIP_FIND_LINKS and the like name host folders) stay outside the chroot
    local clean=(env -i PATH=/usr/bin:/bin HOME=/root)
    chroot "$root" "${clean[@]}" python3 -m venv /opt/venv
    local whl; whl=$(cd "$root/wheels" && ls cnnexport-*.whl)
    chroot "$root" "${clean[@]}" /opt/venv/bin/pip install -q --no-compile --no-index --no-deps "/wheels/$whl"
    { grep -v '^#' "$here/requirements-deploy.txt"; printf '%s\n' "${runtimes[@]}"; } > "$root/wheels/requirements.txt"
    chroot "$root" "${clean[@]}" /opt/venv/bin/pip install -q --no-compile --no-index --find-links /wheels -r /wheels/requirements.txt
    echo "$want" > "$root/.cnnexport-stamp"
    echo "arm64 environment built: $root"
}

sysfs() {  # sysfs CPU: the part of /sys the runtimes read to find cores and the CPU's identity, for CPU
    # qemu-user has no /sys of its own, and the host's describes x86 (ONNX Runtime's cpuinfo, reading it,
    # crashed on import). Without one, OpenVINO's CPU plugin (hwloc, oneDNN's xbyak_aarch64) crashed or hung
    # compiling a model. So each emulated CPU gets a small one: n cores in one package, and the core's MIDR_EL1
    # (cortex-a53: the A53's; cortex-a710 and max: the A710's).
    local cpu=$1 n i last d midr tmp
    [ -d "$root/fake-sys/$cpu" ] && return
    case "$cpu" in cortex-a53) midr=0x00000000410fd034 ;; *) midr=0x00000000410fd470 ;; esac
    n=$(nproc); last=$((n - 1))
    mkdir -p "$root/fake-sys"; tmp=$(mktemp -d "$root/fake-sys/.new-XXXXXX")
    d=$tmp/devices/system/cpu; mkdir -p "$d"
    for f in possible present online; do echo "0-$last" > "$d/$f"; done
    for i in $(seq 0 "$last"); do
        mkdir -p "$d/cpu$i/topology" "$d/cpu$i/regs/identification"
        echo "$midr" > "$d/cpu$i/regs/identification/midr_el1"
        echo 0 > "$d/cpu$i/regs/identification/revidr_el1"
        echo 1 > "$d/cpu$i/online"
        echo "$i" > "$d/cpu$i/topology/core_id"; echo 0 > "$d/cpu$i/topology/physical_package_id"
        for f in thread_siblings core_cpus; do printf '%x\n' $((1 << i)) > "$d/cpu$i/topology/$f"; echo "$i" > "$d/cpu$i/topology/${f}_list"; done
        for f in core_siblings package_cpus; do printf '%x\n' $(((1 << n) - 1)) > "$d/cpu$i/topology/$f"; echo "0-$last" > "$d/cpu$i/topology/${f}_list"; done
    done
    chmod 755 "$tmp"; mv -T "$tmp" "$root/fake-sys/$cpu" 2>/dev/null || rm -rf "$tmp"  # another run made it first
}

run() {  # run [--cpu CPU] -- COMMAND...: COMMAND from /opt/venv/bin, in /work (the current folder)
    need_root; binfmt
    local cpu=cortex-a710
    [ "${1:-}" = "--cpu" ] && { cpu=$2; shift 2; }
    [ "${1:-}" = "--" ] && shift
    [ -f "$root/.cnnexport-stamp" ] || { echo "no arm64 environment: run scripts/arm_env.sh build" >&2; exit 1; }
    mkdir -p "$root/work" "$root/proc" "$root/sys"
    sysfs "$cpu"
    # its own mount namespace: the mounts go when COMMAND ends, and runs on both CPUs can go side by side.
    # /proc for the kernel's hwcaps (what ONNX Runtime's MLAS reads), the CPU's small /sys, the current folder.
    # numpy's OpenBLAS runs one thread: its idle workers took a second host core under qemu (a 4.7 s verify used
    # 8.2 s of CPU; 4.7 s with one thread) and no runtime's kernels use it
    unshare --mount --propagation private /bin/sh -c 'root=$1; cpu=$2; shift 2
        mount --bind "$PWD" "$root/work" && mount -t proc proc "$root/proc" && mount --bind "$root/fake-sys/$cpu" "$root/sys" \
        && exec chroot "$root" /usr/bin/env -i PATH=/opt/venv/bin:/usr/bin:/bin HOME=/root QEMU_CPU="$cpu" OPENBLAS_NUM_THREADS=1 \
            CNNEXPORT_EMULATED="qemu-aarch64 -cpu $cpu" /bin/sh -c '"'"'cd /work && exec "$@"'"'"' sh "$@"' sh "$root" "$cpu" "$@"
}

check_cpu() {  # check_cpu CPU: the digits LeNet-5 files in the current folder, verified and evaluated on CPU
    local cpu=$1
    local files=(lenet5.onnx lenet5.xml lenet5.tflite lenet5.ncnn.param lenet5.mnn lenet5.fp16.onnx lenet5.fp16.xml
                 lenet5.fp16.tflite lenet5.fp16.mnn lenet5.int8.onnx lenet5.int8.xml lenet5.int8.tflite lenet5.int8.mnn)
    # one emulated process for all the files: a Python start with numpy and the runtimes costs seconds under qemu;
    # one thread each, as the two CPUs run side by side on the host's cores. OpenVINO's own f16 default is named,
    # not run (reported, never enforced; benchmarks/arm_emulated.py measures it): on cortex-a710 its convolutions
    # run the reference kernel, and the second run of the int8 file took half of this core's verify
    run --cpu "$cpu" -- cnnexport verify "${files[@]}" --reference reference.npz --threads 1 --no-runtime-default \
        || return 1
    run --cpu "$cpu" -- cnnexport eval lenet5.onnx lenet5.xml lenet5.tflite lenet5.ncnn.param lenet5.mnn --data ./digits \
        --threads 1 --workers 1 --save "eval_arm_$cpu.json" || return 1
    python3 -c "import json, sys; r = json.load(open('eval_arm_$cpu.json')); \
sys.exit(0 if all(m['top1'] > 0.98 and m['images'] == 450 for m in r['models']) else 'eval on ARM: wrong accuracy')"
}

check() {  # check DIR: the digits LeNet-5 files in DIR verified, and evaluated on DIR/digits, on two CPUs side by side
    local cpus=(cortex-a710 cortex-a53) cpu status=0
    cd "$1"
    for cpu in "${cpus[@]}"; do (check_cpu "$cpu" > "arm_check_$cpu.log" 2>&1) & done
    for cpu in "${cpus[@]}"; do wait -n || status=1; done
    for cpu in "${cpus[@]}"; do echo "== arm64 -cpu $cpu"; cat "arm_check_$cpu.log"; done
    [ $status = 0 ] || { echo "arm64 check failed (above)" >&2; return 1; }
    echo "arm64 (emulated, -cpu ${cpus[*]}): every LeNet-5 file verified and evaluated"
}

ready() {  # whether run can start now, without building anything (the tests ask this before they emulate)
    [ "$(id -u)" = 0 ] || { echo "not root: chroot and binfmt_misc need it"; return 1; }
    [ "$(qemu_major)" -ge 10 ] 2>/dev/null || { echo "no qemu-aarch64-static 10 or later: run scripts/arm_env.sh build"; return 1; }
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
    *) echo "usage: scripts/arm_env.sh build | run [--cpu cortex-a710|max|cortex-a53] -- COMMAND... | check DIR | ready | requirements" >&2
       exit 2 ;;
esac

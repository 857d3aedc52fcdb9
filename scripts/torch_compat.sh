#!/usr/bin/env bash
# The test suite under another torch release than the pinned CPU build: the GPU machine's torch (2.11 with CUDA)
# is the one that matters, and its import paths (torch.export, AOTInductor, torch.compile, the ONNX exporters,
# timm with its matching torchvision) must work there before a GPU session spends its minutes.
#
#   scripts/torch_compat.sh [VERSION] [PYTEST_ARGS...]      (default 2.11.0; the venv in $TORCH_COMPAT_VENV,
#                                                           default /tmp/cnnexport-torch-VERSION, reused)
#
# PyPI's torch for x86_64 is a CUDA build (several GB with its NVIDIA wheels); it runs on the CPU here, where
# no GPU is visible. ExecuTorch's tests are left out: executorch's compiled runtime is built against one torch
# (1.5.1 against 2.13) and does not run beside another (".pte" programs fail with "tensor does not have a
# device"), and the GPU machine has no executorch. Exits with pytest's status.
set -euo pipefail
version=${1:-2.11.0}
[ $# -gt 0 ] && shift
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${TORCH_COMPAT_VENV:-/tmp/cnnexport-torch-$version}
installed() { "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$version')"; }
if ! installed 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    constraints=$(mktemp)
    echo "torch==$version" > "$constraints"
    # the machine-wide cap on torch (a pip constraint file) is lifted for this venv alone: the version is asked for
    PIP_CONSTRAINT= "$venv/bin/pip" install -q -c "$constraints" "torch==$version" -e "$here[test]"
    rm -f "$constraints"
fi
"$venv/bin/python" -c "import torch, torchvision as tv; print('torch', torch.__version__, '| torchvision', tv.__version__)"
cd "$here"
"$venv/bin/python" -m pytest -q -p no:cacheprovider --ignore tests/test_executorch.py "$@"

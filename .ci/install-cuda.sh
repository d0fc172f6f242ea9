#!/usr/bin/env bash
# Installs nvcc + ptxas (CUDA 13.0, from PyPI wheels) into a venv, idempotently, and prints the
# line to export:   eval "$(.ci/install-cuda.sh)"   sets NVCC and PTXAS for the build.
# Progress goes to stderr; stdout carries only the export lines.
# Override the location with CUDA_VENV (default /opt/cuda-venv).
set -euo pipefail
VENV="${CUDA_VENV:-/opt/cuda-venv}"
VER=13.0.88
PKGS=(nvidia-cuda-nvcc==$VER nvidia-nvvm==$VER nvidia-cuda-runtime==$VER nvidia-cuda-crt==$VER)

find_bin() {
    # the wheels put the toolkit under site-packages/nvidia/cu13
    ls "$VENV"/lib/python3*/site-packages/nvidia/cu13/bin/"$1" 2>/dev/null | head -n1
}

NVCC_BIN="$(find_bin nvcc || true)"
if [ -z "$NVCC_BIN" ] || ! "$NVCC_BIN" --version >/dev/null 2>&1; then
    echo "install-cuda: installing ${PKGS[*]} into $VENV" >&2
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" >&2
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PKGS[@]}" >&2
    NVCC_BIN="$(find_bin nvcc)"
else
    echo "install-cuda: nvcc already present in $VENV" >&2
fi
PTXAS_BIN="$(dirname "$NVCC_BIN")/ptxas"
"$NVCC_BIN" --version | tail -n2 >&2
echo "export NVCC=$NVCC_BIN"
echo "export PTXAS=$PTXAS_BIN"

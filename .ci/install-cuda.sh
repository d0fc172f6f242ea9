#!/usr/bin/env bash
# Installs, from pinned PyPI wheels, idempotently, and prints the lines to export:
#   eval "$(.ci/install-cuda.sh)"
# - CUDA 13.0: nvcc + ptxas into CUDA_VENV (default /opt/cuda-venv): NVCC, PTXAS. build.rs's PTX ISA 9.0
#   (CUDA 13 drivers, R580+; no sm_70).
# - CUDA 12.0: NVRTC + ptxas into CUDA12_VENV (default /opt/cuda12-venv): PIX2PIX_NVRTC (libnvrtc.so.12,
#   which build.rs loads to write PTX ISA 8.0, loaded by every CUDA 12 driver, sm_70 included) and
#   PTXAS12 (.ci/check-ptx.sh assembles that PTX with it). 12.0 is the oldest CUDA 12, so its PTX
#   loads under the most drivers (R525+). A separate venv: the two generations' wheels never meet.
#   The ptxas is CUDA 12.4's: 12.0's segfaults assembling the tensor-core conv kernels for sm_90
#   (any PTX target), 12.4's accepts them; a driver JIT-compiles with its own version's compiler,
#   so this checks what a CUDA 12.4+ driver does (12.0-12.3 drivers on sm_90: unverified).
# Progress goes to stderr; stdout carries only the export lines.
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

VENV12="${CUDA12_VENV:-/opt/cuda12-venv}"
VER12=12.0.140
PTXAS_VER12=12.4.131
PKGS12=(nvidia-cuda-nvrtc-cu12==$VER12 nvidia-cuda-nvcc-cu12==$PTXAS_VER12)
find12() {
    ls "$VENV12"/lib/python3*/site-packages/nvidia/"$1" 2>/dev/null | head -n1
}
NVRTC12="$(find12 cuda_nvrtc/lib/libnvrtc.so.12 || true)"
PTXAS12_BIN="$(find12 cuda_nvcc/bin/ptxas || true)"
if [ -z "$NVRTC12" ] || [ -z "$PTXAS12_BIN" ] || ! "$PTXAS12_BIN" --version 2>/dev/null | grep -q "release ${PTXAS_VER12%.*}"; then
    echo "install-cuda: installing ${PKGS12[*]} into $VENV12" >&2
    if [ ! -x "$VENV12/bin/python" ]; then
        python3 -m venv "$VENV12" >&2
    fi
    "$VENV12/bin/python" -m pip install --quiet --disable-pip-version-check "${PKGS12[@]}" >&2
    NVRTC12="$(find12 cuda_nvrtc/lib/libnvrtc.so.12)"
    PTXAS12_BIN="$(find12 cuda_nvcc/bin/ptxas)"
else
    echo "install-cuda: CUDA 12 NVRTC and ptxas already present in $VENV12" >&2
fi
"$PTXAS12_BIN" --version | tail -n1 >&2
echo "export PIX2PIX_NVRTC=$NVRTC12"
echo "export PTXAS12=$PTXAS12_BIN"

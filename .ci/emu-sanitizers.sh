#!/usr/bin/env bash
# The GPU test suites (tests/gpu_ops/, tests/gpu_conv_variants.rs, tests/fused_ops.rs) on the emulated CUDA device's
# sanitizer builds, and under memcheck also the pix2pix graph-replay test (tests/graph_step.rs:
# replayed steps read and write only live buffers):
#   memcheck  (kernels built with AddressSanitizer: out-of-bounds and use-after-free on device memory)
#   racecheck (ThreadSanitizer: shared-memory races within a block, e.g. a missing __syncthreads)
# Cases above a size limit are left out there (fits() in each suite); every kernel still runs.
# Run after a release build of the tests:  .ci/emu-sanitizers.sh [memcheck] [racecheck]
# Any sanitizer report fails the run (the runtime exits non-zero at the first one).
set -euo pipefail
cd "$(dirname "$0")/.."
MODES=("${@:-memcheck racecheck}")
read -r -a MODES <<<"${MODES[*]}"
CXX="${CXX:-g++}"
test_bin() {
    local b
    b="$(cargo test --release --no-run --test "$1" 2>&1 | grep -o "[^ (]*release/deps/$1-[0-9a-f]*" | tail -n1)"
    [ -x "$b" ] || { echo "emu-sanitizers: no $1 test binary (build failed?)" >&2; exit 1; }
    echo "$b"
}
BINS=("$(test_bin gpu_ops)" "$(test_bin gpu_conv_variants)" "$(test_bin fused_ops)")
GRAPH_BIN="$(test_bin graph_step)"
for mode in "${MODES[@]}"; do
    case "$mode" in
        memcheck) rt="$("$CXX" -print-file-name=libasan.so)";
                  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:halt_on_error=1:exitcode=86}" ;;
        racecheck) rt="$("$CXX" -print-file-name=libtsan.so)";
                   export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:exitcode=66:ignore_noninstrumented_modules=1:report_signal_unsafe=0}" ;;
        *) echo "emu-sanitizers: unknown mode $mode (memcheck, racecheck)" >&2; exit 2 ;;
    esac
    for bin in "${BINS[@]}"; do
        echo "== $(basename "$bin") on cuda-emu:$mode ($rt)"
        start=$(date +%s)
        LD_PRELOAD="$rt" PIX2PIX_TEST_DEVICE="cuda-emu:$mode" "$bin" --test-threads 2
        echo "== $(basename "$bin") on cuda-emu:$mode: $(( $(date +%s) - start )) s"
    done
    if [ "$mode" = memcheck ]; then
        start=$(date +%s)
        LD_PRELOAD="$rt" PIX2PIX_TEST_DEVICE="cuda-emu:$mode" "$GRAPH_BIN" pix2pix_graph_replay
        echo "== $(basename "$GRAPH_BIN") on cuda-emu:$mode: $(( $(date +%s) - start )) s"
    fi
done

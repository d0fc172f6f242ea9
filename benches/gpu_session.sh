#!/usr/bin/env bash
# One GPU session in one call. A GPU machine may have the driver, nvcc and PyTorch but no Rust:
#   here:   benches/gpu_session.sh build    # builds with the kernels, strips the binaries into .dev/
#   there:  benches/gpu_session.sh run      # (carry .dev.tar.xz) validates, times, prints a table last
#   here:   benches/gpu_session.sh run --emulated   # the dry run: every step of `run` on the
#           emulated CUDA device (cuda-emu) at small shapes, PyTorch only syntax-checked; CI runs it,
#           so the first GPU minutes cannot be lost to a script error, a missing binary or a bad flag.
# Outputs of `run` go to ${OUT:-.dev/out}: a log per step; copy the figures into benches/RESULTS.md.
# Emulated figures are host times of the CPU emulation and never go into RESULTS.md as GPU figures.
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
BIN=.dev

if [ "$mode" = build ]; then
    set -e
    eval "$(.ci/install-cuda.sh)"
    export PIX2PIX_REQUIRE_CUDA=1
    cargo build --release
    cargo test --release --test gpu_ops --no-run 2>&1 | tee /tmp/gpu_ops_build.log
    cargo test --release --test graph_step --no-run 2>&1 | tee -a /tmp/gpu_ops_build.log
    cargo test --release --test gpu_conv_variants --no-run 2>&1 | tee -a /tmp/gpu_ops_build.log
    cargo test --release --test fused_ops --no-run 2>&1 | tee -a /tmp/gpu_ops_build.log
    cargo bench --no-run 2>&1 | tee /tmp/bench_build.log
    mkdir -p "$BIN"
    newest() { ls -t target/release/deps/$1-* 2>/dev/null | grep -v '\.d$' | head -n1; }
    cp target/release/pix2pix "$BIN/pix2pix"
    cp "$(newest gpu_ops)" "$BIN/gpu_ops"
    cp "$(newest graph_step)" "$BIN/graph_step"
    cp "$(newest gpu_conv_variants)" "$BIN/gpu_conv_variants"
    cp "$(newest fused_ops)" "$BIN/fused_ops"
    cp "$(newest step)" "$BIN/bench_step"
    cp "$(newest kernels)" "$BIN/bench_kernels"
    strip "$BIN"/pix2pix "$BIN"/gpu_ops "$BIN"/graph_step "$BIN"/gpu_conv_variants "$BIN"/fused_ops "$BIN"/bench_step "$BIN"/bench_kernels
    du -sh "$BIN"
    # Seven binaries of ~10 MB that share most of their bytes (the embedded PTX, the emulator, the
    # engine): one xz stream with a dictionary wider than a binary keeps one copy, ~5 MB in all,
    # well inside the 64 MiB a device session carries.
    tar -C "$BIN" -cf - pix2pix gpu_ops graph_step gpu_conv_variants fused_ops bench_step bench_kernels |
        xz -T2 --lzma2=preset=6,dict=128MiB >"$BIN.tar.xz"
    ls -la "$BIN.tar.xz"
    echo "carry $BIN.tar.xz and run: benches/gpu_session.sh run"
    exit 0
fi
[ "$mode" = run ] || { echo "usage: $0 build | run [--emulated]" >&2; exit 2; }
emulated=0
[ "${2:-}" = --emulated ] && emulated=1

# Unpack the carried binaries (Python's tarfile: the GPU machine has Python, maybe not xz). The dry
# run unpacks them too, so CI exercises this path.
if [ -f "$BIN.tar.xz" ] && { [ ! -x "$BIN/pix2pix" ] || [ $emulated = 1 ]; }; then
    python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$BIN.tar.xz" "$BIN"
    echo "unpacked $BIN.tar.xz into $BIN"
fi
OUT="${OUT:-$BIN/out}"
OLDPWD_BIN="$PWD/$BIN"
mkdir -p "$OUT"
# The time budget: a device call ends at 600 s, and a step that hangs (a deadlock, a GPU fault
# that never returns) must not take the later steps and the summary with it. On a GPU each step
# runs under `timeout`: at most STEP_CAP_S (180 unless the step sets it) and at most what is left
# of SESSION_BUDGET_S (540: the unpack and nvidia-smi come before); once less than 15 s is left
# the remaining steps are SKIPPED and the summary names them, so the next session knows what to
# run. The dry run has no budget (its emulated steps are slow by design).
if [ $emulated = 1 ]; then budget="${SESSION_BUDGET_S:-0}"; else budget="${SESSION_BUDGET_S:-540}"; fi
if [ "$budget" -gt 0 ] && ! command -v timeout >/dev/null; then
    echo "warning: no timeout(1) here: the steps run without a time limit" >&2
    budget=0
fi
status=()
step() { # name, command...
    local name="$1"; shift
    local t0=$SECONDS left=0
    if [ "$budget" -gt 0 ]; then
        left=$((budget - SECONDS))
        if [ $left -lt 15 ]; then
            status+=("$name SKIPPED (session budget of ${budget}s spent)")
            echo "=== $name: SKIPPED (session budget spent)"
            return
        fi
        local cap="${STEP_CAP_S:-180}"
        [ $left -gt "$cap" ] && left=$cap
    fi
    echo "=== $name: $*"
    local rc=0
    if [ $left -gt 0 ]; then timeout -k 5 $left "$@" >"$OUT/$name.log" 2>&1 || rc=$?
    else "$@" >"$OUT/$name.log" 2>&1 || rc=$?; fi
    if [ $rc = 0 ]; then status+=("$name ok $((SECONDS - t0))s")
    elif [ $left -gt 0 ] && { [ $rc = 124 ] || [ $rc = 137 ]; }; then status+=("$name FAILED: TIMED OUT after $((SECONDS - t0))s")
    else status+=("$name FAILED $((SECONDS - t0))s"); fi
    tail -n 25 "$OUT/$name.log"
}
# A step whose command runs in $OUT (it writes files where it runs): step NAME "${IN_OUT[@]}" CMD...
IN_OUT=(bash -c 'cd "$1" && shift && exec "$@"' in_out "$OUT")
if [ $emulated = 1 ]; then
    DEV=cuda-emu
    echo "DRY RUN on the emulated CUDA device: times are host times, not GPU figures" | tee "$OUT/gpu.txt"
    step gpu_ops "$BIN/gpu_ops" --test-threads=2 embedded_ptx adam  # the whole suite runs in cargo test
    step graph_step "$BIN/graph_step" --list                            # likewise (runs in cargo test)
    step conv_variants "$BIN/gpu_conv_variants" --test-threads=2 v2_tf32 v3_bf16 v4_tf32_async v5_bf16_async v6_bf16_128 v7_tf32_128
    step fused_ops "$BIN/fused_ops" --test-threads=2
    step gradcheck_small "$BIN/pix2pix" gradcheck --device $DEV --netG unet_128 --ngf 8 --ndf 8 --size 128 --batch-size 2
    step gradcheck_small_ptx12 env PIX2PIX_PTX=nvrtc PIX2PIX_EMU_DRIVER=12040 "$BIN/pix2pix" gradcheck --device $DEV --netG unet_128 --ngf 8 --ndf 8 --size 128 --batch-size 2
    step gradcheck_small_tf32 "$BIN/pix2pix" gradcheck --device $DEV --precision tf32 --netG unet_128 --ngf 8 --ndf 8 --size 128 --failures-only
    step gradcheck_small_bf16 "$BIN/pix2pix" gradcheck --device $DEV --precision bf16 --netG unet_128 --ngf 8 --ndf 8 --size 128 --failures-only
    step gradcheck_256 "$BIN/pix2pix" gradcheck --device $DEV --ngf 8 --ndf 8 --failures-only
    # The reduced shape set (ngf 4), every variant checked; a subset of layers to keep the dry run short.
    step kernels "$BIN/bench_kernels" --device $DEV --reps 1 --layers e1,e2,e8,d8,d7,d1,C1,C4,C5
    step kernels_b8 "$BIN/bench_kernels" --device $DEV --batch 2 --reps 1 --layers e6,d3
    step step_gpu "$BIN/bench_step" --device $DEV --size 256 --batch 1,2 --iters 1 --ngf 8
    step step_gpu_tf32 "$BIN/bench_step" --device $DEV --precision tf32 --size 128 --batch 1 --iters 1 --ngf 8
    step step_gpu_bf16 "$BIN/bench_step" --device $DEV --precision bf16 --size 128 --batch 1 --iters 1 --ngf 8
    step step_gpu_v4 "$BIN/bench_step" --device $DEV --variant 4 --size 128 --batch 1 --iters 1 --ngf 8
    step step_gpu_v5 "$BIN/bench_step" --device $DEV --variant 5 --size 128 --batch 1 --iters 1 --ngf 8
    step step_gpu_v6 "$BIN/bench_step" --device $DEV --variant 6 --size 128 --batch 2 --iters 1 --ngf 8
    step step_gpu_v7 "$BIN/bench_step" --device $DEV --variant 7 --size 128 --batch 2 --iters 1 --ngf 8
    step step_cpu "$BIN/bench_step" --device cpu --size 256 --batch 1 --iters 1 --ngf 8
    step pytorch python3 -m py_compile benches/pytorch_reference.py
    step demo "${IN_OUT[@]}" "$OLDPWD_BIN/pix2pix" demo --device $DEV --minutes 0.2 --n-train 20 --ngf 8
else
    DEV=cuda
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
    export PIX2PIX_REQUIRE_GPU=1
    step gpu_ops "$BIN/gpu_ops" --nocapture --test-threads=1
    # Graph replay bit-identical to eager launches, on the real driver's graphs.
    step graph_step "${IN_OUT[@]}" env PIX2PIX_TEST_DEVICE=cuda "$OLDPWD_BIN/graph_step" --nocapture --test-threads=1 --skip train_with_and_without
    step conv_variants "$BIN/gpu_conv_variants" --nocapture --test-threads=1
    step fused_ops "$BIN/fused_ops" --nocapture --test-threads=1
    step gradcheck_small "$BIN/pix2pix" gradcheck --device $DEV --netG unet_128 --ngf 8 --ndf 8 --size 128 --batch-size 2
    # CUDA 12's PTX (NVRTC 12.0, ISA 8.0) on this GPU too: what a CUDA 12 driver or a V100 would run.
    step gpu_ops_ptx12 env PIX2PIX_PTX=nvrtc "$BIN/gpu_ops" --test-threads=1
    step gradcheck_small_ptx12 env PIX2PIX_PTX=nvrtc "$BIN/pix2pix" gradcheck --device $DEV --netG unet_128 --ngf 8 --ndf 8 --size 128 --batch-size 2
    step gradcheck_256 "$BIN/pix2pix" gradcheck --device $DEV --failures-only
    step gradcheck_256_tf32 "$BIN/pix2pix" gradcheck --device $DEV --precision tf32 --failures-only
    step gradcheck_256_bf16 "$BIN/pix2pix" gradcheck --device $DEV --precision bf16 --failures-only
    step gradcheck_small_v4 env PIX2PIX_CONV_VARIANT=4 "$BIN/pix2pix" gradcheck --device $DEV --netG unet_128 --ngf 8 --ndf 8 --size 128 --failures-only
    step gradcheck_small_v5 env PIX2PIX_CONV_VARIANT=5 "$BIN/pix2pix" gradcheck --device $DEV --netG unet_128 --ngf 8 --ndf 8 --size 128 --failures-only
    step gradcheck_small_v6 env PIX2PIX_CONV_VARIANT=6 "$BIN/pix2pix" gradcheck --device $DEV --netG unet_128 --ngf 8 --ndf 8 --size 128 --failures-only
    step gradcheck_small_v7 env PIX2PIX_CONV_VARIANT=7 "$BIN/pix2pix" gradcheck --device $DEV --netG unet_128 --ngf 8 --ndf 8 --size 128 --failures-only
    # The headline timings (issue 13's targets) before the long per-kernel table.
    step step_gpu "$BIN/bench_step" --device $DEV --size 256 --batch 1,8,64 --iters 20
    step step_gpu_tf32 "$BIN/bench_step" --device $DEV --precision tf32 --size 256 --batch 1,8,64 --iters 20
    step step_gpu_bf16 "$BIN/bench_step" --device $DEV --precision bf16 --size 256 --batch 1,8,64 --iters 20
    step pytorch python3 benches/pytorch_reference.py --device cuda --size 256 --batch 1,8,64 --configs eager,bench,bf16cl
    step step_gpu_v4 "$BIN/bench_step" --device $DEV --variant 4 --size 256 --batch 1,8,64 --iters 20
    step step_gpu_v5 "$BIN/bench_step" --device $DEV --variant 5 --size 256 --batch 1,8,64 --iters 20
    step step_gpu_v6 "$BIN/bench_step" --device $DEV --variant 6 --size 256 --batch 1,8,64 --iters 20
    step step_gpu_v7 "$BIN/bench_step" --device $DEV --variant 7 --size 256 --batch 1,8,64 --iters 20
    # Every conv layer of unet_256 + PatchGAN, every role, v1-v7 checked then timed side by side.
    STEP_CAP_S=300 step kernels "$BIN/bench_kernels" --device $DEV --batch 1,8,64 --reps 10
    step step_cpu "$BIN/bench_step" --device cpu --size 256 --batch 1 --iters 3
    step demo "${IN_OUT[@]}" "$OLDPWD_BIN/pix2pix" demo --device $DEV --minutes 1 --n-train 200
fi
echo
echo "================ summary ================"
printf '%s\n' "${status[@]}"
grep -H -E "^ +256 +[0-9]+ |one by one" "$OUT"/step_gpu*.log "$OUT/step_cpu.log" 2>/dev/null
grep -H -o "GPU memory in use .*" "$OUT"/step_gpu.log 2>/dev/null
sed -n '/^conv totals/,$p' "$OUT/kernels.log" 2>/dev/null
grep -h -E "^ *(eager|bench|bf16cl) " "$OUT/pytorch.log" 2>/dev/null
grep -h "worst rel err" "$OUT"/gradcheck_*.log 2>/dev/null
# A failed step fails the session (the dry run in CI relies on it).
for st in "${status[@]}"; do case "$st" in *FAILED*) exit 1 ;; esac; done

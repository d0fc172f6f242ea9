#!/usr/bin/env bash
# The CPU CycleGAN step beside PyTorch's, side by side in one run: for each thread count and size,
# ROUNDS alternating pairs (engine, then PyTorch, same threads), each pair's ratio of wall time
# and of CPU time (the process's, all threads, median per step), the load average before each
# measurement. On a shared machine absolute times move with the load; the CPU time leaves out
# the waits for a core (and, with 2 threads, PyTorch's OpenMP spinning counts as CPU time).
#
#   benches/cyclegan_vs_pytorch.sh                      # 128², 1 and 2 threads, 2 rounds
#   SIZES=128,256 THREADS=2 ROUNDS=3 ITERS=3 benches/cyclegan_vs_pytorch.sh
#
# PYTHON: a Python with torch (default python3); the engine's bench binary is built first
# (`cargo bench --bench step --no-run`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SIZES=${SIZES:-128}
THREADS=${THREADS:-1,2}
ROUNDS=${ROUNDS:-2}
ITERS=${ITERS:-3}

bench=$(cargo bench --bench step --no-run --message-format=json 2>/dev/null | grep '"kind":\["bench"\]' |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$bench" ] || { echo "could not build the step bench" >&2; exit 1; }
"$PYTHON" -c 'import torch' || { echo "PYTHON=$PYTHON has no torch" >&2; exit 1; }
load() { cut -d' ' -f1 /proc/loadavg; }

echo "size threads round  load | engine_s  cpu_s | load | pytorch_s  cpu_s | engine/pytorch wall  cpu"
for size in ${SIZES//,/ }; do
    for t in ${THREADS//,/ }; do
        for r in $(seq 1 "$ROUNDS"); do
            l1=$(load)
            read -r e ec < <(RAYON_NUM_THREADS=$t "$bench" --model cycle_gan --size "$size" --iters "$ITERS" |
                awk -v s="$size" '$1 == s && $2 == 1 { print $3, $(NF - 1) / 1000 }')
            l2=$(load)
            read -r p pc < <(OMP_NUM_THREADS=$t "$PYTHON" benches/pytorch_reference.py --model cycle_gan \
                --device cpu --size "$size" --iters "$ITERS" --warmup 1 |
                awk -v s="$size" '$2 == s { print $4 / 1000, $(NF - 1) / 1000 }')
            printf "%4s %7s %5s %5s | %8.3f %6.3f | %4s | %9.3f %6.3f | %19.2f %4.2f\n" "$size" "$t" "$r" "$l1" \
                "$e" "$ec" "$l2" "$p" "$pc" "$(echo "$e / $p" | bc -l)" "$(echo "$ec / $pc" | bc -l)"
        done
    done
done

#!/usr/bin/env bash
# Assembles every embedded PTX with ptxas for sm_80 and sm_90 (each PTX whose arch is not above the
# target) and prints registers, spills and shared memory per kernel. Needs no GPU.
# Fails when ptxas rejects a PTX. Run after a build (it reads the table build.rs embedded):
#   eval "$(.ci/install-cuda.sh)"; PIX2PIX_REQUIRE_CUDA=1 cargo build --release; .ci/check-ptx.sh
# PTXAS: the ptxas to use (default: next to $NVCC, else on PATH). PROFILE: release (default) or debug.
# TARGETS: the sm_XX to check (default "80 90").
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE="${PROFILE:-release}"
TARGETS="${TARGETS:-80 90}"
if [ -z "${PTXAS:-}" ]; then
    if [ -n "${NVCC:-}" ] && [ -x "$(dirname "$NVCC")/ptxas" ]; then PTXAS="$(dirname "$NVCC")/ptxas"
    else PTXAS="$(command -v ptxas || true)"; fi
fi
[ -n "$PTXAS" ] || { echo "check-ptx: no ptxas (set PTXAS or NVCC; see .ci/install-cuda.sh)" >&2; exit 1; }
TABLE="$(ls -t target/"$PROFILE"/build/pix2pix-*/out/kernels.rs 2>/dev/null | head -n1 || true)"
[ -n "$TABLE" ] || { echo "check-ptx: no target/$PROFILE/build/pix2pix-*/out/kernels.rs; build first" >&2; exit 1; }
mapfile -t ENTRIES < <(sed -n 's/^ *(\([0-9]*\), "\([a-z_0-9]*\)", include_str!("\(.*\)")),$/\1 \2 \3/p' "$TABLE")
[ "${#ENTRIES[@]}" -gt 0 ] || { echo "check-ptx: $TABLE embeds no PTX (built without nvcc?)" >&2; exit 1; }
echo "check-ptx: $("$PTXAS" --version | tail -n1); table $TABLE (${#ENTRIES[@]} PTX)"
status=0
for target in $TARGETS; do
    printf '\n== ptxas -arch=sm_%s ==\n' "$target"
    printf '%-6s %-9s %-34s %5s %6s %6s %7s\n' ptx family kernel regs spillS spillL smem
    for e in "${ENTRIES[@]}"; do
        read -r arch family path <<<"$e"
        [ "$arch" -le "$target" ] || continue
        if ! out="$("$PTXAS" -arch=sm_"$target" -v -o /dev/null "$path" 2>&1)"; then
            echo "FAILED: ptxas -arch=sm_$target $path"; echo "$out"; status=1; continue
        fi
        awk -v arch="sm_$arch" -v fam="$family" '
            /Compiling entry function/ { match($0, /'"'"'[^'"'"']*'"'"'/); k = substr($0, RSTART+1, RLENGTH-2); ss=0; sl=0; smem=0 }
            /bytes spill stores/ { ss=$5; sl=$9 }
            /Used [0-9]+ registers/ {
                for (i=1;i<=NF;i++) { if ($(i+1) ~ /^registers/) r=$i; if ($(i+1) ~ /^bytes/ && $(i+2) ~ /^smem/) smem=$i }
                printf "%-6s %-9s %-34s %5s %6s %6s %7s\n", arch, fam, k, r, ss, sl, smem
            }' <<<"$out"
    done
done
exit $status

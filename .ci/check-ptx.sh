#!/usr/bin/env bash
# Assembles every embedded PTX with the ptxas of its own CUDA generation and prints registers,
# spills and shared memory per kernel. Needs no GPU. Fails when ptxas rejects a PTX.
# For each target GPU sm_T of TARGETS and each toolchain of the table, the PTX the runtime would load
# there (that toolchain's highest arch not above T) is assembled for sm_T:
#   PTX ISA 9.x (CUDA 13's nvcc)  → $PTXAS   (CUDA 13's ptxas; default: next to $NVCC, else on PATH)
#   PTX ISA 8.x (CUDA 12's NVRTC) → $PTXAS12 (CUDA 12's ptxas, from nvidia-cuda-nvcc-cu12; sm_70 too)
# Run after a build (it reads the table build.rs embedded):
#   eval "$(.ci/install-cuda.sh)"; PIX2PIX_REQUIRE_CUDA=1 cargo build --release; .ci/check-ptx.sh
# PROFILE: release (default) or debug. TARGETS: the sm_XX to check (default "70 75 80 86 89 90").
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE="${PROFILE:-release}"
TARGETS="${TARGETS:-70 75 80 86 89 90}"
if [ -z "${PTXAS:-}" ]; then
    if [ -n "${NVCC:-}" ] && [ -x "$(dirname "$NVCC")/ptxas" ]; then PTXAS="$(dirname "$NVCC")/ptxas"
    else PTXAS="$(command -v ptxas || true)"; fi
fi
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
TABLE="$(ls -t "$TARGET_DIR"/"$PROFILE"/build/pix2pix-*/out/kernels.rs 2>/dev/null | head -n1 || true)"
[ -n "$TABLE" ] || { echo "check-ptx: no $TARGET_DIR/$PROFILE/build/pix2pix-*/out/kernels.rs; build first" >&2; exit 1; }
# One line per PTX: arch|isa|toolchain|family|path (the PTX text beside the deflated copy embedded)
mapfile -t ENTRIES < <(sed -n 's/^ *EmbeddedPtx { arch: \([0-9]*\), isa: (\([0-9]*\), \([0-9]*\)), toolchain: "\([^"]*\)", family: "\([a-z_0-9]*\)", deflated: include_bytes!("\(.*\)\.deflate") },$/\1|\2.\3|\4|\5|\6/p' "$TABLE")
[ "${#ENTRIES[@]}" -gt 0 ] || { echo "check-ptx: $TABLE embeds no PTX (built without a toolchain?)" >&2; exit 1; }

# The ptxas for a PTX ISA major version.
ptxas_for() {
    case "$1" in
        9) echo "${PTXAS:-}" ;;
        8) echo "${PTXAS12:-}" ;;
        *) echo "" ;;
    esac
}
for e in "${ENTRIES[@]}"; do
    IFS='|' read -r _ isa _ _ _ <<<"$e"
    p="$(ptxas_for "${isa%%.*}")"
    [ -n "$p" ] && [ -x "$p" ] || {
        echo "check-ptx: no ptxas for PTX ISA $isa (PTXAS for 9.x, PTXAS12 for 8.x; see .ci/install-cuda.sh)" >&2; exit 1; }
done
echo "check-ptx: table $TABLE (${#ENTRIES[@]} PTX)"
[ -n "${PTXAS:-}" ] && echo "check-ptx: ISA 9.x: $("$PTXAS" --version | tail -n1) ($PTXAS)"
[ -n "${PTXAS12:-}" ] && echo "check-ptx: ISA 8.x: $("$PTXAS12" --version | tail -n1) ($PTXAS12)"

mapfile -t CHAINS < <(for e in "${ENTRIES[@]}"; do IFS='|' read -r _ _ t _ _ <<<"$e"; echo "$t"; done | sort -u)
status=0
checked=0
for target in $TARGETS; do
    printf '\n== sm_%s ==\n' "$target"
    printf '%-6s %-4s %-11s %-10s %-34s %5s %6s %6s %7s\n' ptx isa toolchain family kernel regs spillS spillL smem
    for chain in "${CHAINS[@]}"; do
        # The arch the runtime would pick for this target from this toolchain.
        best=0
        for e in "${ENTRIES[@]}"; do
            IFS='|' read -r arch _ t _ _ <<<"$e"
            [ "$t" = "$chain" ] && [ "$arch" -le "$target" ] && [ "$arch" -gt "$best" ] && best=$arch
        done
        [ "$best" -gt 0 ] || { echo "($chain has no PTX for sm_$target)"; continue; }
        for e in "${ENTRIES[@]}"; do
            IFS='|' read -r arch isa t family path <<<"$e"
            [ "$t" = "$chain" ] && [ "$arch" = "$best" ] || continue
            p="$(ptxas_for "${isa%%.*}")"
            checked=$((checked + 1))
            if ! out="$("$p" -arch=sm_"$target" -v -o /dev/null "$path" 2>&1)"; then
                echo "FAILED: $p -arch=sm_$target $path"; echo "$out"; status=1; continue
            fi
            awk -v arch="sm_$arch" -v isa="$isa" -v tc="$chain" -v fam="$family" '
                /Compiling entry function/ { match($0, /'"'"'[^'"'"']*'"'"'/); k = substr($0, RSTART+1, RLENGTH-2); ss=0; sl=0; smem=0 }
                /bytes spill stores/ { ss=$5; sl=$9 }
                /Used [0-9]+ registers/ {
                    for (i=1;i<=NF;i++) { if ($(i+1) ~ /^registers/) r=$i; if ($(i+1) ~ /^bytes/ && $(i+2) ~ /^smem/) smem=$i }
                    printf "%-6s %-4s %-11s %-10s %-34s %5s %6s %6s %7s\n", arch, isa, tc, fam, k, r, ss, sl, smem
                }' <<<"$out"
        done
    done
done
echo
echo "check-ptx: $checked assemblies, $([ $status = 0 ] && echo all accepted || echo SOME FAILED)"
exit $status

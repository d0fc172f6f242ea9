// The conv kernel lab's tile engine (kernels/conv.cu's implicit GEMMs): how one block's tile of
// C = A·B is staged through shared memory and multiplied, per variant, and the main loops over K.
// conv.cu supplies the operands (`Operand`: its gathers) and the epilogue; nothing here knows the
// convolution.
//
// Tiling: 64×64 output tile per block of 256 threads, K-steps of BK = 16 through shared memory with
// the next step's global loads prefetched into registers during the math (v1-v3), or in flight
// through cp.async (v4, v5); v6/v7 run 128×128 tiles.
//
// Variants (device/precision.rs's ConvVariant picks one at run time, benches/kernels.rs times them
// side by side). All share the gathers (the implicit-GEMM addressing of each impl in conv.cu:
// `Operand`) and the split-K, and differ in the tile (64×64 but v6/v7's 128×128), in how a K-step of
// A and B is staged and in how it becomes the tile's product: the "tile math" policy each impl is
// instantiated with (`mainloop`):
//   v1 SimtF32  fp32 FMAs, 4×4 outputs per thread (the baseline; kernels without a suffix)
//   v2 MmaTf32  tensor cores, mma.sync m16n8k8 tf32: operands rounded to tf32 (cvt.rna) when staged
//               into shared memory, fp32 accumulation; kernels `*_tf32`
//   v3 MmaBf16  tensor cores, mma.sync m16n8k16 bf16: operands rounded to bf16 (round to nearest
//               even) when staged, fp32 accumulation; kernels `*_bf16`. Storage stays fp32: only
//               the operands in shared memory are bf16 (halving global traffic needs bf16 tensors)
//   v4 MmaTf32Async  v2's arithmetic (same operands, same mma sequence: the same results bit for
//               bit) with the tiles staged by a 3-stage cp.async pipeline (fp32 in shared memory,
//               rounded as ldmatrix reads the fragments) instead of through registers; kernels
//               `*_tf32_async`. Whether it is faster than v2 is a GPU measurement (benches/kernels.rs)
//   v5 MmaBf16Async  v3's arithmetic (same bf16 operands, same mma sequence: v3's results bit for
//               bit) through v4's pipeline: fp32 tiles in shared memory, rounded and paired to
//               bf16 as the fragments are read; kernels `*_bf16_async`
//   v6 MmaBf16Wide  v3's arithmetic (v3's results bit for bit) on a 128×128 tile with K-steps of
//               32: bf16 tiles in shared memory, fragments by ldmatrix, two register-staged
//               stages; kernels `*_bf16_128`. For the large GEMMs of big batches (4× the outputs
//               per block, twice the reuse of each staged element)
//   v7 MmaTf32Wide  v2's arithmetic (v2's results bit for bit) the same way: tf32 tiles, K-steps
//               of 16; kernels `*_tf32_128`
// v2-v5: 8 warps per block, each a 32×16 slice of the tile (2×2 mma tiles); v6, v7: 8 warps of
// 64×32 (4×4). The warp-level pieces (conversions, fragments, mma) are in device_fns.cuh with their host
// versions for the emulator.
#pragma once
#include "common.cuh"
#include "device_fns.cuh"

#define BM 64
#define BN 64
#define BK 16
#define NT 256
// The 64×64 kernels (v1-v5) ask for four blocks of NT threads per SM, i.e. at most 64 registers a
// thread: they sit right at that edge, and without the bound ptxas took 72-80 for some of them
// (one block less per SM) after changes as small as how the gathers return their addresses; 0
// spills at 64 (.ci/check-ptx.sh) but for the generic-k bf16 forward on sm_90 (8 bytes; no model
// uses k other than 3, 4, 7).
#define MIN_BLOCKS 4

// 16-byte aligned: mma_tile reads the tiles with float4 loads.
struct __align__(16) Tiles {
    float a[BK][BM + 4];  // rows padded to 68 floats: float4 reads stay 16-byte aligned
    float b[BK][BN + 4];
};

__device__ __forceinline__ void mma_tile(const Tiles& t, float (&acc)[4][4], int tx, int ty) {
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
        const float4 a4 = *reinterpret_cast<const float4*>(&t.a[kk][ty * 4]);
        const float4 b4 = *reinterpret_cast<const float4*>(&t.b[kk][tx * 4]);
        const float av[4] = {a4.x, a4.y, a4.z, a4.w};
        const float bv[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
}

// ---- tile math policies -------------------------------------------------------------------------
// Each policy says its block tile (TM × TN outputs) and how it stages (ASYNC: cp.async, v4/v5).
// put_a(s, k, m, v) / put_b(s, k, n, v) stage one element of the BK×BM / BK×BN tiles; compute(s, acc,
// rows, cols) adds the tile product into the accumulators (rows, cols: how many of the tile's rows
// and columns exist, M - m0 and N - n0, block-uniform); each(acc, f) calls f(row, col, value) for
// every accumulator the thread holds (row, col within the 64×64 tile).

// The 64×64 tile of v1-v5, staged through registers unless ASYNC.
struct Tile64 {
    static constexpr int TM = BM, TN = BN;
    static constexpr bool ASYNC = false, WIDE = false;
};

// v1: the fp32 SIMT baseline.
struct SimtF32 : Tile64 {
    using Smem = Tiles;
    struct Acc {
        float v[4][4];
    };
    static __device__ __forceinline__ void put_a(Smem& s, int k, int m, float v) { s.a[k][m] = v; }
    static __device__ __forceinline__ void put_b(Smem& s, int k, int n, float v) { s.b[k][n] = v; }
    static __device__ __forceinline__ void compute(const Smem& s, Acc& acc, int, int) {
        mma_tile(s, acc.v, threadIdx.x & 15, threadIdx.x >> 4);
    }
    template <class F>
    static __device__ __forceinline__ void each(const Acc& acc, F&& f) {
        const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
        for (int jj = 0; jj < 4; ++jj)
#pragma unroll
            for (int i = 0; i < 4; ++i) f(ty * 4 + i, tx * 4 + jj, acc.v[i][jj]);
    }
};

// A warp's place in the tile of the tensor-core variants: warps 2 (m) × 4 (n), each a slice of
// MI × NI mma tiles of 16×8 (v2-v5: 2×2, a 32×16 slice of the 64×64 tile; v6, v7: 4×4, 64×32 of 128×128).
template <int MI, int NI>
struct WarpTile {
    int g, q, wm, wn;
    __device__ __forceinline__ WarpTile() {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        g = lane >> 2;
        q = lane & 3;
        wm = (warp & 1) * 16 * MI;
        wn = (warp >> 1) * 8 * NI;
    }
    // Whether mma tile (mi, ni) has a row and a column inside the GEMM: the others are skipped
    // (warp-uniform, so every lane of a warp takes the same mma.sync), which matters for the thin
    // layers (cout 1 or 3, cin 3 or 6) whose tiles are mostly padding.
    __device__ __forceinline__ bool live(int mi, int ni, int rows, int cols) const {
        return wm + 16 * mi < rows && wn + 8 * ni < cols;
    }
    // The C/D fragment layout: element r of mma tile (mi, ni).
    template <class F>
    __device__ __forceinline__ void each(const float (&v)[MI][NI][4], F&& f) const {
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
            for (int ni = 0; ni < NI; ++ni)
#pragma unroll
                for (int r = 0; r < 4; ++r)
                    f(wm + 16 * mi + g + 8 * (r >> 1), wn + 8 * ni + 2 * q + (r & 1), v[mi][ni][r]);
    }
};
using WarpSlice = WarpTile<2, 2>;

// One m16n8k16 bf16 step of the warp's 2×2 mma tiles, shared by v3 and v5 (so both feed the
// same registers to the same mma sequence): a(m, kp) / b(n, kp) return the .b32 register holding
// k-pair kp (k = 2kp, 2kp + 1, the lower k in the low half) of tile row m of A / column n of B.
template <class RA, class RB>
__device__ __forceinline__ void bf16_step(const WarpSlice& w, float (&acc)[2][2][4], int rows, int cols, RA&& a,
                                          RB&& b) {
    static_assert(BK == 16, "one m16n8k16 step per tile");
    uint32_t fa[2][4], fb[2][2];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) {
        const int m = w.wm + 16 * mi + w.g;
        fa[mi][0] = a(m, w.q);
        fa[mi][1] = a(m + 8, w.q);
        fa[mi][2] = a(m, w.q + 4);
        fa[mi][3] = a(m + 8, w.q + 4);
    }
#pragma unroll
    for (int ni = 0; ni < 2; ++ni) {
        const int n = w.wn + 8 * ni + w.g;
        fb[ni][0] = b(n, w.q);
        fb[ni][1] = b(n, w.q + 4);
    }
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 2; ++ni)
            if (w.live(mi, ni, rows, cols)) mma_m16n8k16_bf16(acc[mi][ni], fa[mi], fb[ni], acc[mi][ni]);
}

// v2: tf32 tensor cores. Rows padded to 72 words: the fragment reads (k = q, m = g) hit 32 banks.
struct __align__(16) TilesTf32 {
    uint32_t a[BK][BM + 8];
    uint32_t b[BK][BN + 8];
};
struct MmaTf32 : Tile64 {
    using Smem = TilesTf32;
    struct Acc {
        float v[2][2][4];
    };
    static __device__ __forceinline__ void put_a(Smem& s, int k, int m, float v) { s.a[k][m] = f32_to_tf32(v); }
    static __device__ __forceinline__ void put_b(Smem& s, int k, int n, float v) { s.b[k][n] = f32_to_tf32(v); }
    static __device__ __forceinline__ void compute(const Smem& s, Acc& acc, int rows, int cols) {
        const WarpSlice w;
        if (!w.live(0, 0, rows, cols)) return;
#pragma unroll
        for (int k0 = 0; k0 < BK; k0 += 8) {
            uint32_t fa[2][4], fb[2][2];
#pragma unroll
            for (int mi = 0; mi < 2; ++mi) {
                const int m = w.wm + 16 * mi + w.g;
                fa[mi][0] = s.a[k0 + w.q][m];
                fa[mi][1] = s.a[k0 + w.q][m + 8];
                fa[mi][2] = s.a[k0 + w.q + 4][m];
                fa[mi][3] = s.a[k0 + w.q + 4][m + 8];
            }
#pragma unroll
            for (int ni = 0; ni < 2; ++ni) {
                const int n = w.wn + 8 * ni + w.g;
                fb[ni][0] = s.b[k0 + w.q][n];
                fb[ni][1] = s.b[k0 + w.q + 4][n];
            }
#pragma unroll
            for (int mi = 0; mi < 2; ++mi)
#pragma unroll
                for (int ni = 0; ni < 2; ++ni)
                    if (w.live(mi, ni, rows, cols)) mma_m16n8k8_tf32(acc.v[mi][ni], fa[mi], fb[ni], acc.v[mi][ni]);
        }
    }
    template <class F>
    static __device__ __forceinline__ void each(const Acc& acc, F&& f) {
        WarpSlice().each(acc.v, f);
    }
};

// v3: bf16 tensor cores. Shared words hold k-pairs (k even in the low half), the .b32 registers
// of the m16n8k16 fragments, so each fragment register is one 32-bit shared load.
struct __align__(16) TilesBf16 {
    uint32_t a[BK / 2][BM + 8];
    uint32_t b[BK / 2][BN + 8];
};
struct MmaBf16 : Tile64 {
    using Smem = TilesBf16;
    struct Acc {
        float v[2][2][4];
    };
    static __device__ __forceinline__ void put_a(Smem& s, int k, int m, float v) {
        store_bf16_half(&s.a[k >> 1][m], k & 1, f32_to_bf16(v));
    }
    static __device__ __forceinline__ void put_b(Smem& s, int k, int n, float v) {
        store_bf16_half(&s.b[k >> 1][n], k & 1, f32_to_bf16(v));
    }
    static __device__ __forceinline__ void compute(const Smem& s, Acc& acc, int rows, int cols) {
        const WarpSlice w;
        if (!w.live(0, 0, rows, cols)) return;
        bf16_step(
            w, acc.v, rows, cols, [&](int m, int kp) { return s.a[kp][m]; }, [&](int n, int kp) { return s.b[kp][n]; });
    }
    template <class F>
    static __device__ __forceinline__ void each(const Acc& acc, F&& f) {
        WarpSlice().each(acc.v, f);
    }
};

// v4: tf32 tensor cores fed by a 3-stage cp.async pipeline. The operands stay fp32 in shared
// memory, m- or n-major with k fast (rows of BK + 4 floats: 80 bytes, so the eight 16-byte rows of
// an ldmatrix phase fall in distinct banks); fragments come from ldmatrix.x4 and are rounded to
// tf32 (cvt.rna) as they are read. The operands and the mma sequence are v2's, so its results are
// v2's bit for bit; only the staging differs (no register round trip, two tiles in flight).
#define STAGES 3
struct __align__(16) TilesAsync {
    float a[STAGES][BM][BK + 4];
    float b[STAGES][BN][BK + 4];
};
// The staging of the cp.async variants (v4, v5).
struct AsyncStaging : Tile64 {
    static constexpr bool ASYNC = true;
    using Smem = TilesAsync;
    struct Acc {
        float v[2][2][4];
    };
    // Element (k, m) of stage `slot` from `src`, or zero when !valid (src: any global address then).
    static __device__ __forceinline__ void stage_a(Smem& s, int slot, int k, int m, const float* src, bool valid) {
        cp_async4(&s.a[slot][m][k], src, valid);
    }
    static __device__ __forceinline__ void stage_b(Smem& s, int slot, int k, int n, const float* src, bool valid) {
        cp_async4(&s.b[slot][n][k], src, valid);
    }
    template <class F>
    static __device__ __forceinline__ void each(const Acc& acc, F&& f) {
        WarpSlice().each(acc.v, f);
    }
};
struct MmaTf32Async : AsyncStaging {
    static __device__ __forceinline__ void to_tf32(uint32_t (&r)[4]) {
#pragma unroll
        for (int i = 0; i < 4; ++i) r[i] = f32_to_tf32(__uint_as_float(r[i]));
    }
    static __device__ __forceinline__ void compute(const Smem& s, int slot, Acc& acc, int rows, int cols) {
        const WarpSlice w;
        if (!w.live(0, 0, rows, cols)) return;
        const int l = threadIdx.x & 31;
#pragma unroll
        for (int k0 = 0; k0 < BK; k0 += 8) {
            // A: lanes 0-7 rows 0-7 (k0), 8-15 rows 8-15 (k0), 16-23 rows 0-7 (k0+4), 24-31 rows 8-15
            // (k0+4): a0..a3 of the m16n8k8 fragment. B: lanes 0-7 / 8-15 columns 0-7 at k0 / k0+4
            // (b0, b1 of mma tile ni = 0), 16-23 / 24-31 columns 8-15 (ni = 1).
            uint32_t fa[2][4], fb[4];
#pragma unroll
            for (int mi = 0; mi < 2; ++mi) {
                ldmatrix_x4(fa[mi], &s.a[slot][w.wm + 16 * mi + (l & 7) + 8 * ((l >> 3) & 1)][k0 + 4 * (l >> 4)]);
                to_tf32(fa[mi]);
            }
            ldmatrix_x4(fb, &s.b[slot][w.wn + (l & 7) + 8 * (l >> 4)][k0 + 4 * ((l >> 3) & 1)]);
            to_tf32(fb);
            const uint32_t b[2][2] = {{fb[0], fb[1]}, {fb[2], fb[3]}};
#pragma unroll
            for (int mi = 0; mi < 2; ++mi)
#pragma unroll
                for (int ni = 0; ni < 2; ++ni)
                    if (w.live(mi, ni, rows, cols)) mma_m16n8k8_tf32(acc.v[mi][ni], fa[mi], b[ni], acc.v[mi][ni]);
        }
    }
};

// v5: bf16 tensor cores fed by v4's pipeline. The m16n8k16 registers hold k-pairs (2q, 2q+1) of
// one row, adjacent floats in the k-fast fp32 tiles: each register is one 8-byte shared load,
// rounded and packed by cvt.rn.bf16x2 (no ldmatrix: its lanes get one 32-bit word per row, and
// taking the k-pairs in another order would change the sum's order and v3's bits). The operands,
// their pairing and the mma sequence are v3's (bf16_step), so its results are v3's bit for bit.
// Shared-memory banks at v4's row pitch of 20 floats: in each half-warp phase of the 8-byte loads (rows g..g+3,
// 8 words each) a quarter of the lanes meet 2-way, so it takes two wavefronts; a pitch of 24 would
// make them conflict-free but the n-fast cp.async writes of the fwd/dgrad B tiles 8-way (4 at 20).
struct MmaBf16Async : AsyncStaging {
    static __device__ __forceinline__ uint32_t pair(const float* p) {
        const float2 v = *reinterpret_cast<const float2*>(p);
        return pack_bf16x2(v.x, v.y);
    }
    static __device__ __forceinline__ void compute(const Smem& s, int slot, Acc& acc, int rows, int cols) {
        const WarpSlice w;
        if (!w.live(0, 0, rows, cols)) return;
        bf16_step(
            w, acc.v, rows, cols, [&](int m, int kp) { return pair(&s.a[slot][m][2 * kp]); },
            [&](int n, int kp) { return pair(&s.b[slot][n][2 * kp]); });
    }
};

// The operands of an implicit GEMM, as each impl gathers them from its tensors: A's rows are m,
// B's rows are the GEMM's columns n. `row(r)` is what a thread computes once for a row r it stages
// (r absolute; a row beyond the GEMM gives a state whose elements are all zero), and `at(row, k,
// p)` sets p to the global address of element (k, r) and returns true, or returns false where the
// element is zero (padding, out of range; p is then left as it was).
template <class R, class G>
struct Operand {
    R row;
    G at;
};
template <class R, class G>
__device__ __forceinline__ Operand<R, G> operand(R row, G at) {
    return {row, at};
}

// v6, v7: tensor cores on a 128×128 tile (4× v2/v3's outputs per block, twice the reuse of each
// staged element), 8 warps of 64×32 (4×4 mma tiles). The tiles hold rows of WWORDS .b32 words of
// k (m- or n-major): bf16 k-pairs for v6 (32 k a stage, two m16n8k16 steps), tf32 values for v7
// (16 k, two m16n8k8 steps). In both the fragment registers are words in the same places, so
// every fragment comes whole from ldmatrix.x4 (A: one per 16 rows; B: one per two n8 tiles): per
// mma a warp reads 1.5 shared-memory wavefronts, v5 6 (8-byte loads), v2 and v4 3. The operands are rounded (cvt.rn.bf16x2, cvt.rna) as
// they are staged, through registers into the other of two stages (one barrier per K-step). The
// mma steps take the k-words in the twin's order (v6: v3's bf16_step, v7: v2's k8 steps) and the
// split of K is the twin's (src/ops/conv/cuda.rs), so the results are v3's / v2's bit for bit. A
// stage's second half is skipped when it starts past the twin's last K-step, which never computed it.
// Blocks per SM they ask for: bf16 stages 16 floats a thread, and at 128 registers (two blocks)
// ptxas spills 144-280 bytes, so one (155-177 registers, 0 spills); tf32 stages 8 and spills 0-8
// bytes at 128, so two (16 warps per SM to hide the loads' latency instead of 8).
#define WIDE_BLOCKS_BF16 1
#define WIDE_BLOCKS_TF32 2
#define WWORDS 16
#define WPITCH (WWORDS + 4)  // words per tile row, so the eight 16-byte rows of an ldmatrix phase hit distinct banks
struct __align__(16) TilesWide {
    uint32_t a[2][128][WPITCH];
    uint32_t b[2][128][WPITCH];
};
// What a word of the tiles holds (KW values of k, rounded and packed by `word`) and the mma that
// multiplies 8 words of k.
struct WideBf16 {
    static constexpr int KW = 2;
    static __device__ __forceinline__ uint32_t word(const float (&v)[2]) { return pack_bf16x2(v[0], v[1]); }
    static __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
        mma_m16n8k16_bf16(d, a, b, d);
    }
};
struct WideTf32 {
    static constexpr int KW = 1;
    static __device__ __forceinline__ uint32_t word(const float (&v)[1]) { return f32_to_tf32(v[0]); }
    static __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
        mma_m16n8k8_tf32(d, a, b, d);
    }
};
template <class P>
struct MmaWide : P {
    static constexpr int TM = 128, TN = 128;
    static constexpr int WK = WWORDS * P::KW;  // k per stage
    static constexpr bool ASYNC = false, WIDE = true;
    using Smem = TilesWide;
    using Warp = WarpTile<4, 4>;
    struct Acc {
        float v[4][4][4];
    };
    // Adds stage `slot` into acc: `halves` (1 or 2, block-uniform) of its two mma steps.
    static __device__ __forceinline__ void compute(const Smem& s, int slot, Acc& acc, int halves, int rows, int cols) {
        const Warp w;
        if (!w.live(0, 0, rows, cols)) return;
        const int l = threadIdx.x & 31;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            if (h == halves) break;
            const int kw = 8 * h;
            // A: matrices (rows 0-7, words 0-3), (8-15, 0-3), (0-7, 4-7), (8-15, 4-7) = a0..a3. B: (n
            // 0-7, words 0-3), (0-7, 4-7) = b0, b1 of n8 tile 2·nj; (8-15, ·) those of tile 2·nj + 1.
            uint32_t fa[4][4], fb[4][2];
#pragma unroll
            for (int mi = 0; mi < 4; ++mi)
                ldmatrix_x4(fa[mi], &s.a[slot][w.wm + 16 * mi + (l & 7) + 8 * ((l >> 3) & 1)][kw + 4 * (l >> 4)]);
#pragma unroll
            for (int nj = 0; nj < 2; ++nj) {
                uint32_t r[4];
                ldmatrix_x4(r, &s.b[slot][w.wn + 16 * nj + (l & 7) + 8 * (l >> 4)][kw + 4 * ((l >> 3) & 1)]);
                fb[2 * nj][0] = r[0];
                fb[2 * nj][1] = r[1];
                fb[2 * nj + 1][0] = r[2];
                fb[2 * nj + 1][1] = r[3];
            }
#pragma unroll
            for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni)
                    if (w.live(mi, ni, rows, cols)) P::mma(acc.v[mi][ni], fa[mi], fb[ni]);
        }
    }
    template <class F>
    static __device__ __forceinline__ void each(const Acc& acc, F&& f) {
        Warp().each(acc.v, f);
    }
};
using MmaBf16Wide = MmaWide<WideBf16>;  // v6
using MmaTf32Wide = MmaWide<WideTf32>;  // v7

// What each thread of v1-v5 stages per BK-step: A elements (ak, am + dam·i) and B elements (bk +
// dbk·i, bn + dbn·i), i = 0..3, of the BK×BM / BK×BN tiles (k, then m or n, within the tile).
// A is always k-fast (16 consecutive k per row: the weights' rows, wgrad's pixels); B is k-fast
// too, or n-fast (64 consecutive columns per k: the im2col's pixels) so that the lanes of a warp
// read neighbouring addresses.
struct StageMap {
    int ak, am, dam;
    int bk, dbk, bn, dbn;
    static __device__ __forceinline__ StageMap of(bool b_kfast) {
        const int t = threadIdx.x;
        if (b_kfast) return StageMap{t & 15, t >> 4, 16, t & 15, 0, t >> 4, 16};
        return StageMap{t & 15, t >> 4, 16, t >> 6, 4, t & 63, 0};
    }
};

// The GEMM's main loop over [kbeg, kend) in BK-steps, shared by fwd, dgrad and wgrad, for the 64×64
// tile at (m0, n0) of which rows × cols exist. `base` is a valid global address (cp.async's source for
// zero-filled elements). v1-v3 (register staging): the next step's elements are loaded into
// registers during the tile math and stored (rounded) into shared memory after it. v4, v5
// (ASYNC): STAGES-1 steps in flight through cp.async; at step t, wait for its stage, issue step t +
// STAGES - 1 into the stage freed at step t - 1 (every warp is past that step's math: the
// barrier), then compute.
template <class V, bool B_KFAST, class OA, class OB>
__device__ __forceinline__ void mainloop64(typename V::Smem& sm, typename V::Acc& acc, int kbeg, int kend, int m0,
                                           int n0, int rows, int cols, const float* base, const OA& A, const OB& B) {
    const StageMap sp = StageMap::of(B_KFAST);
    // The thread's B rows, computed once: four when k-fast, else its one column. A's rows (a row
    // index in every impl) are computed where they are used: kept in registers they cost up to 17
    // more (v1's forward for sm_70).
    constexpr int NB = B_KFAST ? 4 : 1;
    decltype(B.row(0)) rb[NB];
#pragma unroll
    for (int i = 0; i < NB; ++i) rb[i] = B.row(n0 + sp.bn + sp.dbn * i);
    auto src_a = [&](int k0, int i, const float*& p) {
        const int k = k0 + sp.ak;
        return k < kend && A.at(A.row(m0 + sp.am + sp.dam * i), k, p);
    };
    auto src_b = [&](int k0, int i, const float*& p) {
        const int k = k0 + sp.bk + sp.dbk * i;
        return k < kend && B.at(rb[NB == 4 ? i : 0], k, p);
    };
    if (kbeg >= kend) return;
    if constexpr (V::ASYNC) {
        const int steps = (kend - kbeg + BK - 1) / BK;
        auto issue = [&](int slot, int k0) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const float *pa = base, *pb = base;
                const bool va = src_a(k0, i, pa), vb = src_b(k0, i, pb);
                V::stage_a(sm, slot, sp.ak, sp.am + sp.dam * i, pa, va);
                V::stage_b(sm, slot, sp.bk + sp.dbk * i, sp.bn + sp.dbn * i, pb, vb);
            }
        };
#pragma unroll
        for (int st = 0; st < STAGES - 1; ++st) {
            if (st < steps) issue(st, kbeg + st * BK);
            cp_async_commit();  // empty groups too: the wait below counts groups
        }
        for (int t = 0; t < steps; ++t) {
            cp_async_wait<STAGES - 2>();
            __syncthreads();
            const int nt = t + STAGES - 1;
            if (nt < steps) issue(nt % STAGES, kbeg + nt * BK);
            cp_async_commit();
            V::compute(sm, t % STAGES, acc, rows, cols);
        }
    } else {
        // __ldg: the addresses come out of the gathers without the kernels' __restrict__; the
        // operands are read-only for the whole kernel, so the loads may take the read-only path
        // and need not stay ordered with the shared-memory stores.
        float ra[4], rb[4];
        auto load = [&](int k0) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const float* pa = nullptr;
                ra[i] = src_a(k0, i, pa) ? __ldg(pa) : 0.0f;
            }
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const float* pb = nullptr;
                rb[i] = src_b(k0, i, pb) ? __ldg(pb) : 0.0f;
            }
        };
        load(kbeg);
        for (int k0 = kbeg; k0 < kend; k0 += BK) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                V::put_a(sm, sp.ak, sp.am + sp.dam * i, ra[i]);
                V::put_b(sm, sp.bk + sp.dbk * i, sp.bn + sp.dbn * i, rb[i]);
            }
            __syncthreads();
            if (k0 + BK < kend) load(k0 + BK);
            V::compute(sm, acc, rows, cols);
            __syncthreads();
        }
    }
}

// v6/v7's main loop over [kbeg, kend) in K-steps of V::WK, for the 128×128 tile at (m0, n0): per
// K-step each thread stages 8 words of A and 8 of B: two rows (64 apart) × four words (4 apart).
// The 32 stores of a warp for one (row, word) cover 8 consecutive rows × 4 consecutive words: 32
// distinct banks at the row pitch of 20 words. Its loads: a k-fast operand lays the 4 words along
// neighbouring lanes (4·KW adjacent floats of a row), an n-fast one the 8 rows (neighbouring pixels).
struct WideMap {
    int row, kp;  // the thread's first row and word within the tile
    static __device__ __forceinline__ WideMap of(bool kfast) {
        const int l = threadIdx.x & 31, w = threadIdx.x >> 5;
        return kfast ? WideMap{(l >> 2) + 8 * w, l & 3} : WideMap{(l & 7) + 8 * w, l >> 3};
    }
};
template <class V, bool B_KFAST, class OA, class OB>
__device__ __forceinline__ void mainloop_wide(typename V::Smem& sm, typename V::Acc& acc, int kbeg, int kend, int m0,
                                              int n0, int rows, int cols, const OA& A, const OB& B) {
    const WideMap ma = WideMap::of(true), mb = WideMap::of(B_KFAST);
    const decltype(A.row(0)) ra[2] = {A.row(m0 + ma.row), A.row(m0 + ma.row + 64)};
    const decltype(B.row(0)) rb[2] = {B.row(n0 + mb.row), B.row(n0 + mb.row + 64)};
    constexpr int KW = V::KW;
    float va[2][4][KW], vb[2][4][KW];
    auto load = [&](int k0) {
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int h = 0; h < KW; ++h) {
                    const float *pa = nullptr, *pb = nullptr;
                    const int ka = k0 + KW * (ma.kp + 4 * i) + h, kb = k0 + KW * (mb.kp + 4 * i) + h;
                    va[j][i][h] = ka < kend && A.at(ra[j], ka, pa) ? __ldg(pa) : 0.0f;
                    vb[j][i][h] = kb < kend && B.at(rb[j], kb, pb) ? __ldg(pb) : 0.0f;
                }
    };
    auto store = [&](int slot) {
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                sm.a[slot][ma.row + 64 * j][ma.kp + 4 * i] = V::word(va[j][i]);
                sm.b[slot][mb.row + 64 * j][mb.kp + 4 * i] = V::word(vb[j][i]);
            }
    };
    // Stage t + 1 is stored while the other warps may still compute on stage t; the barrier at the
    // end of step t - 1 ordered every read of its slot (step t - 1's) before these stores.
    constexpr int WK = V::WK;
    const int steps = (kend - kbeg + WK - 1) / WK;
    const int twin_end = kbeg + (kend - kbeg + BK - 1) / BK * BK;  // where the twin's last K-step ends
    load(kbeg);
    store(0);
    __syncthreads();
    for (int t = 0; t < steps; ++t) {
        const int k0 = kbeg + t * WK;
        if (t + 1 < steps) load(k0 + WK);
        V::compute(sm, t & 1, acc, k0 + WK / 2 < twin_end ? 2 : 1, rows, cols);
        if (t + 1 < steps) store((t + 1) & 1);
        __syncthreads();
    }
}


// The main loop of variant V.
template <class V, bool B_KFAST, class OA, class OB>
__device__ __forceinline__ void mainloop(typename V::Smem& sm, typename V::Acc& acc, int kbeg, int kend, int m0,
                                         int n0, int rows, int cols, const float* base, const OA& A, const OB& B) {
    if constexpr (V::WIDE) {
        if (kbeg < kend) mainloop_wide<V, B_KFAST>(sm, acc, kbeg, kend, m0, n0, rows, cols, A, B);
    } else {
        mainloop64<V, B_KFAST>(sm, acc, kbeg, kend, m0, n0, rows, cols, base, A, B);
    }
}


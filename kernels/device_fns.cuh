// Small warp-level device functions that need inline PTX: tf32/bf16 conversions and the tensor-core
// mma.sync shapes the conv kernels use (kernels/conv.cu, variants v2-v5), and v4/v5's cp.async
// and ldmatrix staging. This is the only kernels/ file allowed inline PTX (tests/emu.rs checks),
// because every function here also has a HOST version for the emulated device (src/device/emu/,
// no __CUDA_ARCH__), written from the PTX ISA ("Matrix Fragments for mma.m16n8k8 /
// mma.m16n8k16", "cp.async", "ldmatrix"), so the emulator moves the same data between the same
// lanes as the GPU:
//
//   groupID g = laneid >> 2, threadID_in_group q = laneid % 4
//   m16n8k8 .tf32   A (16×8, row):  a0 (g, q)  a1 (g+8, q)  a2 (g, q+4)  a3 (g+8, q+4)
//                   B (8×8, col):   b0 (k=q, n=g)  b1 (k=q+4, n=g)
//   m16n8k16 .bf16  A (16×16, row): 4 × .b32, each two bf16 (lower k in the low half):
//                                   reg0 (g, 2q..2q+1)  reg1 (g+8, 2q..)  reg2 (g, 2q+8..)  reg3 (g+8, 2q+8..)
//                   B (16×8, col):  reg0 (k=2q..2q+1, n=g)  reg1 (k=2q+8..2q+9, n=g)
//   C/D (16×8 f32, both shapes):    c0 (g, 2q)  c1 (g, 2q+1)  c2 (g+8, 2q)  c3 (g+8, 2q+1)
//
// The host mma gathers the warp's A and B fragments with one warp collective of the emulator
// (emu::warp_gather: every lane must take part, as .sync.aligned requires) and each lane computes
// its own four C elements. Products of tf32 or bf16 operands are exact in fp32; the host sums them and
// C in double and rounds once to fp32. The tensor core's own summation order and rounding of the
// fp32 accumulation are not documented, so GPU results may differ from the host's in the last few
// ulp of each k-step's sum (the tests' tolerances allow for that; the operand rounding is exact).
//
// The tensor-core instructions need sm_80+. Builds for older architectures still compile these
// kernels, with a trap in place of the instruction; the Rust side never selects them there.
#pragma once
#include "common.cuh"  // the fixed-width integer types (NVRTC has no C headers)
#if !defined(__CUDACC_RTC__)
#include <string.h>  // memcpy (a builtin under NVRTC)
#endif

// ---- rounding ----------------------------------------------------------------------------------

// fp32 → tf32 (cvt.rna.tf32.f32): round to nearest, ties away from zero, to 10 mantissa bits; the
// result is an fp32 bit pattern with the low 13 bits zero.
__device__ __forceinline__ uint32_t f32_to_tf32(float x) {
#if defined(__CUDA_ARCH__)
#if __CUDA_ARCH__ >= 800
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
#else
    __trap();
    return 0;
#endif
#else
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return (u & 0x007fffffu) ? 0x7fffffffu : u;  // NaN → canonical, ±inf kept
    return (u + 0x1000u) & 0xffffe000u;  // half an ulp of tf32 added to the magnitude, then truncated
#endif
}

// fp32 → bf16 bits (cvt.rn.bf16.f32): round to nearest, ties to even.
__device__ __forceinline__ uint16_t f32_to_bf16(float x) {
#if defined(__CUDA_ARCH__)
#if __CUDA_ARCH__ >= 800
    uint16_t r;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(x));
    return r;
#else
    __trap();
    return 0;
#endif
#else
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return (u & 0x007fffffu) ? 0x7fffu : (uint16_t)(u >> 16);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
#endif
}

// Two fp32 → one .b32 of two bf16 (cvt.rn.bf16x2.f32): lo in the low half, hi in the high half,
// each rounded as f32_to_bf16 (the k-pair registers of the m16n8k16 fragments).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
#if defined(__CUDA_ARCH__)
#if __CUDA_ARCH__ >= 800
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));  // first source → upper half
    return r;
#else
    __trap();
    return 0;
#endif
#else
    return (uint32_t)f32_to_bf16(lo) | ((uint32_t)f32_to_bf16(hi) << 16);
#endif
}

// Writes one bf16 into half `hi` (0: low, 1: high) of a shared .b32 word (memcpy: no aliasing).
__device__ __forceinline__ void store_bf16_half(uint32_t* word, int hi, uint16_t v) {
    memcpy(reinterpret_cast<char*>(word) + 2 * hi, &v, 2);
}

// ---- host helpers of the mma host versions -----------------------------------------------------
#if !defined(__CUDA_ARCH__)
namespace emu_mma {
inline int lane() {
    const unsigned lin = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    return (int)(lin & 31u);
}
inline uint64_t pack(uint32_t lo, uint32_t hi) { return (uint64_t)lo | ((uint64_t)hi << 32); }
inline uint32_t lo32(uint64_t v) { return (uint32_t)v; }
inline uint32_t hi32(uint64_t v) { return (uint32_t)(v >> 32); }
// A tf32 operand as the tensor core reads it: the low 13 bits are ignored.
inline double tf32_val(uint32_t bits) {
    bits &= 0xffffe000u;
    float f;
    memcpy(&f, &bits, 4);
    return (double)f;
}
// The warp's fragments of an mma, word w of lane l at all[l][w]: (a0, a2), (a1, a3), (b0, b1).
struct Fragments {
    uint64_t all[32][3];
    Fragments(const uint32_t (&a)[4], const uint32_t (&b)[2]) {
        const uint64_t mine[3] = {pack(a[0], a[2]), pack(a[1], a[3]), pack(b[0], b[1])};
        ::emu::warp_gather(0xffffffffu, mine, 3, &all[0][0], __FILE__, __LINE__);
    }
};
inline double bf16_val(uint32_t bits16) {
    const uint32_t u = bits16 << 16;
    float f;
    memcpy(&f, &u, 4);
    return (double)f;
}
// Lane's C/D elements i = 0..3 (rows g, g, g+8, g+8; cols 2q, 2q+1): c + A[row]·B[col] over K,
// exact products summed in double and rounded once (A, B: the lane's rows and columns, gathered).
template <int K>
inline void accumulate(float (&d)[4], const double (&A)[2][K], const double (&B)[2][K], const float (&c)[4]) {
    for (int i = 0; i < 4; ++i) {
        const int r = i >> 1, j = i & 1;
        double acc = (double)c[i];
        for (int k = 0; k < K; ++k) acc += A[r][k] * B[j][k];
        d[i] = (float)acc;
    }
}
}  // namespace emu_mma
#endif

// ---- mma.sync ----------------------------------------------------------------------------------

// D = A·B + C, A 16×8 tf32 (row), B 8×8 tf32 (col), C/D 16×8 fp32; fragments as in the table above.
__device__ __forceinline__ void mma_m16n8k8_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                 const float (&c)[4]) {
#if defined(__CUDA_ARCH__)
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
          "f"(c[3]));
#else
    __trap();
#endif
#else
    using namespace emu_mma;
    const int l = lane(), g = l >> 2, q = l & 3;
    const Fragments f(a, b);
    double A[2][8], B[2][8];  // A[r][k]: rows g, g+8; B[j][k]: cols 2q, 2q+1
    for (int s = 0; s < 4; ++s) {
        // Row g's k = s and s+4 are a0 and a2 of lane 4g+s; row g+8's are its a1 and a3.
        const uint64_t r0 = f.all[4 * g + s][0];
        const uint64_t r1 = f.all[4 * g + s][1];
        // Column n's k = s and s+4 are b0 and b1 of lane 4n+s.
        const uint64_t c0 = f.all[4 * (2 * q) + s][2];
        const uint64_t c1 = f.all[4 * (2 * q + 1) + s][2];
        A[0][s] = tf32_val(lo32(r0)), A[0][s + 4] = tf32_val(hi32(r0));
        A[1][s] = tf32_val(lo32(r1)), A[1][s + 4] = tf32_val(hi32(r1));
        B[0][s] = tf32_val(lo32(c0)), B[0][s + 4] = tf32_val(hi32(c0));
        B[1][s] = tf32_val(lo32(c1)), B[1][s + 4] = tf32_val(hi32(c1));
    }
    accumulate(d, A, B, c);
#endif
}

// D = A·B + C, A 16×16 bf16 (row), B 16×8 bf16 (col), C/D 16×8 fp32; fragments as in the table above.
__device__ __forceinline__ void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                  const float (&c)[4]) {
#if defined(__CUDA_ARCH__)
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
          "f"(c[3]));
#else
    __trap();
#endif
#else
    using namespace emu_mma;
    const int l = lane(), g = l >> 2, q = l & 3;
    const Fragments f(a, b);
    double A[2][16], B[2][16];
    for (int s = 0; s < 4; ++s) {
        // Lane 4g+s holds row g's k = 2s, 2s+1 (reg0) and 2s+8, 2s+9 (reg2); row g+8's in reg1, reg3.
        const uint64_t r0 = f.all[4 * g + s][0];
        const uint64_t r1 = f.all[4 * g + s][1];
        // Lane 4n+s holds column n's k = 2s, 2s+1 (reg0) and 2s+8, 2s+9 (reg1).
        const uint64_t c0 = f.all[4 * (2 * q) + s][2];
        const uint64_t c1 = f.all[4 * (2 * q + 1) + s][2];
        const uint64_t v[4] = {r0, r1, c0, c1};
        double* dst[4] = {A[0], A[1], B[0], B[1]};
        for (int t = 0; t < 4; ++t) {
            const uint32_t lo = lo32(v[t]), hi = hi32(v[t]);
            dst[t][2 * s] = bf16_val(lo & 0xffffu), dst[t][2 * s + 1] = bf16_val(lo >> 16);
            dst[t][2 * s + 8] = bf16_val(hi & 0xffffu), dst[t][2 * s + 9] = bf16_val(hi >> 16);
        }
    }
    accumulate(d, A, B, c);
#endif
}

// ---- cp.async and ldmatrix (v4/v5's staging) ----------------------------------------------------
// cp.async copies global → shared without passing through registers; the copies a thread issues
// between two commits form a group, and cp.async.wait_group N waits until at most the N newest
// groups are still in flight. ldmatrix.x4 loads four 8×8 matrices of 16-bit elements from shared
// memory, lane 8i+r giving the address of row r of matrix i (16 bytes, 16-byte aligned); lane l
// receives the 32-bit word l%4 of row l/4 of each matrix. With fp32 data each word is one float,
// so an x4 load is the tf32 A fragment (rows g, g+8 × k = q, q+4) or two B fragments.
//
// Host versions: a copy's source is read at issue and its destination is poisoned (all ones, a
// NaN) until the cp.async.wait_group that completes its group, where it lands. A kernel that reads
// a stage before waiting for it computes with NaN; one that overwrites a stage other warps may
// still read races with them at issue (racecheck). ldmatrix gathers the row addresses with one
// warp collective, so the whole warp must take part.
#if defined(__CUDA_ARCH__)
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
    uint32_t r;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
    return r;
}
#endif

// 4 bytes from global `src` to shared `dst`; when !valid the destination is zero-filled and src is
// not read (it must still be a global address: pass the tensor's base).
__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool valid) {
#if defined(__CUDA_ARCH__)
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(smem_u32(dst)), "l"(src), "r"(valid ? 4 : 0)
                 : "memory");
#else
    __trap();
#endif
#else
    ::emu::AsyncCopies& c = ::emu::cur_thread->cp;
    if (c.n == c.CAP || ((uintptr_t)dst & 3u) || (valid && ((uintptr_t)src & 3u))) __trap();  // too many in flight / misaligned
    ::emu::AsyncCopy& r = c.q[c.n++];
    r.dst = dst;
    r.bytes = 4;
    r.group = c.committed;
    if (valid) memcpy(r.data, src, 4);
    else memset(r.data, 0, 4);
    memset(dst, 0xff, 4);
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__)
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;" ::: "memory");
#else
    __trap();
#endif
#else
    ++::emu::cur_thread->cp.committed;
#endif
}

// Waits until at most the N newest committed groups are in flight (copies not yet committed are
// not waited for).
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__)
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
#else
    __trap();
#endif
#else
    ::emu::AsyncCopies& c = ::emu::cur_thread->cp;
    int kept = 0;
    for (int i = 0; i < c.n; ++i) {
        ::emu::AsyncCopy& r = c.q[i];
        if (r.group + (uint32_t)N >= c.committed) {
            c.q[kept++] = r;
            continue;
        }
        // Constant sizes: the compiler emits plain (sanitizer-instrumented) stores; a libc memcpy
        // call is not seen by racecheck (TSan ignores interceptors called from these modules).
        switch (r.bytes) {
            case 4: memcpy(r.dst, r.data, 4); break;
            case 8: memcpy(r.dst, r.data, 8); break;
            default: memcpy(r.dst, r.data, 16); break;
        }
    }
    c.n = kept;
#endif
}

// Four 8×8 b16 matrices from shared memory (see above): r[i] = word (lane % 4) of row (lane / 4) of
// matrix i, whose row addresses come from lanes 8i..8i+7.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
#if defined(__CUDA_ARCH__)
#if __CUDA_ARCH__ >= 800
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(row)));
#else
    __trap();
#endif
#else
    const int l = emu_mma::lane();
    if ((uintptr_t)row & 15u) __trap();  // rows must be 16-byte aligned
    const uint64_t mine = (uint64_t)(uintptr_t)row;
    uint64_t rows[32];
    ::emu::warp_gather(0xffffffffu, &mine, 1, rows, __FILE__, __LINE__);
    for (int i = 0; i < 4; ++i)
        memcpy(&r[i], reinterpret_cast<const char*>((uintptr_t)rows[8 * i + (l >> 2)]) + 4 * (l & 3), 4);
#endif
}

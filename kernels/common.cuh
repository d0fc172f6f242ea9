// Shared helpers for the pix2pix kernels. Every kernel is extern "C" (unmangled names, looked up by
// src/device/cuda.rs) and takes plain pointers plus sizes, or a #[repr(C)] struct mirrored in Rust.
// Compiled with -O3 -lineinfo and WITHOUT --use_fast_math: results are compared with the fp32 CPU
// reference at 1e-5, so expf/tanhf/logf are the accurate versions and no FMA contraction is
// assumed anywhere it would matter (it is allowed: nvcc contracts a*b+c by default, as the CPU
// compiler may not; the 1e-5 bounds absorb one rounding per op).
#pragma once
#include <stdint.h>

#define KERNEL extern "C" __global__

// Grid-stride loop over [0, n).
#define GRID_STRIDE(i, n)                                                                          \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n);       \
         i += (long long)gridDim.x * blockDim.x)

// SplitMix64 finaliser (Steele, Lea, Flood 2014; the mixer of java.util.SplittableRandom).
// Identical to the CPU's: dropout masks are a pure function of (seed, index).
__device__ __forceinline__ uint64_t splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Block-wide sum of one double per thread; every thread gets the result. blockDim.x must be a
// multiple of 32 and at most 1024. The reduction order is fixed (warp shuffles, then warp 0), so
// results are reproducible run to run.
__device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double block_sum(double v) {
    __shared__ double partial[32];
    __shared__ double total;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();  // partial[] may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        double t = lane < nwarps ? partial[lane] : 0.0;
        t = warp_sum(t);
        if (lane == 0) total = t;
    }
    __syncthreads();
    return total;
}

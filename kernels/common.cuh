// Shared helpers for the pix2pix kernels. Every kernel is extern "C" (unmangled names, looked up by
// src/device/cuda.rs) and takes plain pointers plus sizes, or a #[repr(C)] struct mirrored in Rust.
//
// Rounding: build.rs compiles with -O3 -lineinfo -fmad=false and WITHOUT --use_fast_math, so every
// a*b+c written in plain C++ is rounded twice, exactly as the CPU reference (Rust never contracts
// to FMA) does; elementwise kernels therefore match the CPU bit for bit except where a libm
// function (expf, tanhf, log1p) is involved. Hot loops that want FMA (the conv GEMMs) call fmaf()
// explicitly. sqrtf and '/' are IEEE-rounded (-prec-sqrt/-prec-div default to true).
#pragma once
#ifdef __CUDACC_RTC__
// NVRTC (build.rs's CUDA 12 PTX) has no C headers; these are the widths of every CUDA target.
typedef unsigned long long uint64_t;
typedef unsigned int uint32_t;
typedef unsigned short uint16_t;
typedef long long int64_t;
typedef int int32_t;
#else
#include <stdint.h>
#endif

#define KERNEL extern "C" __global__

// Grid-stride loop over [0, n).
#define GRID_STRIDE(i, n)                                                                          \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n);       \
         i += (long long)gridDim.x * blockDim.x)

// The counter-based hash behind dropout masks: SplitMix64's finaliser of seed + (i+1)*golden.
// Identical to `splitmix` in src/ops/activation.rs: masks are a pure function of (seed, index).
__device__ __forceinline__ uint64_t splitmix(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1ull) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Uniform in [0, 1) with 24 bits, from the top bits of the hash (as `uniform` on the CPU).
__device__ __forceinline__ float uniform01(uint64_t seed, uint64_t i) {
    return (float)(splitmix(seed, i) >> 40) * (1.0f / 16777216.0f);
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

// Activation kinds (mirrored by `act_code` in src/ops/activation.rs): -1 none (the identity: a
// norm without a fused activation), 0 LeakyReLU(slope), 1 ReLU, 2 Tanh, 3 Sigmoid. Shared by
// kernels/activation.cu and the norms' fused epilogue (kernels/norm.cu: kinds -1, 0, 1 only).
__device__ __forceinline__ float act_fwd(int kind, float slope, float x) {
    switch (kind) {
        case -1: return x;
        case 0: return x > 0.0f ? x : x * slope;
        case 1: return fmaxf(x, 0.0f);
        case 2: return tanhf(x);
        default: return 1.0f / (1.0f + expf(-x));
    }
}

// d/dx from the forward input x (LeakyReLU, ReLU) or output y (Tanh, Sigmoid). LeakyReLU's and
// ReLU's output has the sign of their input, so either may be passed as x for them.
__device__ __forceinline__ float act_grad(int kind, float slope, float x, float y) {
    switch (kind) {
        case -1: return 1.0f;
        case 0: return x > 0.0f ? 1.0f : slope;
        case 1: return x > 0.0f ? 1.0f : 0.0f;
        case 2: return 1.0f - y * y;
        default: return y * (1.0f - y);
    }
}

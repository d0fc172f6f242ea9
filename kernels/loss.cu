// Losses with their reductions, twin of src/ops/loss.rs. Deterministic two-stage reduction with no
// float atomics: stage 1 runs a grid whose size depends only on n (LOSS_BLOCKS in Rust), each block
// writes one partial sum (f64) and, when asked, the gradient of its elements; stage 2 is one block
// summing the partials in a fixed order and writing weight * mean into the loss slot on the device.
// Kinds (mirrored in Rust): 0 BCE-with-logits vs a constant target, 1 MSE vs a constant target,
// 2 L1 vs a tensor y.
#include "common.cuh"

__device__ __forceinline__ double loss_value(int kind, float v, float target, float yv) {
    switch (kind) {
        case 0: {  // max(x,0) - x*t + log(1 + e^-|x|), in f64 as the CPU
            const double x = (double)v;
            return fmax(x, 0.0) - x * (double)target + log1p(exp(-fabs(x)));
        }
        case 1: {
            const double d = (double)(v - target);
            return d * d;
        }
        default: return fabs((double)v - (double)yv);
    }
}

// s = grad_weight / n (f32, computed on the host as the CPU does).
__device__ __forceinline__ float loss_grad(int kind, float v, float target, float yv, float s) {
    switch (kind) {
        case 0: return s * (1.0f / (1.0f + expf(-v)) - target);
        case 1: return s * 2.0f * (v - target);
        default: return v > yv ? s : (v < yv ? -s : 0.0f);
    }
}

// y is read only for kind 2 (pass x otherwise); dx is written only when has_dx.
KERNEL void loss_partial(const float* __restrict__ x, const float* __restrict__ y, float* __restrict__ dx,
                         double* __restrict__ partial, long long n, int kind, float target, float s, int has_dx) {
    double acc = 0.0;
    GRID_STRIDE(i, n) {
        const float v = x[i];
        const float yv = kind == 2 ? y[i] : 0.0f;
        acc += loss_value(kind, v, target, yv);
        if (has_dx) dx[i] = loss_grad(kind, v, target, yv, s);
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// One block: out[0] = (float)(weight * sum(partial[0..count]) / n).
KERNEL void loss_final(const double* __restrict__ partial, int count, long long n, float weight,
                       float* __restrict__ out) {
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
    acc = block_sum(acc);
    if (threadIdx.x == 0) out[0] = (float)((double)weight * acc / (double)n);
}

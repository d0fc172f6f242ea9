// Data movement: fill, and the channel copy behind copy/concat/split. Twin of src/ops/tensor.rs.
#include "common.cuh"

KERNEL void tensor_fill(float* __restrict__ y, long long n, float v) {
    GRID_STRIDE(i, n) y[i] = v;
}

// For every sample b < n: dst[b, dst_c0 + c, :] (+)= src[b, src_c0 + c, :] for c < count.
// src has src_c channels, dst has dst_c channels, both `hw` elements per plane.
KERNEL void copy_channels(const float* __restrict__ src, float* __restrict__ dst, int n, int src_c, int dst_c,
                          int src_c0, int dst_c0, int count, long long hw, int accumulate) {
    const long long per_sample = (long long)count * hw;
    GRID_STRIDE(i, (long long)n * per_sample) {
        const long long b = i / per_sample, r = i - b * per_sample;
        const float v = src[(b * src_c + src_c0) * hw + r];
        float* d = &dst[(b * dst_c + dst_c0) * hw + r];
        *d = accumulate ? *d + v : v;
    }
}

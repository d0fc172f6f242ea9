// Fused Adam over a network's flat parameter buffer (one launch per network). Twin of
// src/ops/adam.rs; PyTorch semantics (torch.optim.Adam, no weight decay, no amsgrad). The scalar
// factors are computed on the host in f64 and rounded to f32, exactly as the CPU path does; they
// are read from device memory (written before each step), so a step captured as a CUDA graph
// replays with the current step's values.
#include "common.cuh"

// Mirrored by `AdamArgs` in src/ops/adam.rs (#[repr(C)]).
struct AdamArgs {
    unsigned long long n;
    float one_m_b1;  // 1 - beta1
    float b2;        // beta2
    float one_m_b2;  // 1 - beta2
    float eps;
};

// torch.lerp for f32: from the nearer end, as ATen (and `lerp` in adam.rs) does.
__device__ __forceinline__ float lerp_aten(float start, float end, float w) {
    return fabsf(w) < 0.5f ? start + w * (end - start) : end - (end - start) * (1.0f - w);
}

KERNEL void adam_update(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                        float* __restrict__ v, AdamArgs a, const float* __restrict__ factors) {
    const float neg_step = factors[0];  // -lr / (1 - beta1^t)
    const float bc2_sqrt = factors[1];  // sqrt(1 - beta2^t)
    GRID_STRIDE(i, a.n) {
        const float gi = g[i];
        const float mi = lerp_aten(m[i], gi, a.one_m_b1);
        const float vi = v[i] * a.b2 + a.one_m_b2 * gi * gi;
        const float denom = sqrtf(vi) / bc2_sqrt + a.eps;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] + neg_step * mi / denom;
    }
}

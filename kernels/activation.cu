// Elementwise activations, dropout and the elementwise product. Twin of src/ops/activation.rs.
// Activation kinds (mirrored by `act_code` in Rust): 0 LeakyReLU(slope), 1 ReLU, 2 Tanh, 3 Sigmoid.
#include "common.cuh"

__device__ __forceinline__ float act_fwd(int kind, float slope, float x) {
    switch (kind) {
        case 0: return x > 0.0f ? x : x * slope;
        case 1: return fmaxf(x, 0.0f);
        case 2: return tanhf(x);
        default: return 1.0f / (1.0f + expf(-x));
    }
}

// d/dx from the forward input x (LeakyReLU, ReLU) or output y (Tanh, Sigmoid).
__device__ __forceinline__ float act_grad(int kind, float slope, float x, float y) {
    switch (kind) {
        case 0: return x > 0.0f ? 1.0f : slope;
        case 1: return x > 0.0f ? 1.0f : 0.0f;
        case 2: return 1.0f - y * y;
        default: return y * (1.0f - y);
    }
}

KERNEL void act_forward(const float* __restrict__ x, float* __restrict__ y, long long n, int kind, float slope) {
    GRID_STRIDE(i, n) y[i] = act_fwd(kind, slope, x[i]);
}

// x and y may alias (an in-place forward keeps only one of them); dx may alias dy.
KERNEL void act_backward(const float* x, const float* y, const float* dy, float* dx, long long n, int kind,
                         float slope) {
    GRID_STRIDE(i, n) dx[i] = act_grad(kind, slope, x[i], y[i]) * dy[i];
}

// Inverted dropout: mask = uniform(seed, i) >= p ? scale : 0, y = x * mask. `scale` = 1/(1-p) as
// the CPU computes it in f32, passed in so both sides use the same rounded value. The seed is read
// from device memory (written before each step), so a captured step replays with new masks.
KERNEL void dropout_forward(const float* __restrict__ x, float* __restrict__ y, float* __restrict__ mask,
                            long long n, const unsigned long long* __restrict__ seed_ptr, float p, float scale) {
    const unsigned long long seed = *seed_ptr;
    GRID_STRIDE(i, n) {
        const float m = uniform01(seed, (uint64_t)i) >= p ? scale : 0.0f;
        mask[i] = m;
        y[i] = x[i] * m;
    }
}

// out = a * b (out may alias either input).
KERNEL void mul_forward(const float* a, const float* b, float* out, long long n) {
    GRID_STRIDE(i, n) out[i] = a[i] * b[i];
}

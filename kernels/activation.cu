// Elementwise activations, dropout and the elementwise product. Twin of src/ops/activation.rs.
// Activation kinds and their functions: kernels/common.cuh (act_fwd, act_grad).
#include "common.cuh"

KERNEL void act_forward(const float* __restrict__ x, float* __restrict__ y, long long n, int kind, float slope) {
    GRID_STRIDE(i, n) y[i] = act_fwd(kind, slope, x[i]);
}

// x and y may alias (an in-place forward keeps only one of them); dx may alias dy.
KERNEL void act_backward(const float* x, const float* y, const float* dy, float* dx, long long n, int kind,
                         float slope) {
    GRID_STRIDE(i, n) dx[i] = act_grad(kind, slope, x[i], y[i]) * dy[i];
}

// y[b, c0 + c, :] = act(x[b, c, :]) for c < x_c (y has y_c channels): an activation whose output
// is a part of a channel concatenation, written straight into it (the U-Net's ReLU on its concat).
KERNEL void act_forward_into(const float* __restrict__ x, float* __restrict__ y, int n, int x_c, int y_c, int c0,
                             long long hw, int kind, float slope) {
    const long long per_sample = (long long)x_c * hw;
    GRID_STRIDE(i, (long long)n * per_sample) {
        const long long b = i / per_sample, r = i - b * per_sample;
        y[(b * y_c + c0) * hw + r] = act_fwd(kind, slope, x[i]);
    }
}

// dx[b, c, :] = act'(y)·dy at [b, c0 + c, :] of the activation's output y and its gradient dy
// (y_c channels each), c < dx_c: the backward of act_forward_into, the gradient from the output.
KERNEL void act_backward_from(const float* __restrict__ y, const float* __restrict__ dy, float* __restrict__ dx,
                              int n, int dx_c, int y_c, int c0, long long hw, int kind, float slope) {
    const long long per_sample = (long long)dx_c * hw;
    GRID_STRIDE(i, (long long)n * per_sample) {
        const long long b = i / per_sample, r = i - b * per_sample;
        const long long j = (b * y_c + c0) * hw + r;
        dx[i] = act_grad(kind, slope, y[j], y[j]) * dy[j];
    }
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

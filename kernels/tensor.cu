// Data movement: fill, add, the channel copy behind copy/concat/split, and reflection padding.
// Twin of src/ops/tensor.rs.
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

// The image pool's copies for one batch (src/models/image_pool.rs): for each sample b in order,
// out[b] = src >= 0 ? pool[src] : fake[b], then pool[store] = fake[b] when store >= 0, with
// (src, store) = plan[2b], plan[2b + 1]. Each thread walks the samples in order for its elements,
// so a sample sees the stores of the samples before it, as the reference's per-image loop does.
// The plan is read from device memory (written before the step), so a captured step replays it.
KERNEL void pool_exchange(const float* __restrict__ fake, float* __restrict__ pool, float* __restrict__ out,
                          const int* __restrict__ plan, int n, long long chw) {
    GRID_STRIDE(e, chw) {
        for (int b = 0; b < n; ++b) {
            const int src = plan[2 * b], store = plan[2 * b + 1];
            const float v = fake[b * chw + e];
            out[b * chw + e] = src >= 0 ? pool[src * chw + e] : v;
            if (store >= 0) pool[store * chw + e] = v;
        }
    }
}

// out = a + b (the residual add; out may alias either input).
KERNEL void tensor_add(const float* a, const float* b, float* out, long long n) {
    GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

// Reflection padding (PyTorch `reflect`), twin of the CPU code in src/ops/tensor.rs. h, w: the
// unpadded plane; the padded one is (h + 2p) × (w + 2p); pad < h and pad < w (checked in Rust).
__device__ __forceinline__ int reflect_index(int o, int n, int p) {
    const int t = o - p;
    return t < 0 ? -t : (t > n - 1 ? 2 * (n - 1) - t : t);
}

// The padded positions that read input index i, ascending; returns how many (1 to 3).
__device__ __forceinline__ int reflect_sources(int i, int n, int p, int (&o)[3]) {
    int k = 0;
    if (i >= 1 && i <= p) o[k++] = p - i;
    o[k++] = i + p;
    if (i + 2 <= n && i + 1 + p >= n) o[k++] = 2 * (n - 1) - i + p;
    return k;
}

KERNEL void reflect_pad_forward(const float* __restrict__ x, float* __restrict__ y, long long planes, int h,
                                int w, int p, int accumulate_unused) {
    const int ho = h + 2 * p, wo = w + 2 * p;
    const long long phw = (long long)ho * wo;
    GRID_STRIDE(i, planes * phw) {
        const long long plane = i / phw;
        const int r = (int)(i - plane * phw), oh = r / wo, ow = r - oh * wo;
        y[i] = x[plane * h * w + (long long)reflect_index(oh, h, p) * w + reflect_index(ow, w, p)];
    }
}

// dx[i] (+)= sum of dy over the padded positions that read i, rows then columns ascending, in f32
// (the CPU's order, so the result is identical). A gather: one writer per element, no atomics.
KERNEL void reflect_pad_backward(const float* __restrict__ dy, float* __restrict__ dx, long long planes, int h,
                                 int w, int p, int accumulate) {
    const int ho = h + 2 * p, wo = w + 2 * p;
    const long long hw = (long long)h * w;
    GRID_STRIDE(i, planes * hw) {
        const long long plane = i / hw;
        const int r = (int)(i - plane * hw), ih = r / w, iw = r - ih * w;
        int rows[3], cols[3];
        const int nr = reflect_sources(ih, h, p, rows), nc = reflect_sources(iw, w, p, cols);
        const float* src = dy + plane * ho * wo;
        float acc = 0.0f;
        for (int a = 0; a < nr; ++a)
            for (int b = 0; b < nc; ++b) acc += src[(long long)rows[a] * wo + cols[b]];
        dx[i] = accumulate ? dx[i] + acc : acc;
    }
}

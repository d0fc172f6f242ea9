// Batch and instance normalisation, twin of src/ops/norm.rs (PyTorch semantics).
// Train mode: one block per channel, two passes in f64 (mean, then the centred sum of squares),
// block reductions in a fixed order (reproducible), no atomics. Eval mode: elementwise.
#include "common.cuh"

// Mirrored by `BnArgs` in src/ops/norm.rs (#[repr(C)]). Offsets index the flat parameter buffer
// (gamma, beta; gradients at the same offsets) and the flat buffer storage (running stats).
struct BnArgs {
    long long hw;  // H*W
    int n;         // batch
    int c;         // channels
    int gamma_off, beta_off, rmean_off, rvar_off;
    float eps, momentum;
    int has_grads;
    int pad_;
};

// Element e of channel c (e < n*hw) of an NCHW tensor.
__device__ __forceinline__ long long bn_index(const BnArgs& a, int c, long long e) {
    const long long b = e / a.hw;
    return (b * a.c + c) * a.hw + (e - b * a.hw);
}

KERNEL void bn_forward_train(const float* __restrict__ x, float* __restrict__ y, const float* __restrict__ params,
                             float* __restrict__ buffers, float* __restrict__ saved_mean,
                             float* __restrict__ saved_invstd, BnArgs a) {
    const int c = blockIdx.x;
    const long long m = (long long)a.n * a.hw;
    double s = 0.0;
    for (long long e = threadIdx.x; e < m; e += blockDim.x) s += (double)x[bn_index(a, c, e)];
    const double mean = block_sum(s) / (double)m;
    double ss = 0.0;
    for (long long e = threadIdx.x; e < m; e += blockDim.x) {
        const double d = (double)x[bn_index(a, c, e)] - mean;
        ss += d * d;
    }
    ss = block_sum(ss);
    const float mu = (float)mean;
    const float is = (float)(1.0 / sqrt(ss / (double)m + (double)a.eps));
    if (threadIdx.x == 0) {
        saved_mean[c] = mu;
        saved_invstd[c] = is;
        const double mom = (double)a.momentum;
        float* rm = &buffers[a.rmean_off + c];
        float* rv = &buffers[a.rvar_off + c];
        *rm = (float)((1.0 - mom) * (double)*rm + mom * mean);
        *rv = (float)((1.0 - mom) * (double)*rv + mom * ss / (double)(m - 1));
    }
    const float g = params[a.gamma_off + c], bb = params[a.beta_off + c];
    for (long long e = threadIdx.x; e < m; e += blockDim.x) {
        const long long i = bn_index(a, c, e);
        y[i] = (x[i] - mu) * is * g + bb;
    }
}

KERNEL void bn_forward_eval(const float* __restrict__ x, float* __restrict__ y, const float* __restrict__ params,
                            const float* __restrict__ buffers, BnArgs a) {
    GRID_STRIDE(i, (long long)a.n * a.c * a.hw) {
        const int c = (int)((i / a.hw) % a.c);
        const float rm = buffers[a.rmean_off + c];
        const float is = 1.0f / sqrtf(buffers[a.rvar_off + c] + a.eps);
        y[i] = (x[i] - rm) * is * params[a.gamma_off + c] + params[a.beta_off + c];
    }
}

// dx = g*is/M * (M*dy - sum(dy) - xhat*sum(dy*xhat)) in f64; adds dgamma = sum(dy*xhat) and
// dbeta = sum(dy) into grads (at the parameter offsets) when has_grads. grads may be a dummy
// pointer otherwise. One block per channel, so each gradient slot has exactly one writer.
KERNEL void bn_backward(const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ dx,
                        const float* __restrict__ params, float* __restrict__ grads,
                        const float* __restrict__ saved_mean, const float* __restrict__ saved_invstd, BnArgs a) {
    const int c = blockIdx.x;
    const long long m = (long long)a.n * a.hw;
    const double mu = (double)saved_mean[c], is = (double)saved_invstd[c];
    double sdy = 0.0, sdyx = 0.0;
    for (long long e = threadIdx.x; e < m; e += blockDim.x) {
        const long long i = bn_index(a, c, e);
        const double d = (double)dy[i];
        sdy += d;
        sdyx += d * ((double)x[i] - mu) * is;
    }
    sdy = block_sum(sdy);
    sdyx = block_sum(sdyx);
    const double md = (double)m;
    const double k = (double)params[a.gamma_off + c] * is / md;
    for (long long e = threadIdx.x; e < m; e += blockDim.x) {
        const long long i = bn_index(a, c, e);
        const double xhat = ((double)x[i] - mu) * is;
        dx[i] = (float)(k * (md * (double)dy[i] - sdy - xhat * sdyx));
    }
    if (a.has_grads && threadIdx.x == 0) {
        grads[a.gamma_off + c] += (float)sdyx;
        grads[a.beta_off + c] += (float)sdy;
    }
}

// ------------------------------------------------------------------------------------------------
// InstanceNorm2d, affine off (CycleGAN's): one block per (sample, channel) plane of hw elements,
// biased variance, two passes in f64 as the CPU; the same in train and eval mode.
KERNEL void in_forward(const float* __restrict__ x, float* __restrict__ y, float* __restrict__ saved_mean,
                       float* __restrict__ saved_invstd, long long planes, long long hw, float eps) {
    const long long plane = blockIdx.x;
    if (plane >= planes) return;  // uniform over the block
    const float* src = x + plane * hw;
    double s = 0.0;
    for (long long e = threadIdx.x; e < hw; e += blockDim.x) s += (double)src[e];
    const double mean = block_sum(s) / (double)hw;
    double ss = 0.0;
    for (long long e = threadIdx.x; e < hw; e += blockDim.x) {
        const double d = (double)src[e] - mean;
        ss += d * d;
    }
    ss = block_sum(ss);
    const float mu = (float)mean;
    const float is = (float)(1.0 / sqrt(ss / (double)hw + (double)eps));
    if (threadIdx.x == 0) {
        saved_mean[plane] = mu;
        saved_invstd[plane] = is;
    }
    float* out = y + plane * hw;
    for (long long e = threadIdx.x; e < hw; e += blockDim.x) out[e] = (src[e] - mu) * is;
}

// dx = is/M * (M*dy - sum(dy) - xhat*sum(dy*xhat)) per plane, in f64.
KERNEL void in_backward(const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ dx,
                        const float* __restrict__ saved_mean, const float* __restrict__ saved_invstd,
                        long long planes, long long hw) {
    const long long plane = blockIdx.x;
    if (plane >= planes) return;  // uniform over the block
    const float *xs = x + plane * hw, *ds = dy + plane * hw;
    const double mu = (double)saved_mean[plane], is = (double)saved_invstd[plane];
    double sdy = 0.0, sdyx = 0.0;
    for (long long e = threadIdx.x; e < hw; e += blockDim.x) {
        const double d = (double)ds[e];
        sdy += d;
        sdyx += d * ((double)xs[e] - mu) * is;
    }
    sdy = block_sum(sdy);
    sdyx = block_sum(sdyx);
    const double m = (double)hw;
    float* out = dx + plane * hw;
    for (long long e = threadIdx.x; e < hw; e += blockDim.x) {
        const double xhat = ((double)xs[e] - mu) * is;
        out[e] = (float)(is / m * (m * (double)ds[e] - sdy - xhat * sdyx));
    }
}

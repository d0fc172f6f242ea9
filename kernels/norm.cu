// Batch and instance normalisation, twin of src/ops/norm.rs (PyTorch semantics).
// Train mode: two passes in f64 (mean, then the centred sum of squares), block reductions in a
// fixed order (reproducible), no atomics. Eval mode: elementwise.
// Every norm may apply the activation that follows it in the networks (LeakyReLU or ReLU: `act`,
// `slope`, kinds of common.cuh) as it writes y, and its backward then takes the gradient of the
// activation's output and that output (`act_y`), so norm → activation is one pass each way, with
// the same rounding as the two ops one after the other (src/ops/norm.rs).
// BN train kernels come in two variants (src/ops/norm.rs picks, PIX2PIX_BN_VARIANT overrides):
//   v1 one block per channel (bn_forward_train, bn_backward): the baseline;
//   v2 S blocks per channel (bn_split_*), for few channels with many values each (batch 64, the
//      outer levels): each block reduces its chunk into f64 partials, and every block of the
//      channel sums the S partials in the same order, so the result is reproducible.
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
    int act;      // fused activation kind (-1 none, 0 LeakyReLU, 1 ReLU)
    float slope;  // LeakyReLU's negative slope
    int pad_;
};

// The gradient reaching the norm's output at i: dy, or dy through the fused activation, whose
// gradient follows from the sign of its output act_y (the unfused act_backward's product).
__device__ __forceinline__ float fused_dy(const float* dy, const float* act_y, int act, float slope, long long i) {
    return act < 0 ? dy[i] : act_grad(act, slope, act_y[i], act_y[i]) * dy[i];
}

// Element e of channel c (e < n*hw) of an NCHW tensor.
__device__ __forceinline__ long long bn_index(const BnArgs& a, int c, long long e) {
    const long long b = e / a.hw;
    return (b * a.c + c) * a.hw + (e - b * a.hw);
}

// Block-wide pieces over elements [lo, hi) of channel c, shared by v1 (one block: [0, m)) and v2
// (block (c, s): its chunk). Sums are f64, reduced over the block in a fixed order.

// sum of x.
__device__ __forceinline__ double bn_sum(const float* x, const BnArgs& a, int c, long long lo, long long hi) {
    double s = 0.0;
    for (long long e = lo + threadIdx.x; e < hi; e += blockDim.x) s += (double)x[bn_index(a, c, e)];
    return block_sum(s);
}

// centred sum of squares about `mean`.
__device__ __forceinline__ double bn_sq(const float* x, const BnArgs& a, int c, long long lo, long long hi,
                                        double mean) {
    double ss = 0.0;
    for (long long e = lo + threadIdx.x; e < hi; e += blockDim.x) {
        const double d = (double)x[bn_index(a, c, e)] - mean;
        ss += d * d;
    }
    return block_sum(ss);
}

// y = (x - mean) * invstd * gamma + beta, from the channel's mean and centred sum of squares over
// m values; thread 0 of block `writer` saves the statistics for the backward and updates the
// running stats (PyTorch: unbiased variance).
__device__ __forceinline__ void bn_normalize(const float* x, float* y, const float* params, float* buffers,
                                             float* saved_mean, float* saved_invstd, const BnArgs& a, int c,
                                             long long lo, long long hi, double mean, double ss, long long m,
                                             bool writer) {
    const float mu = (float)mean;
    const float is = (float)(1.0 / sqrt(ss / (double)m + (double)a.eps));
    if (writer && threadIdx.x == 0) {
        saved_mean[c] = mu;
        saved_invstd[c] = is;
        const double mom = (double)a.momentum;
        float* rm = &buffers[a.rmean_off + c];
        float* rv = &buffers[a.rvar_off + c];
        *rm = (float)((1.0 - mom) * (double)*rm + mom * mean);
        *rv = (float)((1.0 - mom) * (double)*rv + mom * ss / (double)(m - 1));
    }
    const float g = params[a.gamma_off + c], bb = params[a.beta_off + c];
    for (long long e = lo + threadIdx.x; e < hi; e += blockDim.x) {
        const long long i = bn_index(a, c, e);
        y[i] = act_fwd(a.act, a.slope, (x[i] - mu) * is * g + bb);
    }
}

// sum(dy) and sum(dy * xhat).
__device__ __forceinline__ void bn_bwd_sums(const float* x, const float* dy, const float* act_y, const BnArgs& a,
                                            int c, long long lo, long long hi, double mu, double is,
                                            double* sdy_out, double* sdyx_out) {
    double sdy = 0.0, sdyx = 0.0;
    for (long long e = lo + threadIdx.x; e < hi; e += blockDim.x) {
        const long long i = bn_index(a, c, e);
        const double d = (double)fused_dy(dy, act_y, a.act, a.slope, i);
        sdy += d;
        sdyx += d * ((double)x[i] - mu) * is;
    }
    *sdy_out = block_sum(sdy);
    *sdyx_out = block_sum(sdyx);
}

// dx = g*is/M * (M*dy - sum(dy) - xhat*sum(dy*xhat)) in f64; thread 0 of block `writer` adds
// dgamma = sum(dy*xhat) and dbeta = sum(dy) into grads when has_grads (grads may be a dummy
// pointer otherwise), so each gradient slot has exactly one writer.
__device__ __forceinline__ void bn_dx(const float* x, const float* dy, const float* act_y, float* dx,
                                      const float* params, float* grads, const BnArgs& a, int c, long long lo,
                                      long long hi, double mu, double is, double sdy, double sdyx, bool writer) {
    const double md = (double)a.n * a.hw;
    const double k = (double)params[a.gamma_off + c] * is / md;
    for (long long e = lo + threadIdx.x; e < hi; e += blockDim.x) {
        const long long i = bn_index(a, c, e);
        const double xhat = ((double)x[i] - mu) * is;
        dx[i] = (float)(k * (md * (double)fused_dy(dy, act_y, a.act, a.slope, i) - sdy - xhat * sdyx));
    }
    if (a.has_grads && writer && threadIdx.x == 0) {
        grads[a.gamma_off + c] += (float)sdyx;
        grads[a.beta_off + c] += (float)sdy;
    }
}

// ---- v1: one block per channel -------------------------------------------------------------------

KERNEL void bn_forward_train(const float* __restrict__ x, float* __restrict__ y, const float* __restrict__ params,
                             float* __restrict__ buffers, float* __restrict__ saved_mean,
                             float* __restrict__ saved_invstd, BnArgs a) {
    const int c = blockIdx.x;
    const long long m = (long long)a.n * a.hw;
    const double mean = bn_sum(x, a, c, 0, m) / (double)m;
    const double ss = bn_sq(x, a, c, 0, m, mean);
    bn_normalize(x, y, params, buffers, saved_mean, saved_invstd, a, c, 0, m, mean, ss, m, true);
}

KERNEL void bn_forward_eval(const float* __restrict__ x, float* __restrict__ y, const float* __restrict__ params,
                            const float* __restrict__ buffers, BnArgs a) {
    GRID_STRIDE(i, (long long)a.n * a.c * a.hw) {
        const int c = (int)((i / a.hw) % a.c);
        const float rm = buffers[a.rmean_off + c];
        const float is = 1.0f / sqrtf(buffers[a.rvar_off + c] + a.eps);
        y[i] = act_fwd(a.act, a.slope, (x[i] - rm) * is * params[a.gamma_off + c] + params[a.beta_off + c]);
    }
}

KERNEL void bn_backward(const float* __restrict__ x, const float* __restrict__ dy,
                        const float* __restrict__ act_y, float* __restrict__ dx,
                        const float* __restrict__ params, float* __restrict__ grads,
                        const float* __restrict__ saved_mean, const float* __restrict__ saved_invstd, BnArgs a) {
    const int c = blockIdx.x;
    const long long m = (long long)a.n * a.hw;
    const double mu = (double)saved_mean[c], is = (double)saved_invstd[c];
    double sdy, sdyx;
    bn_bwd_sums(x, dy, act_y, a, c, 0, m, mu, is, &sdy, &sdyx);
    bn_dx(x, dy, act_y, dx, params, grads, a, c, 0, m, mu, is, sdy, sdyx, true);
}

// ---- v2: grid (C, S) ---------------------------------------------------------------------------
// Block (c, s) owns elements [s*chunk, min((s+1)*chunk, m)) of channel c, with chunk = ceil(m / S).
// part[(c*S + s)*2 + k] holds its partial sums (f64).

__device__ __forceinline__ void bn_chunk(const BnArgs& a, int splits, long long* lo, long long* hi) {
    const long long m = (long long)a.n * a.hw;
    const long long chunk = (m + splits - 1) / splits;
    *lo = (long long)blockIdx.y * chunk;
    *hi = min(m, *lo + chunk);
}

// The sum over the channel's S partials k, in a fixed order (the same in every block).
__device__ __forceinline__ double bn_total(const double* part, int c, int splits, int k) {
    double t = 0.0;
    for (int s = 0; s < splits; ++s) t += part[(c * splits + s) * 2 + k];
    return t;
}

// Pass 1: part[.][0] = sum of x over the chunk.
KERNEL void bn_split_sum(const float* __restrict__ x, double* __restrict__ part, BnArgs a, int splits) {
    const int c = blockIdx.x;
    long long lo, hi;
    bn_chunk(a, splits, &lo, &hi);
    const double s = bn_sum(x, a, c, lo, hi);
    if (threadIdx.x == 0) part[(c * splits + blockIdx.y) * 2] = s;
}

// Pass 2: part[.][1] = centred sum of squares over the chunk, about the channel's mean.
KERNEL void bn_split_sq(const float* __restrict__ x, double* __restrict__ part, BnArgs a, int splits) {
    const int c = blockIdx.x;
    long long lo, hi;
    bn_chunk(a, splits, &lo, &hi);
    const double mean = bn_total(part, c, splits, 0) / ((double)a.n * a.hw);
    const double ss = bn_sq(x, a, c, lo, hi, mean);
    if (threadIdx.x == 0) part[(c * splits + blockIdx.y) * 2 + 1] = ss;
}

// Pass 3: y over the chunk; block s = 0 writes the saved statistics and the running stats.
KERNEL void bn_split_apply(const float* __restrict__ x, float* __restrict__ y, const float* __restrict__ params,
                           float* __restrict__ buffers, float* __restrict__ saved_mean,
                           float* __restrict__ saved_invstd, const double* __restrict__ part, BnArgs a,
                           int splits) {
    const int c = blockIdx.x;
    long long lo, hi;
    bn_chunk(a, splits, &lo, &hi);
    const long long m = (long long)a.n * a.hw;
    const double mean = bn_total(part, c, splits, 0) / (double)m;
    const double ss = bn_total(part, c, splits, 1);
    bn_normalize(x, y, params, buffers, saved_mean, saved_invstd, a, c, lo, hi, mean, ss, m, blockIdx.y == 0);
}

// Backward pass 1: part[.][0] = sum(dy), part[.][1] = sum(dy * xhat) over the chunk.
KERNEL void bn_split_bwd_sums(const float* __restrict__ x, const float* __restrict__ dy,
                              const float* __restrict__ act_y, const float* __restrict__ saved_mean, const float* __restrict__ saved_invstd,
                              double* __restrict__ part, BnArgs a, int splits) {
    const int c = blockIdx.x;
    long long lo, hi;
    bn_chunk(a, splits, &lo, &hi);
    double sdy, sdyx;
    bn_bwd_sums(x, dy, act_y, a, c, lo, hi, (double)saved_mean[c], (double)saved_invstd[c], &sdy, &sdyx);
    if (threadIdx.x == 0) {
        part[(c * splits + blockIdx.y) * 2] = sdy;
        part[(c * splits + blockIdx.y) * 2 + 1] = sdyx;
    }
}

// Backward pass 2: dx over the chunk; block s = 0 adds dgamma, dbeta.
KERNEL void bn_split_bwd_apply(const float* __restrict__ x, const float* __restrict__ dy,
                               const float* __restrict__ act_y, float* __restrict__ dx, const float* __restrict__ params, float* __restrict__ grads,
                               const float* __restrict__ saved_mean, const float* __restrict__ saved_invstd,
                               const double* __restrict__ part, BnArgs a, int splits) {
    const int c = blockIdx.x;
    long long lo, hi;
    bn_chunk(a, splits, &lo, &hi);
    bn_dx(x, dy, act_y, dx, params, grads, a, c, lo, hi, (double)saved_mean[c], (double)saved_invstd[c],
          bn_total(part, c, splits, 0), bn_total(part, c, splits, 1), blockIdx.y == 0);
}

// ------------------------------------------------------------------------------------------------
// InstanceNorm2d, affine off (CycleGAN's): one block per (sample, channel) plane of hw elements,
// biased variance, two passes in f64 as the CPU; the same in train and eval mode.
KERNEL void in_forward(const float* __restrict__ x, float* __restrict__ y, float* __restrict__ saved_mean,
                       float* __restrict__ saved_invstd, long long planes, long long hw, float eps, int act,
                       float slope) {
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
    for (long long e = threadIdx.x; e < hw; e += blockDim.x) out[e] = act_fwd(act, slope, (src[e] - mu) * is);
}

// dx = is/M * (M*dy - sum(dy) - xhat*sum(dy*xhat)) per plane, in f64.
KERNEL void in_backward(const float* __restrict__ x, const float* __restrict__ dy,
                        const float* __restrict__ act_y, float* __restrict__ dx,
                        const float* __restrict__ saved_mean, const float* __restrict__ saved_invstd,
                        long long planes, long long hw, int act, float slope) {
    const long long plane = blockIdx.x;
    if (plane >= planes) return;  // uniform over the block
    const float *xs = x + plane * hw, *ds = dy + plane * hw, *ys = act_y + plane * hw;
    const double mu = (double)saved_mean[plane], is = (double)saved_invstd[plane];
    double sdy = 0.0, sdyx = 0.0;
    for (long long e = threadIdx.x; e < hw; e += blockDim.x) {
        const double d = (double)fused_dy(ds, ys, act, slope, e);
        sdy += d;
        sdyx += d * ((double)xs[e] - mu) * is;
    }
    sdy = block_sum(sdy);
    sdyx = block_sum(sdyx);
    const double m = (double)hw;
    float* out = dx + plane * hw;
    for (long long e = threadIdx.x; e < hw; e += blockDim.x) {
        const double xhat = ((double)xs[e] - mu) * is;
        out[e] = (float)(is / m * (m * (double)fused_dy(ds, ys, act, slope, e) - sdy - xhat * sdyx));
    }
}

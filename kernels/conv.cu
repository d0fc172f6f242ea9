// Conv2d and ConvTranspose2d (NCHW, square k×k kernels, any stride and padding, no groups), twin
// of src/ops/conv/ (mod.rs: the role swap, cuda.rs: these launchers). Everything is phrased in terms of one convolution
//     y[b, co, oh, ow] = sum_{ci, ki, kj} W[co, ci, ki, kj] * x[b, ci, oh*s - p + ki, ow*s - p + kj]
// with x: [n, cin, h, w], y: [n, cout, ho, wo], W: [cout, cin, k, k], and three implicit GEMMs:
//   conv_fwd   (y = W · im2col(x))       M = cout, N = n·ho·wo, K = cin·k²
//   conv_dgrad (dx = col2im(Wᵀ · dy))    M = cin,  N = n·h·w,   K = cout·k², computed as a gather
//              split into s² output-parity classes, so that only the taps that hit a pixel of
//              that class are visited (K per class = cout·⌈k/s⌉², 4× less work for k4 s2)
//   conv_wgrad (dW += dy · im2col(x)ᵀ)   M = cout, N = cin·k²,  K = n·ho·wo
// ConvTranspose2d with weight [cin_T, cout_T, k, k] is the same convolution with roles swapped
// (conv x = convT output): its forward is conv_dgrad, its data gradient conv_fwd, its weight
// gradient conv_wgrad(x = dy_T, dy = x_T). The Rust launchers do the swapping.
//
// Each impl below says how its GEMM's operands are gathered from the tensors (`Operand`: a row's
// state, an element's address) and where its outputs go; how a tile of the GEMM is staged and
// multiplied is the variant's, in conv_tiles.cuh (the kernel lab: v1 fp32 SIMT, v2-v7 tensor
// cores; 64×64 or 128×128 tiles of 256 threads). Split-K (gridDim.z) when M·N has too few tiles
// for the GPU: each split writes a partial result into a workspace and `splitk_reduce` sums them
// in a fixed order (deterministic; no float atomics). The split count depends only on the shapes
// (chosen in Rust, the same for every variant).
//
#include "conv_tiles.cuh"

// Mirrored by `ConvArgs` in src/ops/conv/cuda.rs (#[repr(C)]). Geometry of the convolution above.
struct ConvArgs {
    int n, cin, h, w;   // x
    int cout, ho, wo;   // y
    int k, s, p;
    int splits;         // K splits (for conv_dgrad: per parity class; gridDim.z = s*s*splits)
    int kchunk;         // GEMM-K per split, a multiple of BK
    int accumulate;     // out += result instead of out = result (splits == 1 only; else the reduce)
    int has_bias;       // add bias[channel of out] (splits == 1 only; else the reduce)
};

// The fwd/dgrad epilogue for output element idx of channel m: out (+)= v + bias[m], or, under
// split-K, the partial sum into this split's workspace slice (the reduce adds bias and accumulates).
__device__ __forceinline__ void conv_store(const ConvArgs& a, const float* bias, float* out, float* wsz,
                                           long long idx, int m, float v) {
    if (a.splits == 1) {
        if (a.has_bias) v = v + bias[m];
        out[idx] = a.accumulate ? out[idx] + v : v;
    } else {
        wsz[idx] = v;
    }
}

// ------------------------------------------------------------------------------------------------
// Forward: y = W · im2col(x) (+ bias). in0 = x, in1 = W.
template <int KS, class V>
__device__ __forceinline__ void conv_fwd_impl(const float* __restrict__ x, const float* __restrict__ wt,
                                              const float* __restrict__ bias, float* __restrict__ out,
                                              float* __restrict__ ws, const ConvArgs& a) {
    const int ks = KS ? KS : a.k, kk2 = ks * ks;
    const int M = a.cout, K = a.cin * kk2, hwo = a.ho * a.wo;
    const int N = a.n * hwo;
    const int m0 = blockIdx.y * V::TM, n0 = blockIdx.x * V::TN;
    const int kbeg = blockIdx.z * a.kchunk, kend = min(K, kbeg + a.kchunk);
    __shared__ typename V::Smem sm;

    // A: W as [cout][cin·k²] (k-fast rows).
    const auto A = operand([](int m) { return m; },
                           [&](int m, int k, const float*& p) {
                               if (m >= M) return false;
                               p = wt + (long long)m * K + k;
                               return true;
                           });
    // B: im2col(x), column j = output pixel (b, oh, ow), k = (ci, ki, kj); a column keeps its
    // sample's x and the top-left corner of its input window.
    struct Col {
        const float* xb;
        int ih0, iw0;
        bool ok;
    };
    const auto B = operand(
        [&](int j) {
            Col c{x, 0, 0, j < N};
            if (c.ok) {
                const int nb = j / hwo, pix = j - nb * hwo, oh = pix / a.wo, ow = pix - oh * a.wo;
                c.ih0 = oh * a.s - a.p;
                c.iw0 = ow * a.s - a.p;
                c.xb = x + (long long)nb * a.cin * a.h * a.w;
            }
            return c;
        },
        [&](const Col& c, int k, const float*& p) {
            if (!c.ok) return false;
            const int ci = k / kk2, r = k - ci * kk2, ki = r / ks, kj = r - ki * ks;
            const int ih = c.ih0 + ki, iw = c.iw0 + kj;
            if ((unsigned)ih >= (unsigned)a.h || (unsigned)iw >= (unsigned)a.w) return false;
            p = c.xb + ((long long)ci * a.h + ih) * a.w + iw;
            return true;
        });
    typename V::Acc acc = {};
    mainloop<V, false>(sm, acc, kbeg, kend, m0, n0, M - m0, N - n0, wt, A, B);

    const long long out_numel = (long long)N * M;
    float* wsz = ws + (long long)blockIdx.z * out_numel;
    V::each(acc, [&](int r, int c, float v) {
        const int col = n0 + c, m = m0 + r;
        if (col >= N || m >= M) return;
        const int nb = col / hwo, pix = col - nb * hwo;
        const long long idx = ((long long)nb * M + m) * hwo + pix;
        conv_store(a, bias, out, wsz, idx, m, v);
    });
}

// k3 and k7: the ResNet generator's convs (3×3 blocks and down-sampling, 7×7 first and last).
// One kernel per variant (v1, v2 _tf32, v3 _bf16, v4 _tf32_async, v5 _bf16_async) and kernel size.
#define FWD_PARAMS const float *x, const float *wt, const float *bias, float *out, float *ws, ConvArgs a
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_k4(FWD_PARAMS) { conv_fwd_impl<4, SimtF32>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_k3(FWD_PARAMS) { conv_fwd_impl<3, SimtF32>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_k7(FWD_PARAMS) { conv_fwd_impl<7, SimtF32>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_kx(FWD_PARAMS) { conv_fwd_impl<0, SimtF32>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_k4_tf32(FWD_PARAMS) { conv_fwd_impl<4, MmaTf32>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_k3_tf32(FWD_PARAMS) { conv_fwd_impl<3, MmaTf32>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_k7_tf32(FWD_PARAMS) { conv_fwd_impl<7, MmaTf32>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_kx_tf32(FWD_PARAMS) { conv_fwd_impl<0, MmaTf32>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_k4_bf16(FWD_PARAMS) { conv_fwd_impl<4, MmaBf16>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_k3_bf16(FWD_PARAMS) { conv_fwd_impl<3, MmaBf16>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_k7_bf16(FWD_PARAMS) { conv_fwd_impl<7, MmaBf16>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_kx_bf16(FWD_PARAMS) { conv_fwd_impl<0, MmaBf16>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_k4_tf32_async(FWD_PARAMS) { conv_fwd_impl<4, MmaTf32Async>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_k3_tf32_async(FWD_PARAMS) { conv_fwd_impl<3, MmaTf32Async>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_k7_tf32_async(FWD_PARAMS) { conv_fwd_impl<7, MmaTf32Async>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_kx_tf32_async(FWD_PARAMS) { conv_fwd_impl<0, MmaTf32Async>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_k4_bf16_async(FWD_PARAMS) { conv_fwd_impl<4, MmaBf16Async>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_k3_bf16_async(FWD_PARAMS) { conv_fwd_impl<3, MmaBf16Async>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_k7_bf16_async(FWD_PARAMS) { conv_fwd_impl<7, MmaBf16Async>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_fwd_kx_bf16_async(FWD_PARAMS) { conv_fwd_impl<0, MmaBf16Async>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_BF16) conv_fwd_k4_bf16_128(FWD_PARAMS) { conv_fwd_impl<4, MmaBf16Wide>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_BF16) conv_fwd_k3_bf16_128(FWD_PARAMS) { conv_fwd_impl<3, MmaBf16Wide>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_BF16) conv_fwd_k7_bf16_128(FWD_PARAMS) { conv_fwd_impl<7, MmaBf16Wide>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_BF16) conv_fwd_kx_bf16_128(FWD_PARAMS) { conv_fwd_impl<0, MmaBf16Wide>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_TF32) conv_fwd_k4_tf32_128(FWD_PARAMS) { conv_fwd_impl<4, MmaTf32Wide>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_TF32) conv_fwd_k3_tf32_128(FWD_PARAMS) { conv_fwd_impl<3, MmaTf32Wide>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_TF32) conv_fwd_k7_tf32_128(FWD_PARAMS) { conv_fwd_impl<7, MmaTf32Wide>(x, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_TF32) conv_fwd_kx_tf32_128(FWD_PARAMS) { conv_fwd_impl<0, MmaTf32Wide>(x, wt, bias, out, ws, a); }

// ------------------------------------------------------------------------------------------------
// Data gradient: dx = col2im(Wᵀ · dy) (+ bias, for a transposed conv's forward), as a gather.
// in0 = dy, in1 = W. blockIdx.z = split * s² + parity class (rh, rw). For a pixel ih ≡ rh (mod s)
// the taps ki with (ih + p - ki) divisible by s are ki = ki0 + s·t, ki0 = (rh + p) mod s, and then
// oh = a + (rh + p) div s - t where ih = rh + s·a. TT = ⌈k/s⌉ when s divides k (compile-time), else 0.
template <int TT, class V>
__device__ __forceinline__ void conv_dgrad_impl(const float* __restrict__ dy, const float* __restrict__ wt,
                                                const float* __restrict__ bias, float* __restrict__ out,
                                                float* __restrict__ ws, const ConvArgs& a) {
    const int s = a.s, classes = s * s;
    const int cls = blockIdx.z % classes, split = blockIdx.z / classes;
    const int rh = cls / s, rw = cls - rh * s;
    const int ki0 = (rh + a.p) % s, qh = (rh + a.p) / s;
    const int kj0 = (rw + a.p) % s, qw = (rw + a.p) / s;
    const int Kh = TT ? TT : (ki0 < a.k ? (a.k - ki0 + s - 1) / s : 0);
    const int Kw = TT ? TT : (kj0 < a.k ? (a.k - kj0 + s - 1) / s : 0);
    const int Ah = rh < a.h ? (a.h - rh + s - 1) / s : 0;
    const int Aw = rw < a.w ? (a.w - rw + s - 1) / s : 0;
    const int M = a.cin, ahw = Ah * Aw, N = a.n * ahw, khw = Kh * Kw, K = a.cout * khw;
    const int m0 = blockIdx.y * V::TM, n0 = blockIdx.x * V::TN;
    if (n0 >= N || m0 >= M) return;  // uniform over the block: this class has fewer pixels
    const int kbeg = split * a.kchunk, kend = min(K, kbeg + a.kchunk);
    const int kk2 = a.k * a.k, hwo = a.ho * a.wo;
    __shared__ typename V::Smem sm;

    // A: Wᵀ restricted to the class's taps, row m = ci, k = (co, t, u) → W[co, ci, ki0 + s·t, kj0 + s·u].
    const auto A = operand([](int m) { return m; },
                           [&](int m, int k, const float*& p) {
                               if (m >= M) return false;
                               const int co = k / khw, r = k - co * khw, tt = r / Kw, u = r - tt * Kw;
                               p = wt + (long long)co * a.cin * kk2 + (ki0 + s * tt) * a.k + (kj0 + s * u) +
                                   (long long)m * kk2;
                               return true;
                           });
    // B: dy gathered per pixel of the class, column j = (b, aa, bb), k = (co, t, u) → dy[b, co,
    // aa + qh - t, bb + qw - u]; a column keeps its sample's dy and (oh, ow) at t = u = 0.
    struct Col {
        const float* dyb;
        int oh0, ow0;
        bool ok;
    };
    const auto B = operand(
        [&](int j) {
            Col c{dy, 0, 0, j < N};
            if (c.ok) {
                const int nb = j / ahw, rem = j - nb * ahw, aa = rem / Aw, bb = rem - aa * Aw;
                c.oh0 = aa + qh;
                c.ow0 = bb + qw;
                c.dyb = dy + (long long)nb * a.cout * hwo;
            }
            return c;
        },
        [&](const Col& c, int k, const float*& p) {
            if (!c.ok) return false;
            const int co = k / khw, r = k - co * khw, tt = r / Kw, u = r - tt * Kw;
            const int oh = c.oh0 - tt, ow = c.ow0 - u;
            if ((unsigned)oh >= (unsigned)a.ho || (unsigned)ow >= (unsigned)a.wo) return false;
            p = c.dyb + ((long long)co * a.ho + oh) * a.wo + ow;
            return true;
        });
    typename V::Acc acc = {};
    mainloop<V, false>(sm, acc, kbeg, kend, m0, n0, M - m0, N - n0, wt, A, B);

    const long long out_numel = (long long)a.n * M * a.h * a.w;
    float* wsz = ws + (long long)split * out_numel;
    V::each(acc, [&](int r, int c, float v) {
        const int col = n0 + c, m = m0 + r;
        if (col >= N || m >= M) return;
        const int nb = col / ahw, rem = col - nb * ahw, aa = rem / Aw, bb = rem - aa * Aw;
        const int ih = rh + s * aa, iw = rw + s * bb;
        const long long idx = (((long long)nb * M + m) * a.h + ih) * a.w + iw;
        conv_store(a, bias, out, wsz, idx, m, v);
    });
}

// t3/t7: stride 1 with k3 / k7 (every tap hits every pixel): the ResNet blocks' and 7×7 convs' dgrad.
// One kernel per variant (v1, v2 _tf32, v3 _bf16, v4 _tf32_async, v5 _bf16_async) and tap count.
#define DGRAD_PARAMS const float *dy, const float *wt, const float *bias, float *out, float *ws, ConvArgs a
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t2(DGRAD_PARAMS) { conv_dgrad_impl<2, SimtF32>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t4(DGRAD_PARAMS) { conv_dgrad_impl<4, SimtF32>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t3(DGRAD_PARAMS) { conv_dgrad_impl<3, SimtF32>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t7(DGRAD_PARAMS) { conv_dgrad_impl<7, SimtF32>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_tx(DGRAD_PARAMS) { conv_dgrad_impl<0, SimtF32>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t2_tf32(DGRAD_PARAMS) { conv_dgrad_impl<2, MmaTf32>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t4_tf32(DGRAD_PARAMS) { conv_dgrad_impl<4, MmaTf32>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t3_tf32(DGRAD_PARAMS) { conv_dgrad_impl<3, MmaTf32>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t7_tf32(DGRAD_PARAMS) { conv_dgrad_impl<7, MmaTf32>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_tx_tf32(DGRAD_PARAMS) { conv_dgrad_impl<0, MmaTf32>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t2_bf16(DGRAD_PARAMS) { conv_dgrad_impl<2, MmaBf16>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t4_bf16(DGRAD_PARAMS) { conv_dgrad_impl<4, MmaBf16>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t3_bf16(DGRAD_PARAMS) { conv_dgrad_impl<3, MmaBf16>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t7_bf16(DGRAD_PARAMS) { conv_dgrad_impl<7, MmaBf16>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_tx_bf16(DGRAD_PARAMS) { conv_dgrad_impl<0, MmaBf16>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t2_tf32_async(DGRAD_PARAMS) { conv_dgrad_impl<2, MmaTf32Async>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t4_tf32_async(DGRAD_PARAMS) { conv_dgrad_impl<4, MmaTf32Async>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t3_tf32_async(DGRAD_PARAMS) { conv_dgrad_impl<3, MmaTf32Async>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t7_tf32_async(DGRAD_PARAMS) { conv_dgrad_impl<7, MmaTf32Async>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_tx_tf32_async(DGRAD_PARAMS) { conv_dgrad_impl<0, MmaTf32Async>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t2_bf16_async(DGRAD_PARAMS) { conv_dgrad_impl<2, MmaBf16Async>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t4_bf16_async(DGRAD_PARAMS) { conv_dgrad_impl<4, MmaBf16Async>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t3_bf16_async(DGRAD_PARAMS) { conv_dgrad_impl<3, MmaBf16Async>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_t7_bf16_async(DGRAD_PARAMS) { conv_dgrad_impl<7, MmaBf16Async>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_dgrad_tx_bf16_async(DGRAD_PARAMS) { conv_dgrad_impl<0, MmaBf16Async>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_BF16) conv_dgrad_t2_bf16_128(DGRAD_PARAMS) { conv_dgrad_impl<2, MmaBf16Wide>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_BF16) conv_dgrad_t4_bf16_128(DGRAD_PARAMS) { conv_dgrad_impl<4, MmaBf16Wide>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_BF16) conv_dgrad_t3_bf16_128(DGRAD_PARAMS) { conv_dgrad_impl<3, MmaBf16Wide>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_BF16) conv_dgrad_t7_bf16_128(DGRAD_PARAMS) { conv_dgrad_impl<7, MmaBf16Wide>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_BF16) conv_dgrad_tx_bf16_128(DGRAD_PARAMS) { conv_dgrad_impl<0, MmaBf16Wide>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_TF32) conv_dgrad_t2_tf32_128(DGRAD_PARAMS) { conv_dgrad_impl<2, MmaTf32Wide>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_TF32) conv_dgrad_t4_tf32_128(DGRAD_PARAMS) { conv_dgrad_impl<4, MmaTf32Wide>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_TF32) conv_dgrad_t3_tf32_128(DGRAD_PARAMS) { conv_dgrad_impl<3, MmaTf32Wide>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_TF32) conv_dgrad_t7_tf32_128(DGRAD_PARAMS) { conv_dgrad_impl<7, MmaTf32Wide>(dy, wt, bias, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_TF32) conv_dgrad_tx_tf32_128(DGRAD_PARAMS) { conv_dgrad_impl<0, MmaTf32Wide>(dy, wt, bias, out, ws, a); }

// ------------------------------------------------------------------------------------------------
// Weight gradient: dW[co, (ci,ki,kj)] += sum_{b,oh,ow} dy[b,co,oh,ow] · x[b,ci,oh·s-p+ki,ow·s-p+kj].
// in0 = x, in1 = dy, out = the weight's gradient slice (always accumulated into).
template <int KS, class V>
__device__ __forceinline__ void conv_wgrad_impl(const float* __restrict__ x, const float* __restrict__ dy,
                                                float* __restrict__ out, float* __restrict__ ws,
                                                const ConvArgs& a) {
    const int ks = KS ? KS : a.k, kk2 = ks * ks;
    const int hwo = a.ho * a.wo;
    const int M = a.cout, N = a.cin * kk2, K = a.n * hwo;
    const int m0 = blockIdx.y * V::TM, n0 = blockIdx.x * V::TN;
    const int kbeg = blockIdx.z * a.kchunk, kend = min(K, kbeg + a.kchunk);
    const long long chw = (long long)a.cin * a.h * a.w;
    __shared__ typename V::Smem sm;

    // k is a pixel of dy, k-fast in both operands; its offsets in dy and x and its top-left input
    // position (what the A and B elements at one k share).
    struct Pix {
        const float* dyb;
        const float* xb;
        int ih0, iw0;
    };
    auto pix_at = [&](int k) {
        const int nb = k / hwo, pix = k - nb * hwo, oh = pix / a.wo, ow = pix - oh * a.wo;
        return Pix{dy + (long long)nb * a.cout * hwo + pix, x + (long long)nb * chw, oh * a.s - a.p, ow * a.s - a.p};
    };
    // A: dy as [cout][n·ho·wo].
    const auto A = operand([](int m) { return m; },
                           [&](int m, int k, const float*& p) {
                               if (m >= M) return false;
                               p = pix_at(k).dyb + (long long)m * hwo;
                               return true;
                           });
    // B: im2col(x)ᵀ, row j = (ci, ki, kj) of the weight (its plane offset and tap; coff -1 beyond N).
    struct Tap {
        int coff, ki, kj;
    };
    const auto B = operand(
        [&](int j) {
            if (j >= N) return Tap{-1, 0, 0};
            const int ci = j / kk2, r = j - ci * kk2, ki = r / ks;
            return Tap{ci * a.h * a.w, ki, r - ki * ks};
        },
        [&](const Tap& c, int k, const float*& p) {
            if (c.coff < 0) return false;
            const Pix px = pix_at(k);
            const int ih = px.ih0 + c.ki, iw = px.iw0 + c.kj;
            if ((unsigned)ih >= (unsigned)a.h || (unsigned)iw >= (unsigned)a.w) return false;
            p = px.xb + c.coff + ih * a.w + iw;
            return true;
        });
    typename V::Acc acc = {};
    mainloop<V, true>(sm, acc, kbeg, kend, m0, n0, M - m0, N - n0, x, A, B);

    float* wsz = ws + (long long)blockIdx.z * M * N;
    V::each(acc, [&](int r, int c, float v) {
        const int col = n0 + c, m = m0 + r;
        if (col >= N || m >= M) return;
        const long long idx = (long long)m * N + col;
        if (a.splits == 1) out[idx] = out[idx] + v;
        else wsz[idx] = v;
    });
}

// One kernel per variant (v1, v2 _tf32, v3 _bf16, v4 _tf32_async, v5 _bf16_async) and kernel size.
#define WGRAD_PARAMS const float *x, const float *dy, const float *bias_unused, float *out, float *ws, ConvArgs a
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_k4(WGRAD_PARAMS) { conv_wgrad_impl<4, SimtF32>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_k3(WGRAD_PARAMS) { conv_wgrad_impl<3, SimtF32>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_k7(WGRAD_PARAMS) { conv_wgrad_impl<7, SimtF32>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_kx(WGRAD_PARAMS) { conv_wgrad_impl<0, SimtF32>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_k4_tf32(WGRAD_PARAMS) { conv_wgrad_impl<4, MmaTf32>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_k3_tf32(WGRAD_PARAMS) { conv_wgrad_impl<3, MmaTf32>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_k7_tf32(WGRAD_PARAMS) { conv_wgrad_impl<7, MmaTf32>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_kx_tf32(WGRAD_PARAMS) { conv_wgrad_impl<0, MmaTf32>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_k4_bf16(WGRAD_PARAMS) { conv_wgrad_impl<4, MmaBf16>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_k3_bf16(WGRAD_PARAMS) { conv_wgrad_impl<3, MmaBf16>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_k7_bf16(WGRAD_PARAMS) { conv_wgrad_impl<7, MmaBf16>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_kx_bf16(WGRAD_PARAMS) { conv_wgrad_impl<0, MmaBf16>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_k4_tf32_async(WGRAD_PARAMS) { conv_wgrad_impl<4, MmaTf32Async>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_k3_tf32_async(WGRAD_PARAMS) { conv_wgrad_impl<3, MmaTf32Async>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_k7_tf32_async(WGRAD_PARAMS) { conv_wgrad_impl<7, MmaTf32Async>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_kx_tf32_async(WGRAD_PARAMS) { conv_wgrad_impl<0, MmaTf32Async>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_k4_bf16_async(WGRAD_PARAMS) { conv_wgrad_impl<4, MmaBf16Async>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_k3_bf16_async(WGRAD_PARAMS) { conv_wgrad_impl<3, MmaBf16Async>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_k7_bf16_async(WGRAD_PARAMS) { conv_wgrad_impl<7, MmaBf16Async>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, MIN_BLOCKS) conv_wgrad_kx_bf16_async(WGRAD_PARAMS) { conv_wgrad_impl<0, MmaBf16Async>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_BF16) conv_wgrad_k4_bf16_128(WGRAD_PARAMS) { conv_wgrad_impl<4, MmaBf16Wide>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_BF16) conv_wgrad_k3_bf16_128(WGRAD_PARAMS) { conv_wgrad_impl<3, MmaBf16Wide>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_BF16) conv_wgrad_k7_bf16_128(WGRAD_PARAMS) { conv_wgrad_impl<7, MmaBf16Wide>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_BF16) conv_wgrad_kx_bf16_128(WGRAD_PARAMS) { conv_wgrad_impl<0, MmaBf16Wide>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_TF32) conv_wgrad_k4_tf32_128(WGRAD_PARAMS) { conv_wgrad_impl<4, MmaTf32Wide>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_TF32) conv_wgrad_k3_tf32_128(WGRAD_PARAMS) { conv_wgrad_impl<3, MmaTf32Wide>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_TF32) conv_wgrad_k7_tf32_128(WGRAD_PARAMS) { conv_wgrad_impl<7, MmaTf32Wide>(x, dy, out, ws, a); }
KERNEL void __launch_bounds__(NT, WIDE_BLOCKS_TF32) conv_wgrad_kx_tf32_128(WGRAD_PARAMS) { conv_wgrad_impl<0, MmaTf32Wide>(x, dy, out, ws, a); }

// ------------------------------------------------------------------------------------------------
// out[i] = (accumulate ? out[i] : 0) + sum_z ws[z·numel + i] (+ bias[(i / hw) % c]), z ascending.
KERNEL void splitk_reduce(const float* __restrict__ ws, int splits, long long numel, float* __restrict__ out,
                          const float* __restrict__ bias, int c, long long hw, int accumulate, int has_bias) {
    GRID_STRIDE(i, numel) {
        float v = 0.0f;
        for (int z = 0; z < splits; ++z) v += ws[(long long)z * numel + i];
        if (has_bias) v = v + bias[(i / hw) % c];
        out[i] = accumulate ? out[i] + v : v;
    }
}

// Bias gradient, as the CPU: for each sample b, db[c] += (float)(sum over the plane dy[b, c] in f64).
// One block per channel; fixed reduction order.
KERNEL void bias_grad(const float* __restrict__ dy, int n, int c, long long hw, float* __restrict__ db) {
    const int ch = blockIdx.x;
    float acc = db[ch];
    for (int b = 0; b < n; ++b) {
        const float* plane = dy + ((long long)b * c + ch) * hw;
        double s = 0.0;
        for (long long i = threadIdx.x; i < hw; i += blockDim.x) s += (double)plane[i];
        s = block_sum(s);
        acc = acc + (float)s;
    }
    if (threadIdx.x == 0) db[ch] = acc;
}

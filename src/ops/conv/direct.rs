//! A direct CPU path for convolutions with few output channels, stride 1 and no padding: the
//! ResNet generator's head (ReflectionPad(3) → Conv 7×7 ngf→3, whose padding is the reflection pad
//! before it). Through im2col its patch matrix is [ngf·49, H·W] (205 MB at 128², 64 channels) for a
//! GEMM with M = 3, so the im2col path is bound by writing and reading that matrix; here every
//! output row is a sum of shifted input rows and nothing is materialised.
//!
//! With s = 1, p = 0 (ho = h − k + 1, wo = w − k + 1), for every sample:
//! - fwd:   y[co, oh, :]        (+)= Σ_{ci,ki,kj} W[co, ci, ki, kj] · x[ci, oh + ki, kj .. kj + wo]
//! - dgrad: dx[ci, ih, kj .. kj + wo] += Σ_{co,ki} W[co, ci, ki, kj] · dy[co, ih − ki, :]   (0 ≤ ih − ki < ho)
//! - wgrad: dW[co, ci, ki, kj]  += Σ_{oh} ⟨dy[co, oh, :], x[ci, oh + ki, kj .. kj + wo]⟩
//!
//! The loops are plain slice arithmetic that LLVM vectorises; [`simd`] compiles them for AVX-512 or
//! AVX2 when the CPU has it (the crate's baseline x86-64 target has only SSE2).

use super::ConvProblem;
use rayon::prelude::*;

/// At most this many output channels take the direct path.
pub(super) const MAX_COUT: usize = 4;

/// Whether `pb` takes the direct path.
pub(super) fn applies(pb: &ConvProblem) -> bool {
    pb.cout <= MAX_COUT && pb.s == 1 && pb.p == 0
}

/// Calls `$f($args)` compiled with AVX-512 or AVX2+FMA enabled when the CPU has them: `$f` is an
/// `#[inline(always)]` function, so its body is code-generated inside each wrapper.
macro_rules! simd {
    ($f:ident ( $($a:ident : $t:ty),* )) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512($($a: $t),*) { $f($($a),*) }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($a: $t),*) { $f($($a),*) }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the features the wrapper is compiled for.
                unsafe { avx512($($a),*) }
            } else if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: as above.
                unsafe { avx2($($a),*) }
            } else {
                $f($($a),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $f($($a),*)
        }
    }};
}

/// y += a·x, elementwise.
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// ⟨a, b⟩ in 16 f32 lanes (a fixed summation order the compiler can vectorise), summed in f64.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let mut lanes = [0f32; 16];
    let (a16, b16) = (a[..n].chunks_exact(16), b[..n].chunks_exact(16));
    let (ra, rb) = (a16.remainder(), b16.remainder());
    for (ca, cb) in a16.zip(b16) {
        for l in 0..16 {
            lanes[l] += ca[l] * cb[l];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(&x, &y)| x as f64 * y as f64).sum();
    lanes.iter().map(|&v| v as f64).sum::<f64>() + tail
}

/// One output row y[co, oh, :] of sample x (all input channels).
#[inline(always)]
fn fwd_row(pb: &ConvProblem, x: &[f32], w: &[f32], co: usize, oh: usize, row: &mut [f32]) {
    let (k, wo) = (pb.k, pb.wo);
    for ci in 0..pb.cin {
        let plane = &x[ci * pb.h * pb.w..(ci + 1) * pb.h * pb.w];
        let wk = &w[(co * pb.cin + ci) * k * k..(co * pb.cin + ci + 1) * k * k];
        for ki in 0..k {
            let src = &plane[(oh + ki) * pb.w..(oh + ki + 1) * pb.w];
            for kj in 0..k {
                axpy(row, wk[ki * k + kj], &src[kj..kj + wo]);
            }
        }
    }
}

/// One input-gradient row dx[ci, ih, :] of a sample from its dy (all output channels).
#[inline(always)]
fn dgrad_row(pb: &ConvProblem, dy: &[f32], w: &[f32], ci: usize, ih: usize, row: &mut [f32]) {
    let (k, wo, plane) = (pb.k, pb.wo, pb.ho * pb.wo);
    for co in 0..pb.cout {
        let wk = &w[(co * pb.cin + ci) * k * k..(co * pb.cin + ci + 1) * k * k];
        for ki in 0..k {
            let Some(oh) = ih.checked_sub(ki).filter(|&oh| oh < pb.ho) else {
                continue;
            };
            let src = &dy[co * plane + oh * wo..co * plane + (oh + 1) * wo];
            for kj in 0..k {
                axpy(&mut row[kj..kj + wo], wk[ki * k + kj], src);
            }
        }
    }
}

/// The k² × cout weight-gradient sums of input channel `ci` over one sample: out[co·k² + ki·k + kj].
#[inline(always)]
fn wgrad_channel(pb: &ConvProblem, x: &[f32], dy: &[f32], ci: usize, out: &mut [f64]) {
    let (k, wo) = (pb.k, pb.wo);
    let plane = &x[ci * pb.h * pb.w..(ci + 1) * pb.h * pb.w];
    for co in 0..pb.cout {
        for oh in 0..pb.ho {
            let g = &dy[(co * pb.ho + oh) * wo..(co * pb.ho + oh + 1) * wo];
            for ki in 0..k {
                let src = &plane[(oh + ki) * pb.w..(oh + ki + 1) * pb.w];
                for kj in 0..k {
                    out[(co * k + ki) * k + kj] += dot(g, &src[kj..kj + wo]);
                }
            }
        }
    }
}

/// y (+)= conv(x, W), every sample; rows in parallel.
pub(super) fn fwd(pb: &ConvProblem, x: &[f32], w: &[f32], y: &mut [f32], accumulate: bool) {
    let (xs, ho, wo, cout) = (pb.x_len(), pb.ho, pb.wo, pb.cout);
    y[..pb.n * pb.y_len()]
        .par_chunks_mut(wo)
        .enumerate()
        .for_each(|(r, row)| {
            let (n, co, oh) = (r / (cout * ho), r / ho % cout, r % ho);
            if !accumulate {
                row.fill(0.0);
            }
            let x = &x[n * xs..(n + 1) * xs];
            simd!(fwd_row(pb: &ConvProblem, x: &[f32], w: &[f32], co: usize, oh: usize, row: &mut [f32]));
        });
}

/// dx (+)= the input gradient of conv(x, W) for dy, every sample; rows in parallel.
pub(super) fn dgrad(pb: &ConvProblem, dy: &[f32], w: &[f32], dx: &mut [f32], accumulate: bool) {
    let (ys, h, cin) = (pb.y_len(), pb.h, pb.cin);
    dx[..pb.n * pb.x_len()]
        .par_chunks_mut(pb.w)
        .enumerate()
        .for_each(|(r, row)| {
            let (n, ci, ih) = (r / (cin * h), r / h % cin, r % h);
            if !accumulate {
                row.fill(0.0);
            }
            let dy = &dy[n * ys..(n + 1) * ys];
            simd!(dgrad_row(pb: &ConvProblem, dy: &[f32], w: &[f32], ci: usize, ih: usize, row: &mut [f32]));
        });
}

/// dW += the weight gradient of conv(x, W) for dy, summed over samples (in f64 per input
/// channel); input channels in parallel.
pub(super) fn wgrad(pb: &ConvProblem, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let kk = pb.k * pb.k;
    let (xs, ys) = (pb.x_len(), pb.y_len());
    let sums: Vec<Vec<f64>> = (0..pb.cin)
        .into_par_iter()
        .map(|ci| {
            let mut out = vec![0f64; pb.cout * kk];
            for n in 0..pb.n {
                let (x, dy) = (&x[n * xs..(n + 1) * xs], &dy[n * ys..(n + 1) * ys]);
                let out = &mut out[..];
                simd!(wgrad_channel(pb: &ConvProblem, x: &[f32], dy: &[f32], ci: usize, out: &mut [f64]));
            }
            out
        })
        .collect();
    for (ci, s) in sums.iter().enumerate() {
        for co in 0..pb.cout {
            let d = &mut dw[(co * pb.cin + ci) * kk..(co * pb.cin + ci + 1) * kk];
            for (d, &v) in d.iter_mut().zip(&s[co * kk..(co + 1) * kk]) {
                *d += v as f32;
            }
        }
    }
}

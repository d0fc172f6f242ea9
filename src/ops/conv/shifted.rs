//! The input gradient of stride-1, unpadded convolutions with many channels on the CPU — the
//! ResNet blocks' 3×3 convs, whose padding is the ReflectionPad(1) before them — as k² shifted
//! GEMMs that add into the image in place, with no patch matrix and no flipped weight copy.
//!
//! On the "wide" output grid q = oh·w + ow (rows as wide as the input, w = wo + k − 1; the
//! columns ow ≥ wo of each row are junk), tap t = (ki, kj) of the window touches x at q + off_t,
//! off_t = ki·w + kj: for every channel one contiguous run of the input plane. So, per sample,
//! with W_t = W[:, :, ki, kj] (a strided view of the weight) and nq = (ho − 1)·w + wo:
//!
//!   dx[ci, q + off_t] += Σ_co W_t[co, ci] · DY[co, q]      (M = cin, N = nq, K = cout, for each t)
//!
//! where DY is dy on the wide grid with zeros in the junk columns (so they add nothing). The junk
//! costs (k − 1)/w more multiply-adds (6% at 32 wide); the flipped forward it replaces
//! (`cpu::flipped_dgrad`) copies the weight and writes, and the GEMM then repacks, a [cout·k², h·w]
//! patch matrix of dy.
//!
//! The forward and the weight gradient have the same shifted form (Y[co, q] += W_t · x[·, q + off_t],
//! dW_t += DY · x[·, q + off_t]ᵀ), but measured on a 256-channel 32×32 block they were no faster
//! than im2col + one GEMM with K = cin·k² (and the weight gradient, with its small M and N, scaled
//! worse to 2 threads), so those stay on the im2col path.

use super::im2col::with_col;
use super::ConvProblem;
use crate::device::cpu::{fill, sgemm_strided, Strided};
use rayon::prelude::*;

/// Whether the input gradient of `pb` takes the shifted-GEMM path: stride 1, no padding, a real
/// window, and enough channels on both sides for an efficient GEMM with K = cout.
pub(super) fn applies(pb: &ConvProblem) -> bool {
    pb.s == 1 && pb.p == 0 && pb.k > 1 && pb.cin.min(pb.cout) >= MIN_CHANNELS
}

/// Fewer channels than this on either side take the im2col path.
pub(super) const MIN_CHANNELS: usize = 32;

/// The wide grid of a problem.
struct Wide {
    /// Wide-grid positions per channel: (ho − 1)·w + wo.
    nq: usize,
    /// The input plane's length h·w.
    plane: usize,
    kk: usize,
}

impl Wide {
    fn of(pb: &ConvProblem) -> Self {
        debug_assert!(applies(pb) && pb.ho + pb.k - 1 == pb.h && pb.wo + pb.k - 1 == pb.w);
        Wide {
            nq: (pb.ho - 1) * pb.w + pb.wo,
            plane: pb.h * pb.w,
            kk: pb.k * pb.k,
        }
    }
}

/// dy of one sample on the wide grid, zeros in the junk columns, into `dyw`.
fn widen(pb: &ConvProblem, g: &Wide, dy_n: &[f32], dyw: &mut [f32]) {
    dyw.par_chunks_mut(g.nq)
        .zip(dy_n.par_chunks(pb.ho * pb.wo))
        .for_each(|(wide, plane)| {
            for (oh, src) in plane.chunks(pb.wo).enumerate() {
                let row = &mut wide[oh * pb.w..(oh * pb.w + pb.w).min(g.nq)];
                row[..pb.wo].copy_from_slice(src);
                row[pb.wo..].fill(0.0);
            }
        });
}

/// dx (+)= the input gradient of the convolution: each tap's GEMM adds into its shifted window.
pub(super) fn dgrad(pb: &ConvProblem, dy: &[f32], w: &[f32], dx: &mut [f32], accumulate: bool) {
    let g = Wide::of(pb);
    let (xs, ys) = (pb.x_len(), pb.y_len());
    if !accumulate {
        fill(&mut dx[..pb.n * xs], 0.0);
    }
    // W_t[co, ci] = W[co, ci, ki, kj] is at co·cin·k² + ci·k² + t: viewed as [ci, co].
    let tap_t = Strided::new(g.kk, pb.cin * g.kk);
    // dx from tap t's offset, as [ci, q]; DY as [co, q].
    let (window, grid) = (Strided::new(g.plane, 1), Strided::new(g.nq, 1));
    with_col(pb.cout * g.nq, |dyw| {
        for n in 0..pb.n {
            widen(pb, &g, &dy[n * ys..(n + 1) * ys], dyw);
            let dxn = &mut dx[n * xs..(n + 1) * xs];
            for t in 0..g.kk {
                let off = (t / pb.k) * pb.w + t % pb.k;
                sgemm_strided(
                    pb.cin,
                    g.nq,
                    pb.cout,
                    (&w[t..], tap_t),
                    (&*dyw, grid),
                    (&mut dxn[off..], window),
                    true,
                );
            }
        }
    });
}

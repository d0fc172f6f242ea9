//! The CPU reference of conv and convT: the three GEMMs of a [`ConvProblem`] (see `mod.rs`), one
//! sample at a time, with im2col / col2im around the multi-threaded `sgemm`.
//! - fwd:   y_n[cout, ho·wo]   (+)= W[cout, cin·k²] · im2col(x_n)[cin·k², ho·wo]
//! - wgrad: dW[cout, cin·k²]    += dy_n[cout, ho·wo] · im2col(x_n)ᵀ
//! - dgrad: dx_n (+)= col2im(Wᵀ[cin·k², cout] · dy_n[cout, ho·wo])
//!
//! Convolutions with few output channels, stride 1 and no padding (the ResNet head) take the
//! direct path of `direct.rs` instead: there the GEMMs have M = cout and the patch matrix is huge.
//! Stride-1 unpadded 3×3 convs with many channels (the ResNet blocks) run all three by Winograd's
//! F(2×2, 3×3) in `winograd.rs`: 16 GEMMs in the transformed domain, 2.25× fewer multiply-adds.
//! At stride 1 dgrad runs as the forward GEMM of the flipped, transposed weight (no col2im).

use super::im2col::{add_bias, bias_grad_add, col2im_add, im2col, with_col, with_flipped, Patches};
use super::ConvProblem;
use super::{direct, winograd};
use crate::device::cpu::{fill, sgemm, sgemm_strided, Strided};
use crate::tensor::Tensor;

/// A read-only matrix operand of logical shape rows × cols over a row-major buffer with leading
/// dimension `ld`; `transposed` views a stored [cols, rows] matrix as its transpose.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    ld: usize,
    transposed: bool,
}

impl<'a> Mat<'a> {
    /// The dense row-major matrix [rows, cols].
    fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            ld: cols,
            transposed: false,
        }
    }
    /// The transpose of this (dense) matrix, without moving data.
    fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            transposed: !self.transposed,
            ..self
        }
    }
}

/// The dense row-major output matrix [rows, cols].
struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
}

/// c = a·b, or c += a·b with `accumulate`.
fn gemm(c: MatMut, a: Mat, b: Mat, accumulate: bool) {
    assert!(
        a.rows == c.rows && b.cols == c.cols && a.cols == b.rows,
        "gemm: [{}x{}]·[{}x{}] into [{}x{}]",
        a.rows,
        a.cols,
        b.rows,
        b.cols,
        c.rows,
        c.cols
    );
    sgemm(
        a.transposed,
        b.transposed,
        c.rows,
        c.cols,
        a.cols,
        a.data,
        a.ld,
        b.data,
        b.ld,
        c.data,
        c.cols,
        accumulate,
    );
}

impl ConvProblem {
    /// The patch matrix of x on y's grid.
    fn patches(&self) -> Patches {
        Patches {
            c: self.cin,
            h: self.h,
            w: self.w,
            k: self.k,
            s: self.s,
            p: self.p,
            ho: self.ho,
            wo: self.wo,
            oh0: 0,
        }
    }
}

/// The GEMMs that read the patch matrix of x, sharing one im2col per sample:
/// `fwd` = (W, y, accumulate): y (+)= W·im2col(x); `wgrad` = (dy, dW): dW += dy·im2col(x)ᵀ.
pub(super) fn fwd_and_wgrad(
    pb: &ConvProblem,
    x: &[f32],
    fwd: Option<(&[f32], &mut [f32], bool)>,
    wgrad: Option<(&[f32], &mut [f32])>,
) {
    if winograd::applies(pb) {
        winograd::fwd_and_wgrad(pb, x, fwd, wgrad);
    } else if direct::applies(pb) {
        if let Some((dy, dw)) = wgrad {
            direct::wgrad(pb, x, dy, dw);
        }
        if let Some((w, y, accumulate)) = fwd {
            direct::fwd(pb, x, w, y, accumulate);
        }
    } else {
        im2col_fwd_and_wgrad(pb, x, fwd, wgrad);
    }
}

/// Output rows per band of the patch matrix: about `BAND_ELEMS` elements (1 MiB), so that a
/// band is written and then read by the GEMMs while it is still in cache, instead of once
/// through memory each way (at 256² a ResNet block's whole patch matrix is 36 MiB). Measured on
/// the 256² CycleGAN step (2 threads, benches/RESULTS.md): whole matrix 21.5-21.8 s, bands of
/// 4 MiB 19.2-21.9 s, 1 MiB 18.4-19.8 s, 256 KiB 21.0 s.
fn band_rows(pt: &Patches) -> usize {
    const BAND_ELEMS: usize = 1 << 18;
    (BAND_ELEMS / (pt.rows() * pt.wo).max(1)).clamp(1, pt.ho.max(1))
}

fn im2col_fwd_and_wgrad(
    pb: &ConvProblem,
    x: &[f32],
    fwd: Option<(&[f32], &mut [f32], bool)>,
    wgrad: Option<(&[f32], &mut [f32])>,
) {
    im2col_fwd_and_wgrad_in_bands(pb, x, fwd, wgrad, band_rows(&pb.patches()));
}

/// One band of `band` output rows at a time: im2col of the band, then the GEMMs on its columns
/// (the weight gradient sums over the bands in order, so the result depends on `band` only).
fn im2col_fwd_and_wgrad_in_bands(
    pb: &ConvProblem,
    x: &[f32],
    fwd: Option<(&[f32], &mut [f32], bool)>,
    mut wgrad: Option<(&[f32], &mut [f32])>,
    band: usize,
) {
    if fwd.is_none() && wgrad.is_none() {
        return;
    }
    let pt = pb.patches();
    let (rows, cols) = (pt.rows(), pt.cols());
    let (xs, ys) = (pb.x_len(), pb.y_len());
    let (mut fwd_w, mut fwd_y) = (None, None);
    if let Some((w, y, accumulate)) = fwd {
        fwd_w = Some((w, accumulate));
        fwd_y = Some(y);
    }
    with_col(rows * band * pb.wo, |col| {
        for n in 0..pb.n {
            for oh0 in (0..pb.ho).step_by(band) {
                // Columns c0 .. c0 + bc of the sample's patch matrix, as a [rows, bc] matrix.
                let g = pt.band(oh0, band.min(pb.ho - oh0));
                let (c0, bc) = (oh0 * pb.wo, g.cols());
                let col = &mut col[..rows * bc];
                im2col(g, &x[n * xs..(n + 1) * xs], col);
                let span = n * ys + c0..(n + 1) * ys;
                if let Some((dy, dw)) = wgrad.as_mut() {
                    // dW[cout, rows] += dy_n[:, c0..c0+bc] · colᵀ
                    sgemm_strided(
                        pb.cout,
                        rows,
                        bc,
                        (&dy[span.clone()], Strided::new(cols, 1)),
                        (col, Strided::new(1, bc)),
                        (dw, Strided::new(rows, 1)),
                        true,
                    );
                }
                if let (Some((w, accumulate)), Some(y)) = (fwd_w, fwd_y.as_mut()) {
                    // y_n[:, c0..c0+bc] (+)= W[cout, rows] · col
                    sgemm_strided(
                        pb.cout,
                        bc,
                        rows,
                        (w, Strided::new(rows, 1)),
                        (col, Strided::new(bc, 1)),
                        (&mut y[span], Strided::new(cols, 1)),
                        accumulate,
                    );
                }
            }
        }
    });
}

/// y (+)= conv(x, W) (+ bias).
pub(super) fn fwd(pb: &ConvProblem, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32], accumulate: bool) {
    fwd_and_wgrad(pb, x, Some((w, &mut *y, accumulate)), None);
    if let Some(b) = bias {
        add_bias(y, b, pb.ho * pb.wo);
    }
}

/// dW += the weight gradient of the convolution (x, dy).
pub(super) fn wgrad(pb: &ConvProblem, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    fwd_and_wgrad(pb, x, None, Some((dy, dw)));
}

/// dx (+)= col2im(Wᵀ·dy) (+ bias: a transposed conv's forward).
pub(super) fn dgrad(pb: &ConvProblem, dy: &[f32], w: &[f32], bias: Option<&[f32]>, dx: &mut [f32], accumulate: bool) {
    if winograd::applies(pb) {
        winograd::dgrad(pb, dy, w, dx, accumulate);
    } else if direct::applies(pb) {
        direct::dgrad(pb, dy, w, dx, accumulate);
    } else if pb.s == 1 && pb.p < pb.k && pb.cin > direct::MAX_COUT {
        // (Few input channels, as the ResNet stem's 3: its flipped forward would have M = cin
        // and a patch matrix of cout·k² rows; the col2im path's is cin·k².)
        flipped_dgrad(pb, dy, w, dx, accumulate);
    } else {
        im2col_dgrad(pb, dy, w, dx, accumulate);
    }
    if let Some(b) = bias {
        add_bias(dx, b, pb.h * pb.w);
    }
}

/// Stride 1: the input gradient is itself a convolution, of dy padded by k − 1 − p with the
/// weight transposed (cin ↔ cout) and flipped (ki → k − 1 − ki, kj → k − 1 − kj):
///   dx[ci, ih, iw] = Σ_{co,a,b} W[co, ci, k−1−a, k−1−b] · dy[co, ih + a − (k−1−p), iw + b − (k−1−p)].
/// So it runs as the forward GEMM (M = cin, K = cout·k², N = h·w) with no col2im scatter, and
/// the GEMM's output is dx itself rather than a patch matrix k² times larger.
fn flipped_dgrad(pb: &ConvProblem, dy: &[f32], w: &[f32], dx: &mut [f32], accumulate: bool) {
    let k = pb.k;
    let back = ConvProblem {
        n: pb.n,
        cin: pb.cout,
        h: pb.ho,
        w: pb.wo,
        cout: pb.cin,
        ho: pb.h,
        wo: pb.w,
        k,
        s: 1,
        p: k - 1 - pb.p,
    };
    with_flipped(pb.cin, pb.cout, k, w, |wf| {
        fwd_and_wgrad(&back, dy, Some((wf, dx, accumulate)), None)
    })
}

fn im2col_dgrad(pb: &ConvProblem, dy: &[f32], w: &[f32], dx: &mut [f32], accumulate: bool) {
    if !accumulate {
        fill(dx, 0.0);
    }
    let pt = pb.patches();
    let (rows, cols) = (pt.rows(), pt.cols());
    let (xs, ys) = (pb.x_len(), pb.y_len());
    let wt = Mat::new(w, pb.cout, rows).t();
    with_col(rows * cols, |col| {
        for n in 0..pb.n {
            let dy_n = Mat::new(&dy[n * ys..(n + 1) * ys], pb.cout, cols);
            gemm(
                MatMut {
                    data: &mut *col,
                    rows,
                    cols,
                },
                wt,
                dy_n,
                false,
            );
            col2im_add(pt, col, &mut dx[n * xs..(n + 1) * xs]);
        }
    });
}

/// db[c] += Σ over samples and pixels of dy[:, c] (per sample plane in f64).
pub(super) fn bias_grad(dy: &Tensor, db: &mut [f32]) {
    bias_grad_add(dy.cpu(), db, dy.shape.c, dy.shape.hw());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(seed: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32 ^ seed.wrapping_mul(0x9e37_79b9)).wrapping_mul(0x85eb_ca6b);
                ((h >> 8) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// A stride-1 convolution with padding p.
    fn stride1(n: usize, cin: usize, cout: usize, k: usize, p: usize, h: usize, w: usize) -> ConvProblem {
        ConvProblem {
            n,
            cin,
            h,
            w,
            cout,
            ho: h + 2 * p - k + 1,
            wo: w + 2 * p - k + 1,
            k,
            s: 1,
            p,
        }
    }

    /// a equals b to 1e-5 of b's largest magnitude (or absolutely, below 1), and b is not all zero.
    fn assert_close(a: &[f32], b: &[f32], what: &str) {
        let err = a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let scale = b.iter().map(|v| v.abs()).fold(0f32, f32::max);
        assert!(err <= 1e-5 * scale.max(1.0), "{what}: max |Δ| {err} (scale {scale})");
        assert!(scale > 0.0, "{what}: all zero");
    }

    /// Winograd's F(2×2, 3×3) (stride 1, no padding, many channels) computes the forward, the
    /// input gradient and the weight gradient of the im2col path, to rounding, overwriting and
    /// accumulating: the ResNet block's 3×3 on two samples of an even-sized output, odd-sized
    /// outputs in either direction (tiles sticking out), a single-tile and a 1×1 output.
    #[test]
    fn winograd_equals_im2col_path() {
        for (n, cin, cout, k, h, w) in [
            (2, 32, 35, 3, 10, 8),
            (1, 33, 40, 3, 9, 6),
            (1, 40, 32, 3, 8, 11),
            (1, 32, 32, 3, 4, 4),
            (1, 32, 33, 3, 3, 3),
        ] {
            let pb = stride1(n, cin, cout, k, 0, h, w);
            assert!(winograd::applies(&pb) && !direct::applies(&pb));
            let x = values(41, n * pb.x_len());
            let wt = values(42, cout * cin * k * k);
            let dy = values(43, n * pb.y_len());
            for accumulate in [false, true] {
                let start = values(44, n * pb.y_len());
                let (mut a, mut b) = (start.clone(), start.clone());
                winograd::fwd_and_wgrad(&pb, &x, Some((&wt, &mut a, accumulate)), None);
                im2col_fwd_and_wgrad(&pb, &x, Some((&wt, &mut b, accumulate)), None);
                assert_close(&a, &b, &format!("winograd fwd {pb:?}"));
                let start = values(45, n * pb.x_len());
                let (mut a, mut b) = (start.clone(), start.clone());
                winograd::dgrad(&pb, &dy, &wt, &mut a, accumulate);
                im2col_dgrad(&pb, &dy, &wt, &mut b, accumulate);
                assert_close(&a, &b, &format!("winograd dgrad {pb:?}"));
            }
            // The weight gradient alone, and beside the forward (one shared input transform).
            let start = values(46, wt.len());
            let (mut a, mut b, mut c) = (start.clone(), start.clone(), start.clone());
            let mut y = values(47, n * pb.y_len());
            winograd::fwd_and_wgrad(&pb, &x, None, Some((&dy, &mut a)));
            winograd::fwd_and_wgrad(&pb, &x, Some((&wt, &mut y, false)), Some((&dy, &mut c)));
            im2col_fwd_and_wgrad(&pb, &x, None, Some((&dy, &mut b)));
            assert_close(&a, &b, &format!("winograd wgrad {pb:?}"));
            assert_close(&c, &b, &format!("winograd wgrad beside fwd {pb:?}"));
        }
    }

    /// The direct path (few output channels, stride 1, no padding) computes the same GEMMs as the
    /// im2col/col2im path, to rounding, overwriting and accumulating: the ResNet head's geometry
    /// on two odd-sized samples, and shapes that take every register tile (64, 16, an overlapping
    /// 16 and single columns; blocks of 1 to 4 output channels; k 3, 4 and 7).
    #[test]
    fn direct_path_equals_im2col_path() {
        for (n, cin, cout, k, h, w) in [
            (2, 11, 3, 7, 19, 23), // the head's k 7 on two samples: wo 17, dgrad rows of 23
            (1, 6, 4, 3, 9, 80),   // wo 78: a 64 tile, an overlapping 16; dgrad blocks of 4 and 2
            (1, 5, 1, 7, 8, 90),   // wo 84: 64 + 16 + 4
            (2, 9, 2, 7, 72, 71),  // wo 65
            (1, 3, 3, 4, 6, 21),   // k 4
            (1, 4, 2, 3, 5, 7),    // rows narrower than one 16-wide tile
        ] {
            let pb = stride1(n, cin, cout, k, 0, h, w);
            assert!(direct::applies(&pb));
            let x = values(21, n * pb.x_len());
            let wt = values(22, cout * cin * k * k);
            let dy = values(23, n * pb.y_len());
            for accumulate in [false, true] {
                let start = values(24, n * pb.y_len());
                let (mut a, mut b) = (start.clone(), start.clone());
                direct::fwd(&pb, &x, &wt, &mut a, accumulate);
                im2col_fwd_and_wgrad(&pb, &x, Some((&wt, &mut b, accumulate)), None);
                assert_close(&a, &b, &format!("fwd {pb:?}"));
                let start = values(25, n * pb.x_len());
                let (mut a, mut b) = (start.clone(), start.clone());
                direct::dgrad(&pb, &dy, &wt, &mut a, accumulate);
                im2col_dgrad(&pb, &dy, &wt, &mut b, accumulate);
                assert_close(&a, &b, &format!("dgrad {pb:?}"));
            }
            let start = values(26, wt.len());
            let (mut a, mut b) = (start.clone(), start.clone());
            direct::wgrad(&pb, &x, &dy, &mut a);
            im2col_fwd_and_wgrad(&pb, &x, None, Some((&dy, &mut b)));
            assert_close(&a, &b, &format!("wgrad {pb:?}"));
        }
    }

    /// The patch matrix in bands of output rows gives the whole matrix's forward and weight
    /// gradient, to rounding: strides 1 and 2, padding 0 to 3, bands of 1, 2 and 3 rows (the last
    /// one shorter), two samples, overwriting and accumulating.
    #[test]
    fn banded_patches_equal_whole_matrix() {
        for (cin, cout, k, s, p, h, w) in [(5, 7, 3, 1, 1, 9, 8), (4, 6, 4, 2, 1, 11, 10), (3, 5, 7, 1, 3, 8, 9)] {
            let pb = ConvProblem {
                n: 2,
                cin,
                h,
                w,
                cout,
                ho: (h + 2 * p - k) / s + 1,
                wo: (w + 2 * p - k) / s + 1,
                k,
                s,
                p,
            };
            let x = values(31, pb.n * pb.x_len());
            let wt = values(32, cout * cin * k * k);
            let dy = values(33, pb.n * pb.y_len());
            for band in [1, 2, 3] {
                assert!(band < pb.ho);
                for accumulate in [false, true] {
                    let start = values(34, pb.n * pb.y_len());
                    let (mut a, mut b) = (start.clone(), start.clone());
                    im2col_fwd_and_wgrad_in_bands(&pb, &x, Some((&wt, &mut a, accumulate)), None, band);
                    im2col_fwd_and_wgrad_in_bands(&pb, &x, Some((&wt, &mut b, accumulate)), None, pb.ho);
                    assert_close(&a, &b, &format!("fwd in bands of {band} {pb:?}"));
                }
                let start = values(35, wt.len());
                let (mut a, mut b) = (start.clone(), start.clone());
                im2col_fwd_and_wgrad_in_bands(&pb, &x, None, Some((&dy, &mut a)), band);
                im2col_fwd_and_wgrad_in_bands(&pb, &x, None, Some((&dy, &mut b)), pb.ho);
                assert_close(&a, &b, &format!("wgrad in bands of {band} {pb:?}"));
            }
        }
    }

    /// Stride 1 with padding (D's k4 s1 p1, the ResNet's k3 on padded input): the input gradient
    /// as the flipped forward equals the col2im path, overwriting and accumulating.
    #[test]
    fn flipped_dgrad_equals_col2im_path() {
        for (cin, cout, k, p, h, w) in [(6, 5, 4, 1, 9, 8), (7, 6, 3, 0, 8, 10), (5, 9, 3, 2, 6, 7)] {
            let pb = stride1(2, cin, cout, k, p, h, w);
            let wt = values(7, cout * cin * k * k);
            let dy = values(8, pb.n * pb.y_len());
            for accumulate in [false, true] {
                let start = values(9, pb.n * pb.x_len());
                let (mut a, mut b) = (start.clone(), start.clone());
                flipped_dgrad(&pb, &dy, &wt, &mut a, accumulate);
                im2col_dgrad(&pb, &dy, &wt, &mut b, accumulate);
                assert_close(&a, &b, &format!("flipped dgrad {pb:?}"));
            }
        }
    }
}

//! The CPU reference of conv and convT: the three GEMMs of a [`ConvProblem`] (see `mod.rs`), one
//! sample at a time, with im2col / col2im around the multi-threaded `sgemm`.
//! - fwd:   y_n[cout, ho·wo]   (+)= W[cout, cin·k²] · im2col(x_n)[cin·k², ho·wo]
//! - wgrad: dW[cout, cin·k²]    += dy_n[cout, ho·wo] · im2col(x_n)ᵀ
//! - dgrad: dx_n (+)= col2im(Wᵀ[cin·k², cout] · dy_n[cout, ho·wo])

use super::im2col::{add_bias, bias_grad_add, col2im_add, im2col, with_col, Patches};
use super::ConvProblem;
use crate::device::cpu::sgemm;
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
        }
    }
}

/// The GEMMs that read the patch matrix of x, sharing one im2col per sample:
/// `fwd` = (W, y, accumulate): y (+)= W·im2col(x); `wgrad` = (dy, dW): dW += dy·im2col(x)ᵀ.
pub(super) fn fwd_and_wgrad(
    pb: &ConvProblem,
    x: &[f32],
    mut fwd: Option<(&[f32], &mut [f32], bool)>,
    mut wgrad: Option<(&[f32], &mut [f32])>,
) {
    if fwd.is_none() && wgrad.is_none() {
        return;
    }
    let pt = pb.patches();
    let (rows, cols) = (pt.rows(), pt.cols());
    let (xs, ys) = (pb.x_len(), pb.y_len());
    with_col(rows * cols, |col| {
        for n in 0..pb.n {
            im2col(pt, &x[n * xs..(n + 1) * xs], col);
            let patches = Mat::new(col, rows, cols);
            if let Some((dy, dw)) = wgrad.as_mut() {
                let dy_n = Mat::new(&dy[n * ys..(n + 1) * ys], pb.cout, cols);
                let dw = MatMut {
                    data: dw,
                    rows: pb.cout,
                    cols: rows,
                };
                gemm(dw, dy_n, patches.t(), true);
            }
            if let Some((w, y, accumulate)) = fwd.as_mut() {
                let y_n = MatMut {
                    data: &mut y[n * ys..(n + 1) * ys],
                    rows: pb.cout,
                    cols,
                };
                gemm(y_n, Mat::new(w, pb.cout, rows), patches, *accumulate);
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
    if !accumulate {
        dx.fill(0.0);
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
    if let Some(b) = bias {
        add_bias(dx, b, pb.h * pb.w);
    }
}

/// db[c] += Σ over samples and pixels of dy[:, c] (per sample plane in f64).
pub(super) fn bias_grad(dy: &Tensor, db: &mut [f32]) {
    bias_grad_add(dy.cpu(), db, dy.shape.c, dy.shape.hw());
}

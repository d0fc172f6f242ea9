//! Conv2d and ConvTranspose2d (square kernels, NCHW, no groups), forward and backward.
//!
//! CPU reference: im2col / col2im around a multi-threaded GEMM, one sample at a time.
//! - conv forward:     y_n[Cout, HoWo]  = W[Cout, Cin·k²] · im2col(x_n)
//! - conv data grad:   dx_n = col2im(Wᵀ · dy_n)
//! - conv weight grad: dW  += dy_n · im2col(x_n)ᵀ
//! - convT is conv with the roles of input and output swapped: its forward is conv's data grad,
//!   its data grad is conv's forward, and its weight ([Cin, Cout, k, k]) grad is x_n · im2col(dy_n)ᵀ.
//!
//! CUDA twin: kernels/conv.cu.

use crate::device::cpu::sgemm;
use crate::device::{CudaBackend, Device};
use crate::tensor::{Span, Storage, Tensor};
use rayon::prelude::*;
use std::cell::RefCell;

/// Geometry of one conv or transposed conv. For a transposed conv `cin`/`cout` are its own input and
/// output channels (the weight is [cin, cout, k, k]); `output_padding` adds rows/cols at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub output_padding: usize,
}

impl ConvGeom {
    pub const fn new(cin: usize, cout: usize, k: usize, stride: usize, pad: usize) -> Self {
        ConvGeom {
            cin,
            cout,
            k,
            stride,
            pad,
            output_padding: 0,
        }
    }
    /// Output size of a conv along one axis, or None when the input is too small.
    pub fn conv_out(&self, len: usize) -> Option<usize> {
        (len + 2 * self.pad).checked_sub(self.k).map(|v| v / self.stride + 1)
    }
    /// Output size of a transposed conv along one axis.
    pub fn convt_out(&self, len: usize) -> usize {
        (len - 1) * self.stride + self.k + self.output_padding - 2 * self.pad
    }
    pub fn weight_len(&self) -> usize {
        self.cin * self.cout * self.k * self.k
    }
}

/// Parameters of one conv layer inside a flat parameter buffer.
#[derive(Clone, Copy, Debug)]
pub struct ConvParams {
    pub weight: Span,
    pub bias: Option<Span>,
}

// ---------------------------------------------------------------------------------------------
// im2col / col2im: the patch matrix of a C×H×W image for a k×k window with stride s and padding p
// is [C·k², Ho·Wo], row (c·k + ki)·k + kj, column oh·Wo + ow, value x[c, oh·s−p+ki, ow·s−p+kj].

#[derive(Clone, Copy)]
struct Patches {
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    p: usize,
    ho: usize,
    wo: usize,
}

impl Patches {
    fn rows(&self) -> usize {
        self.c * self.k * self.k
    }
    fn cols(&self) -> usize {
        self.ho * self.wo
    }
}

fn im2col(g: Patches, x: &[f32], col: &mut [f32]) {
    let kk = g.k * g.k;
    let cols = g.cols();
    col[..g.rows() * cols]
        .par_chunks_mut(kk * cols)
        .enumerate()
        .for_each(|(c, rows)| {
            let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
            for ki in 0..g.k {
                for kj in 0..g.k {
                    let row = &mut rows[(ki * g.k + kj) * cols..(ki * g.k + kj + 1) * cols];
                    for oh in 0..g.ho {
                        let ih = (oh * g.s + ki) as isize - g.p as isize;
                        let out = &mut row[oh * g.wo..(oh + 1) * g.wo];
                        if ih < 0 || ih >= g.h as isize {
                            out.fill(0.0);
                            continue;
                        }
                        let src = &plane[ih as usize * g.w..(ih as usize + 1) * g.w];
                        for (ow, o) in out.iter_mut().enumerate() {
                            let iw = (ow * g.s + kj) as isize - g.p as isize;
                            *o = if iw >= 0 && iw < g.w as isize {
                                src[iw as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        });
}

/// Scatter-adds the patch matrix back into the image (the adjoint of im2col). Adds into `x`.
fn col2im_add(g: Patches, col: &[f32], x: &mut [f32]) {
    let kk = g.k * g.k;
    let cols = g.cols();
    x[..g.c * g.h * g.w]
        .par_chunks_mut(g.h * g.w)
        .enumerate()
        .for_each(|(c, plane)| {
            let rows = &col[c * kk * cols..(c + 1) * kk * cols];
            for ki in 0..g.k {
                for kj in 0..g.k {
                    let row = &rows[(ki * g.k + kj) * cols..(ki * g.k + kj + 1) * cols];
                    for oh in 0..g.ho {
                        let ih = (oh * g.s + ki) as isize - g.p as isize;
                        if ih < 0 || ih >= g.h as isize {
                            continue;
                        }
                        let dst = &mut plane[ih as usize * g.w..(ih as usize + 1) * g.w];
                        for (ow, &v) in row[oh * g.wo..(oh + 1) * g.wo].iter().enumerate() {
                            let iw = (ow * g.s + kj) as isize - g.p as isize;
                            if iw >= 0 && iw < g.w as isize {
                                dst[iw as usize] += v;
                            }
                        }
                    }
                }
            }
        });
}

thread_local! {
    // The patch matrix is scratch: one growable buffer per thread instead of one per layer.
    static COL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

fn with_col<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    COL.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() < len {
            c.resize(len, 0.0);
        }
        f(&mut c[..len])
    })
}

fn add_bias(y: &mut [f32], bias: &[f32], hw: usize) {
    for (plane, &b) in y.chunks_mut(hw).zip(bias.iter().cycle()) {
        plane.iter_mut().for_each(|v| *v += b);
    }
}

fn bias_grad_add(dy: &[f32], db: &mut [f32], c: usize, hw: usize) {
    for (i, plane) in dy.chunks(hw).enumerate() {
        db[i % c] += plane.iter().map(|&v| v as f64).sum::<f64>() as f32;
    }
}

fn check_conv_shapes(g: &ConvGeom, x: &Tensor, y: &Tensor, transposed: bool) {
    let (ho, wo) = if transposed {
        (g.convt_out(x.shape.h), g.convt_out(x.shape.w))
    } else {
        (
            g.conv_out(x.shape.h).expect("input smaller than kernel"),
            g.conv_out(x.shape.w).expect("input smaller than kernel"),
        )
    };
    assert!(
        x.shape.c == g.cin && y.shape.c == g.cout && y.shape.n == x.shape.n && y.shape.h == ho && y.shape.w == wo,
        "conv{} {:?}: input {} output {} do not fit",
        if transposed { "T" } else { "" },
        g,
        x.shape,
        y.shape
    );
}

// ---------------------------------------------------------------------------------------------
// Conv2d

/// y = conv2d(x, W) + b. Weight [cout, cin, k, k].
pub fn conv2d_forward(dev: &Device, g: &ConvGeom, params: &Storage, p: &ConvParams, x: &Tensor, y: &mut Tensor) {
    check_conv_shapes(g, x, y, false);
    match dev {
        Device::Cpu => {
            let pt = Patches {
                c: g.cin,
                h: x.shape.h,
                w: x.shape.w,
                k: g.k,
                s: g.stride,
                p: g.pad,
                ho: y.shape.h,
                wo: y.shape.w,
            };
            let w = &params.cpu()[p.weight.range()];
            let (xs, ys) = (x.shape.chw(), y.shape.chw());
            let (x, yv) = (x.cpu(), y.data.cpu_mut());
            with_col(pt.rows() * pt.cols(), |col| {
                for n in 0..y.shape.n {
                    im2col(pt, &x[n * xs..(n + 1) * xs], col);
                    let yn = &mut yv[n * ys..(n + 1) * ys];
                    sgemm(
                        false,
                        false,
                        g.cout,
                        pt.cols(),
                        pt.rows(),
                        w,
                        pt.rows(),
                        col,
                        pt.cols(),
                        yn,
                        pt.cols(),
                        false,
                    );
                }
            });
            if let Some(b) = p.bias {
                add_bias(yv, &params.cpu()[b.range()], y.shape.hw());
            }
        }
        Device::Cuda(c) => cuda_conv2d_forward(c, g, params, p, x, y),
    }
}

/// Backward of conv2d. Adds dW (and db) into `grads` when given; writes dx, or adds into it when
/// `accumulate_dx` (a tensor that feeds two consumers collects both gradients).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    dev: &Device,
    g: &ConvGeom,
    params: &Storage,
    p: &ConvParams,
    grads: Option<&mut Storage>,
    x: &Tensor,
    dy: &Tensor,
    dx: Option<&mut Tensor>,
    accumulate_dx: bool,
) {
    check_conv_shapes(g, x, dy, false);
    if let Some(dx) = &dx {
        assert_eq!(dx.shape, x.shape, "conv2d backward: dx shape");
    }
    match dev {
        Device::Cpu => {
            let pt = Patches {
                c: g.cin,
                h: x.shape.h,
                w: x.shape.w,
                k: g.k,
                s: g.stride,
                p: g.pad,
                ho: dy.shape.h,
                wo: dy.shape.w,
            };
            let (xs, ys) = (x.shape.chw(), dy.shape.chw());
            let (xv, dyv) = (x.cpu(), dy.cpu());
            if let Some(grads) = grads {
                let gv = grads.cpu_mut();
                with_col(pt.rows() * pt.cols(), |col| {
                    let dw = &mut gv[p.weight.range()];
                    for n in 0..x.shape.n {
                        im2col(pt, &xv[n * xs..(n + 1) * xs], col);
                        let dyn_ = &dyv[n * ys..(n + 1) * ys];
                        sgemm(
                            false,
                            true,
                            g.cout,
                            pt.rows(),
                            pt.cols(),
                            dyn_,
                            pt.cols(),
                            col,
                            pt.cols(),
                            dw,
                            pt.rows(),
                            true,
                        );
                    }
                });
                if let Some(b) = p.bias {
                    bias_grad_add(dyv, &mut gv[b.range()], g.cout, dy.shape.hw());
                }
            }
            if let Some(dx) = dx {
                let w = &params.cpu()[p.weight.range()];
                let dxv = dx.data.cpu_mut();
                if !accumulate_dx {
                    dxv.fill(0.0);
                }
                with_col(pt.rows() * pt.cols(), |col| {
                    for n in 0..x.shape.n {
                        let dyn_ = &dyv[n * ys..(n + 1) * ys];
                        sgemm(
                            true,
                            false,
                            pt.rows(),
                            pt.cols(),
                            g.cout,
                            w,
                            pt.rows(),
                            dyn_,
                            pt.cols(),
                            col,
                            pt.cols(),
                            false,
                        );
                        col2im_add(pt, col, &mut dxv[n * xs..(n + 1) * xs]);
                    }
                });
            }
        }
        Device::Cuda(c) => cuda_conv2d_backward(c, g, params, p, grads, x, dy, dx, accumulate_dx),
    }
}

// ---------------------------------------------------------------------------------------------
// ConvTranspose2d

/// y = conv_transpose2d(x, W) + b. Weight [cin, cout, k, k].
pub fn conv_transpose2d_forward(
    dev: &Device,
    g: &ConvGeom,
    params: &Storage,
    p: &ConvParams,
    x: &Tensor,
    y: &mut Tensor,
) {
    check_conv_shapes(g, x, y, true);
    match dev {
        Device::Cpu => {
            // The output plays the role of conv's input: patches of y line up with pixels of x.
            let pt = Patches {
                c: g.cout,
                h: y.shape.h,
                w: y.shape.w,
                k: g.k,
                s: g.stride,
                p: g.pad,
                ho: x.shape.h,
                wo: x.shape.w,
            };
            let w = &params.cpu()[p.weight.range()];
            let (xs, ys) = (x.shape.chw(), y.shape.chw());
            let (xv, yv) = (x.cpu(), y.data.cpu_mut());
            yv.fill(0.0);
            with_col(pt.rows() * pt.cols(), |col| {
                for n in 0..x.shape.n {
                    let xn = &xv[n * xs..(n + 1) * xs];
                    sgemm(
                        true,
                        false,
                        pt.rows(),
                        pt.cols(),
                        g.cin,
                        w,
                        pt.rows(),
                        xn,
                        pt.cols(),
                        col,
                        pt.cols(),
                        false,
                    );
                    col2im_add(pt, col, &mut yv[n * ys..(n + 1) * ys]);
                }
            });
            if let Some(b) = p.bias {
                add_bias(yv, &params.cpu()[b.range()], y.shape.hw());
            }
        }
        Device::Cuda(c) => cuda_conv_transpose2d_forward(c, g, params, p, x, y),
    }
}

/// Backward of conv_transpose2d; same conventions as `conv2d_backward`.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d_backward(
    dev: &Device,
    g: &ConvGeom,
    params: &Storage,
    p: &ConvParams,
    grads: Option<&mut Storage>,
    x: &Tensor,
    dy: &Tensor,
    dx: Option<&mut Tensor>,
    accumulate_dx: bool,
) {
    check_conv_shapes(g, x, dy, true);
    if let Some(dx) = &dx {
        assert_eq!(dx.shape, x.shape, "conv_transpose2d backward: dx shape");
    }
    match dev {
        Device::Cpu => {
            let pt = Patches {
                c: g.cout,
                h: dy.shape.h,
                w: dy.shape.w,
                k: g.k,
                s: g.stride,
                p: g.pad,
                ho: x.shape.h,
                wo: x.shape.w,
            };
            let (xs, ys) = (x.shape.chw(), dy.shape.chw());
            let (xv, dyv) = (x.cpu(), dy.cpu());
            let w = &params.cpu()[p.weight.range()];
            let mut dx = dx;
            if let Some(dx) = dx.as_deref_mut() {
                if !accumulate_dx {
                    dx.data.cpu_mut().fill(0.0);
                }
            }
            let mut grads = grads;
            with_col(pt.rows() * pt.cols(), |col| {
                for n in 0..x.shape.n {
                    im2col(pt, &dyv[n * ys..(n + 1) * ys], col);
                    if let Some(gr) = grads.as_deref_mut() {
                        let dw = &mut gr.cpu_mut()[p.weight.range()];
                        let xn = &xv[n * xs..(n + 1) * xs];
                        sgemm(
                            false,
                            true,
                            g.cin,
                            pt.rows(),
                            pt.cols(),
                            xn,
                            pt.cols(),
                            col,
                            pt.cols(),
                            dw,
                            pt.rows(),
                            true,
                        );
                    }
                    if let Some(dx) = dx.as_deref_mut() {
                        let dxn = &mut dx.data.cpu_mut()[n * xs..(n + 1) * xs];
                        sgemm(
                            false,
                            false,
                            g.cin,
                            pt.cols(),
                            pt.rows(),
                            w,
                            pt.rows(),
                            col,
                            pt.cols(),
                            dxn,
                            pt.cols(),
                            true,
                        );
                    }
                }
            });
            if let (Some(gr), Some(b)) = (grads, p.bias) {
                bias_grad_add(dyv, &mut gr.cpu_mut()[b.range()], g.cout, dy.shape.hw());
            }
        }
        Device::Cuda(c) => cuda_conv_transpose2d_backward(c, g, params, p, grads, x, dy, dx, accumulate_dx),
    }
}

// ---------------------------------------------------------------------------------------------
// CUDA launchers (kernels/conv.cu)

fn cuda_conv2d_forward(
    _c: &CudaBackend,
    _g: &ConvGeom,
    _params: &Storage,
    _p: &ConvParams,
    _x: &Tensor,
    _y: &mut Tensor,
) {
    unimplemented!("CUDA kernel: conv2d_forward")
}

#[allow(clippy::too_many_arguments)]
fn cuda_conv2d_backward(
    _c: &CudaBackend,
    _g: &ConvGeom,
    _params: &Storage,
    _p: &ConvParams,
    _grads: Option<&mut Storage>,
    _x: &Tensor,
    _dy: &Tensor,
    _dx: Option<&mut Tensor>,
    _accumulate_dx: bool,
) {
    unimplemented!("CUDA kernel: conv2d_backward")
}

fn cuda_conv_transpose2d_forward(
    _c: &CudaBackend,
    _g: &ConvGeom,
    _params: &Storage,
    _p: &ConvParams,
    _x: &Tensor,
    _y: &mut Tensor,
) {
    unimplemented!("CUDA kernel: conv_transpose2d_forward")
}

#[allow(clippy::too_many_arguments)]
fn cuda_conv_transpose2d_backward(
    _c: &CudaBackend,
    _g: &ConvGeom,
    _params: &Storage,
    _p: &ConvParams,
    _grads: Option<&mut Storage>,
    _x: &Tensor,
    _dy: &Tensor,
    _dx: Option<&mut Tensor>,
    _accumulate_dx: bool,
) {
    unimplemented!("CUDA kernel: conv_transpose2d_backward")
}

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

use super::im2col::{add_bias, bias_grad_add, col2im_add, im2col, with_col, Patches};
use crate::device::cpu::sgemm;
use crate::device::cuda::launch;
use crate::device::{CudaBackend, Device};
use crate::tensor::{Shape, Span, Storage, Tensor};
use cudarc::driver::{CudaView, CudaViewMut};

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
    /// The CPU patch matrix for this layer with input shape `x` and output shape `y`: conv's
    /// patches are windows of x on y's grid; a transposed conv swaps the roles (windows of y on
    /// x's grid), which is why one im2col/col2im pair serves both.
    fn patches(&self, transposed: bool, x: Shape, y: Shape) -> Patches {
        let (c, image, grid) = if transposed {
            (self.cout, y, x)
        } else {
            (self.cin, x, y)
        };
        Patches {
            c,
            h: image.h,
            w: image.w,
            k: self.k,
            s: self.stride,
            p: self.pad,
            ho: grid.h,
            wo: grid.w,
        }
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
            let pt = g.patches(false, x.shape, y.shape);
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
            let pt = g.patches(false, x.shape, dy.shape);
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
            let pt = g.patches(true, x.shape, y.shape);
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
            let pt = g.patches(true, x.shape, dy.shape);
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
//
// Every op is one of three implicit GEMMs of a single convolution "x → y with weight W[cout, cin]"
// (see the top of kernels/conv.cu); a transposed conv swaps the roles of its input and output.

/// Mirror of `struct ConvArgs` in kernels/conv.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvArgs {
    n: i32,
    cin: i32,
    h: i32,
    w: i32,
    cout: i32,
    ho: i32,
    wo: i32,
    k: i32,
    s: i32,
    p: i32,
    splits: i32,
    kchunk: i32,
    accumulate: i32,
    has_bias: i32,
}

// SAFETY: plain-old-data with the C layout of the kernel's parameter struct.
unsafe impl cudarc::driver::DeviceRepr for ConvArgs {}

/// The GEMM tile of kernels/conv.cu (BM = BN = 64, BK = 16, 256 threads).
const TILE: usize = 64;
const TILE_K: usize = 16;
/// Split-K aims at this many blocks (a function of the shapes only, so results do not depend on
/// the GPU model), with at least 8 K-steps per split, at most 64 splits and a bounded workspace.
const TARGET_BLOCKS: usize = 512;
const MAX_SPLITS: usize = 64;
const MAX_WORKSPACE: usize = 64 << 20;

/// A convolution x [n, cin, h, w] → y [n, cout, ho, wo] in the kernels' terms.
#[derive(Clone, Copy, Debug)]
struct ConvProblem {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    ho: usize,
    wo: usize,
    k: usize,
    s: usize,
    p: usize,
}

impl ConvProblem {
    fn args(&self, splits: usize, kchunk: usize, accumulate: bool, has_bias: bool) -> ConvArgs {
        for v in [
            self.n * self.cin * self.h * self.w,
            self.n * self.cout * self.ho * self.wo,
        ] {
            assert!(
                v < i32::MAX as usize,
                "conv tensor of {v} elements is beyond the kernels' 32-bit indexing"
            );
        }
        ConvArgs {
            n: self.n as i32,
            cin: self.cin as i32,
            h: self.h as i32,
            w: self.w as i32,
            cout: self.cout as i32,
            ho: self.ho as i32,
            wo: self.wo as i32,
            k: self.k as i32,
            s: self.s as i32,
            p: self.p as i32,
            splits: splits as i32,
            kchunk: kchunk as i32,
            accumulate: accumulate as i32,
            has_bias: has_bias as i32,
        }
    }
}

/// (splits, kchunk) for a GEMM with `tiles` output tiles, reduction length `k` and `out` outputs.
fn split_k(tiles: usize, k: usize, out: usize) -> (usize, usize) {
    let by_k = k.div_ceil(TILE_K * 8).max(1);
    let by_ws = (MAX_WORKSPACE / out.max(1)).max(1);
    let want = TARGET_BLOCKS.div_ceil(tiles.max(1));
    let splits = want.min(by_k).min(by_ws).clamp(1, MAX_SPLITS);
    let kchunk = k.div_ceil(splits).div_ceil(TILE_K).max(1) * TILE_K;
    (k.div_ceil(kchunk).max(1), kchunk)
}

fn gemm_cfg(grid: (usize, usize, usize)) -> cudarc::driver::LaunchConfig {
    assert!(grid.1 <= 65535 && grid.2 <= 65535, "conv grid {grid:?} too large");
    cudarc::driver::LaunchConfig {
        grid_dim: (grid.0.max(1) as u32, grid.1.max(1) as u32, grid.2.max(1) as u32),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Launches one of the GEMM kernels (all share the signature (in0, in1, bias, out, ws, args)) and,
/// when split, the reduction of its partial results into `out`. `bias` is None or (values, channels
/// of out, plane size of out).
#[allow(clippy::too_many_arguments)]
fn run_gemm(
    c: &CudaBackend,
    kernel: &'static str,
    grid: (usize, usize, usize),
    a: ConvArgs,
    in0: &CudaView<f32>,
    in1: &CudaView<f32>,
    bias: Option<(&CudaView<f32>, usize, usize)>,
    out: &mut CudaViewMut<f32>,
    out_numel: usize,
) {
    let cfg = gemm_cfg(grid);
    let splits = a.splits as usize;
    let mut ws = c.workspace(if splits > 1 { splits * out_numel } else { 1 });
    let (bias_v, bias_c, bias_hw) = match bias {
        Some((b, ch, hw)) => (b, ch, hw),
        None => (in1, 1, 1), // never read: has_bias = 0
    };
    launch!(c, "conv", kernel, cfg, in0, in1, bias_v, &mut *out, &mut *ws, &a);
    if splits > 1 {
        let (sp, numel) = (splits as i32, out_numel as i64);
        let (ch, hw) = (bias_c as i32, bias_hw as i64);
        let (acc, hb) = (a.accumulate, a.has_bias);
        let cfg = c.cfg_1d(out_numel);
        launch!(
            c,
            "conv",
            "splitk_reduce",
            cfg,
            &*ws,
            &sp,
            &numel,
            &mut *out,
            bias_v,
            &ch,
            &hw,
            &acc,
            &hb
        );
    }
}

/// y (+)= conv(x, W) (+ bias).
#[allow(clippy::too_many_arguments)]
fn gemm_fwd(
    c: &CudaBackend,
    pb: &ConvProblem,
    x: &CudaView<f32>,
    w: &CudaView<f32>,
    bias: Option<&CudaView<f32>>,
    y: &mut CudaViewMut<f32>,
    accumulate: bool,
) {
    let (m, n, k) = (pb.cout, pb.n * pb.ho * pb.wo, pb.cin * pb.k * pb.k);
    let out = pb.n * pb.cout * pb.ho * pb.wo;
    if out == 0 {
        return;
    }
    let tiles = (m.div_ceil(TILE), n.div_ceil(TILE));
    let (splits, kchunk) = split_k(tiles.0 * tiles.1, k, out);
    // With split-K the reduction applies bias and accumulation; the GEMM writes raw partials.
    let a = pb.args(splits, kchunk, accumulate, bias.is_some());
    let kernel = if pb.k == 4 { "conv_fwd_k4" } else { "conv_fwd_kx" };
    let hw = pb.ho * pb.wo;
    run_gemm(
        c,
        kernel,
        (tiles.1, tiles.0, splits),
        a,
        x,
        w,
        bias.map(|b| (b, pb.cout, hw)),
        y,
        out,
    );
}

/// dx (+)= conv data gradient of dy (+ bias: a transposed conv's forward).
#[allow(clippy::too_many_arguments)]
fn gemm_dgrad(
    c: &CudaBackend,
    pb: &ConvProblem,
    dy: &CudaView<f32>,
    w: &CudaView<f32>,
    bias: Option<&CudaView<f32>>,
    dx: &mut CudaViewMut<f32>,
    accumulate: bool,
) {
    let s = pb.s;
    let taps = pb.k.div_ceil(s);
    let (m, n_max, k_max) = (
        pb.cin,
        pb.n * pb.h.div_ceil(s) * pb.w.div_ceil(s),
        pb.cout * taps * taps,
    );
    let out = pb.n * pb.cin * pb.h * pb.w;
    if out == 0 {
        return;
    }
    let tiles = (m.div_ceil(TILE), n_max.div_ceil(TILE));
    let (splits, kchunk) = split_k(tiles.0 * tiles.1 * s * s, k_max, out);
    let a = pb.args(splits, kchunk, accumulate, bias.is_some());
    let kernel = match (pb.k.is_multiple_of(s), taps) {
        (true, 2) => "conv_dgrad_t2",
        (true, 4) => "conv_dgrad_t4",
        _ => "conv_dgrad_tx",
    };
    let hw = pb.h * pb.w;
    run_gemm(
        c,
        kernel,
        (tiles.1, tiles.0, splits * s * s),
        a,
        dy,
        w,
        bias.map(|b| (b, pb.cin, hw)),
        dx,
        out,
    );
}

/// dW += weight gradient of the convolution (x, dy).
fn gemm_wgrad(c: &CudaBackend, pb: &ConvProblem, x: &CudaView<f32>, dy: &CudaView<f32>, dw: &mut CudaViewMut<f32>) {
    let (m, n, k) = (pb.cout, pb.cin * pb.k * pb.k, pb.n * pb.ho * pb.wo);
    let out = m * n;
    if out == 0 || k == 0 {
        return;
    }
    let tiles = (m.div_ceil(TILE), n.div_ceil(TILE));
    let (splits, kchunk) = split_k(tiles.0 * tiles.1, k, out);
    let a = pb.args(splits, kchunk, true, false);
    let kernel = if pb.k == 4 { "conv_wgrad_k4" } else { "conv_wgrad_kx" };
    run_gemm(c, kernel, (tiles.1, tiles.0, splits), a, x, dy, None, dw, out);
}

/// db[c] += Σ over samples and pixels of dy[:, c] (per sample in f64, as the CPU).
fn bias_grad(c: &CudaBackend, dy: &Tensor, db: &mut CudaViewMut<f32>) {
    let s = dy.shape;
    let (n, ch, hw) = (s.n as i32, s.c as i32, s.hw() as i64);
    let cfg = cudarc::driver::LaunchConfig {
        grid_dim: (s.c as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    launch!(c, "conv", "bias_grad", cfg, dy.cuda(), &n, &ch, &hw, &mut *db);
}

fn full(t: &Tensor) -> CudaView<'_, f32> {
    t.cuda().slice(0..t.numel())
}

fn full_mut(t: &mut Tensor) -> CudaViewMut<'_, f32> {
    let n = t.numel();
    t.cuda_mut().slice_mut(0..n)
}

fn cuda_conv2d_forward(c: &CudaBackend, g: &ConvGeom, params: &Storage, p: &ConvParams, x: &Tensor, y: &mut Tensor) {
    let pb = ConvProblem {
        n: x.shape.n,
        cin: g.cin,
        h: x.shape.h,
        w: x.shape.w,
        cout: g.cout,
        ho: y.shape.h,
        wo: y.shape.w,
        k: g.k,
        s: g.stride,
        p: g.pad,
    };
    let w = params.cuda().slice(p.weight.range());
    let b = p.bias.map(|b| params.cuda().slice(b.range()));
    gemm_fwd(c, &pb, &full(x), &w, b.as_ref(), &mut full_mut(y), false);
}

#[allow(clippy::too_many_arguments)]
fn cuda_conv2d_backward(
    c: &CudaBackend,
    g: &ConvGeom,
    params: &Storage,
    p: &ConvParams,
    grads: Option<&mut Storage>,
    x: &Tensor,
    dy: &Tensor,
    dx: Option<&mut Tensor>,
    accumulate_dx: bool,
) {
    let pb = ConvProblem {
        n: x.shape.n,
        cin: g.cin,
        h: x.shape.h,
        w: x.shape.w,
        cout: g.cout,
        ho: dy.shape.h,
        wo: dy.shape.w,
        k: g.k,
        s: g.stride,
        p: g.pad,
    };
    if let Some(grads) = grads {
        let gs = grads.cuda_mut();
        gemm_wgrad(c, &pb, &full(x), &full(dy), &mut gs.slice_mut(p.weight.range()));
        if let Some(b) = p.bias {
            bias_grad(c, dy, &mut gs.slice_mut(b.range()));
        }
    }
    if let Some(dx) = dx {
        let w = params.cuda().slice(p.weight.range());
        gemm_dgrad(c, &pb, &full(dy), &w, None, &mut full_mut(dx), accumulate_dx);
    }
}

/// The convolution whose data gradient is this transposed conv: conv x = convT output (cout_T
/// channels at the large size), conv y = convT input (cin_T channels), conv W[cout=cin_T, cin=cout_T].
fn transposed_problem(g: &ConvGeom, x: &Tensor, y_shape: Shape) -> ConvProblem {
    ConvProblem {
        n: x.shape.n,
        cin: g.cout,
        h: y_shape.h,
        w: y_shape.w,
        cout: g.cin,
        ho: x.shape.h,
        wo: x.shape.w,
        k: g.k,
        s: g.stride,
        p: g.pad,
    }
}

fn cuda_conv_transpose2d_forward(
    c: &CudaBackend,
    g: &ConvGeom,
    params: &Storage,
    p: &ConvParams,
    x: &Tensor,
    y: &mut Tensor,
) {
    let pb = transposed_problem(g, x, y.shape);
    let w = params.cuda().slice(p.weight.range());
    let b = p.bias.map(|b| params.cuda().slice(b.range()));
    gemm_dgrad(c, &pb, &full(x), &w, b.as_ref(), &mut full_mut(y), false);
}

#[allow(clippy::too_many_arguments)]
fn cuda_conv_transpose2d_backward(
    c: &CudaBackend,
    g: &ConvGeom,
    params: &Storage,
    p: &ConvParams,
    grads: Option<&mut Storage>,
    x: &Tensor,
    dy: &Tensor,
    dx: Option<&mut Tensor>,
    accumulate_dx: bool,
) {
    let pb = transposed_problem(g, x, dy.shape);
    if let Some(grads) = grads {
        let gs = grads.cuda_mut();
        // conv weight gradient with conv x = dy_T and conv dy = x_T: dW_T[ci_T, (co_T, ki, kj)].
        gemm_wgrad(c, &pb, &full(dy), &full(x), &mut gs.slice_mut(p.weight.range()));
        if let Some(b) = p.bias {
            bias_grad(c, dy, &mut gs.slice_mut(b.range()));
        }
    }
    if let Some(dx) = dx {
        // dx_T = conv forward of dy_T with W_T read as [cout = cin_T, cin = cout_T, k, k].
        let w = params.cuda().slice(p.weight.range());
        gemm_fwd(c, &pb, &full(dy), &w, None, &mut full_mut(dx), accumulate_dx);
    }
}

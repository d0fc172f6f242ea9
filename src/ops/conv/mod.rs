//! Conv2d and ConvTranspose2d (square kernels, NCHW, no groups), forward and backward.
//!
//! Both devices phrase every op as one of three GEMMs of a single convolution "x → y with weight
//! W[cout, cin, k, k]" (a [`ConvProblem`]):
//! - fwd:   y  = W · im2col(x)          (M = cout, N = ho·wo, K = cin·k²)
//! - dgrad: dx = col2im(Wᵀ · dy)        (M = cin·k², N = ho·wo, K = cout on the CPU; a gather on CUDA)
//! - wgrad: dW += dy · im2col(x)ᵀ       (M = cout, N = cin·k², K = ho·wo, summed over samples)
//!
//! A transposed conv is the same convolution with the roles of input and output swapped (conv x =
//! convT output, conv y = convT input, W_T[cin_T, cout_T, k, k] read as W[cout, cin, k, k]): its
//! forward is dgrad, its data gradient fwd, its weight gradient wgrad(x = dy_T, dy = x_T).
//!
//! - `mod.rs` (this file): geometry, shape checks, the role swap, device dispatch.
//! - `cpu.rs`: the reference, im2col/col2im around a multi-threaded GEMM (`im2col.rs`); few
//!   output channels at stride 1 without padding take `direct.rs` (no patch matrix), and the
//!   many-channel 3×3 of the ResNet blocks Winograd's F(2×2, 3×3) (`winograd.rs`).
//! - `cuda.rs`: the launchers of kernels/conv.cu (implicit GEMMs, split-K).

/// Calls `$f($args)` compiled with AVX-512 or AVX2+FMA enabled when the CPU has them: `$f` is an
/// `#[inline(always)]` function, so its body is code-generated inside each wrapper.
macro_rules! simd {
    ($f:ident $(::<$($g:literal),*>)? ( $($a:ident : $t:ty),* )) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512($($a: $t),*) { $f$(::<$($g),*>)?($($a),*) }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($a: $t),*) { $f$(::<$($g),*>)?($($a),*) }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the features the wrapper is compiled for.
                unsafe { avx512($($a),*) }
            } else if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: as above.
                unsafe { avx2($($a),*) }
            } else {
                $f$(::<$($g),*>)?($($a),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $f$(::<$($g),*>)?($($a),*)
        }
    }};
}

mod cpu;
pub(crate) mod cuda;
mod direct;
mod im2col;
mod winograd;

use crate::device::Device;
use crate::tensor::{Shape, Span, Storage, Tensor};

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
    /// The same geometry with `output_padding` (a transposed conv's extra rows/cols at the end).
    pub const fn with_output_padding(mut self, output_padding: usize) -> Self {
        self.output_padding = output_padding;
        self
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

/// The convolution x [n, cin, h, w] → y [n, cout, ho, wo] with weight [cout, cin, k, k] that both
/// devices compute with; a transposed conv is described by the convolution it is the data
/// gradient of.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvProblem {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub ho: usize,
    pub wo: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
}

impl ConvProblem {
    /// A conv with input shape `x` and output shape `y`.
    fn conv(g: &ConvGeom, x: Shape, y: Shape) -> Self {
        ConvProblem {
            n: x.n,
            cin: g.cin,
            h: x.h,
            w: x.w,
            cout: g.cout,
            ho: y.h,
            wo: y.w,
            k: g.k,
            s: g.stride,
            p: g.pad,
        }
    }
    /// A transposed conv with input shape `x` and output shape `y` (`output_padding` is in y's
    /// size): conv x = convT output (cout_T channels), conv y = convT input (cin_T channels).
    fn transposed(g: &ConvGeom, x: Shape, y: Shape) -> Self {
        ConvProblem {
            n: x.n,
            cin: g.cout,
            h: y.h,
            w: y.w,
            cout: g.cin,
            ho: x.h,
            wo: x.w,
            k: g.k,
            s: g.stride,
            p: g.pad,
        }
    }
    pub fn x_len(&self) -> usize {
        self.cin * self.h * self.w
    }
    pub fn y_len(&self) -> usize {
        self.cout * self.ho * self.wo
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
    assert!(
        g.output_padding < g.stride.max(1) || !transposed,
        "convT {g:?}: output_padding must be smaller than the stride"
    );
}

/// The weight slice and optional bias slice of a conv layer, on the host.
fn host_weights<'a>(params: &'a Storage, p: &ConvParams) -> (&'a [f32], Option<&'a [f32]>) {
    let v = params.cpu();
    (&v[p.weight.range()], p.bias.map(|b| &v[b.range()]))
}

// ---------------------------------------------------------------------------------------------
// Conv2d

/// y = conv2d(x, W) + b. Weight [cout, cin, k, k].
pub fn conv2d_forward(dev: &Device, g: &ConvGeom, params: &Storage, p: &ConvParams, x: &Tensor, y: &mut Tensor) {
    check_conv_shapes(g, x, y, false);
    let pb = ConvProblem::conv(g, x.shape, y.shape);
    match dev {
        Device::Cpu => {
            let (w, b) = host_weights(params, p);
            cpu::fwd(&pb, x.cpu(), w, b, y.data.cpu_mut(), false);
        }
        Device::Cuda(c) => {
            let (w, b) = cuda::weights(params, p);
            cuda::fwd(c, &pb, &cuda::full(x), &w, b.as_ref(), &mut cuda::full_mut(y), false);
        }
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
    let pb = ConvProblem::conv(g, x.shape, dy.shape);
    match dev {
        Device::Cpu => {
            if let Some(grads) = grads {
                let gv = grads.cpu_mut();
                cpu::wgrad(&pb, x.cpu(), dy.cpu(), &mut gv[p.weight.range()]);
                if let Some(b) = p.bias {
                    cpu::bias_grad(dy, &mut gv[b.range()]);
                }
            }
            if let Some(dx) = dx {
                let (w, _) = host_weights(params, p);
                cpu::dgrad(&pb, dy.cpu(), w, None, dx.data.cpu_mut(), accumulate_dx);
            }
        }
        Device::Cuda(c) => {
            if let Some(grads) = grads {
                let gs = grads.cuda_mut();
                cuda::wgrad(
                    c,
                    &pb,
                    &cuda::full(x),
                    &cuda::full(dy),
                    &mut gs.slice_mut(p.weight.range()),
                );
                if let Some(b) = p.bias {
                    cuda::bias_grad(c, dy, &mut gs.slice_mut(b.range()));
                }
            }
            if let Some(dx) = dx {
                let (w, _) = cuda::weights(params, p);
                cuda::dgrad(
                    c,
                    &pb,
                    &cuda::full(dy),
                    &w,
                    None,
                    &mut cuda::full_mut(dx),
                    accumulate_dx,
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ConvTranspose2d: the role swap

/// y = conv_transpose2d(x, W) + b. Weight [cin, cout, k, k]. This is `dgrad` of the convolution
/// whose output has x's shape (see the top of this file).
pub fn conv_transpose2d_forward(
    dev: &Device,
    g: &ConvGeom,
    params: &Storage,
    p: &ConvParams,
    x: &Tensor,
    y: &mut Tensor,
) {
    check_conv_shapes(g, x, y, true);
    let pb = ConvProblem::transposed(g, x.shape, y.shape);
    match dev {
        Device::Cpu => {
            let (w, b) = host_weights(params, p);
            cpu::dgrad(&pb, x.cpu(), w, b, y.data.cpu_mut(), false);
        }
        Device::Cuda(c) => {
            let (w, b) = cuda::weights(params, p);
            cuda::dgrad(c, &pb, &cuda::full(x), &w, b.as_ref(), &mut cuda::full_mut(y), false);
        }
    }
}

/// Backward of conv_transpose2d; same conventions as `conv2d_backward`. The weight gradient is
/// `wgrad` with conv x = dy and conv dy = x; the data gradient is `fwd` of dy.
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
    let pb = ConvProblem::transposed(g, x.shape, dy.shape);
    match dev {
        Device::Cpu => {
            let (w, _) = host_weights(params, p);
            let mut grads = grads;
            let dw = grads.as_deref_mut().map(|gr| &mut gr.cpu_mut()[p.weight.range()]);
            let dx = dx.map(|dx| (w, dx.data.cpu_mut(), accumulate_dx));
            // Both GEMMs read the patch matrix of dy: one im2col per sample serves both.
            cpu::fwd_and_wgrad(&pb, dy.cpu(), dx, dw.map(|dw| (x.cpu(), dw)));
            if let (Some(gr), Some(b)) = (grads, p.bias) {
                cpu::bias_grad(dy, &mut gr.cpu_mut()[b.range()]);
            }
        }
        Device::Cuda(c) => {
            if let Some(grads) = grads {
                let gs = grads.cuda_mut();
                cuda::wgrad(
                    c,
                    &pb,
                    &cuda::full(dy),
                    &cuda::full(x),
                    &mut gs.slice_mut(p.weight.range()),
                );
                if let Some(b) = p.bias {
                    cuda::bias_grad(c, dy, &mut gs.slice_mut(b.range()));
                }
            }
            if let Some(dx) = dx {
                let (w, _) = cuda::weights(params, p);
                cuda::fwd(
                    c,
                    &pb,
                    &cuda::full(dy),
                    &w,
                    None,
                    &mut cuda::full_mut(dx),
                    accumulate_dx,
                );
            }
        }
    }
}

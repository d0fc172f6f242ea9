//! Elementwise activations and dropout, forward and backward. CUDA twin: kernels/activation.cu.
//!
//! Backward conventions: LeakyReLU and ReLU take their mask from the forward *input* (the reference
//! runs them in place and masks on the output; the sign is the same since the slope is positive),
//! Tanh and Sigmoid from the forward *output*.

use crate::device::cpu::{zip2_map, zip_map};
use crate::device::cuda::launch;
use crate::device::step_values::StepValues;
use crate::device::{CudaBackend, Device};
use crate::tensor::Tensor;
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// LeakyReLU with the given negative slope (0.2 in the networks).
    LeakyRelu(f32),
    Relu,
    Tanh,
    Sigmoid,
}

pub(crate) fn act_fwd(a: Act, x: f32) -> f32 {
    match a {
        Act::LeakyRelu(s) => {
            if x > 0.0 {
                x
            } else {
                x * s
            }
        }
        Act::Relu => x.max(0.0),
        Act::Tanh => x.tanh(),
        Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
    }
}

/// d/dx given the forward input `x` and output `y`.
pub(crate) fn act_grad(a: Act, x: f32, y: f32) -> f32 {
    match a {
        Act::LeakyRelu(s) => {
            if x > 0.0 {
                1.0
            } else {
                s
            }
        }
        Act::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Act::Tanh => 1.0 - y * y,
        Act::Sigmoid => y * (1.0 - y),
    }
}

/// y = act(x).
pub fn activation_forward(dev: &Device, a: Act, x: &Tensor, y: &mut Tensor) {
    assert_eq!(x.shape, y.shape, "activation shapes");
    match dev {
        Device::Cpu => zip_map(y.cpu_mut(), x.cpu(), |o, v| *o = act_fwd(a, v)),
        Device::Cuda(c) => cuda_activation_forward(c, a, x, y),
    }
}

/// dx = act'(x)·dy, from the forward input `x` and output `y` (either may be the one that is used).
pub fn activation_backward(dev: &Device, a: Act, x: &Tensor, y: &Tensor, dy: &Tensor, dx: &mut Tensor) {
    assert!(
        x.shape == y.shape && x.shape == dy.shape && x.shape == dx.shape,
        "activation backward shapes"
    );
    match dev {
        Device::Cpu => {
            let (xv, yv) = (x.cpu(), y.cpu());
            let (dyv, dxv) = (dy.cpu(), dx.cpu_mut());
            dxv.par_chunks_mut(1 << 14).enumerate().for_each(|(ci, out)| {
                let base = ci << 14;
                for (j, o) in out.iter_mut().enumerate() {
                    let i = base + j;
                    *o = act_grad(a, xv[i], yv[i]) * dyv[i];
                }
            });
        }
        Device::Cuda(c) => cuda_activation_backward(c, a, x, y, dy, dx),
    }
}

/// Channels [c0, c0 + x.c) of `y` = act(x): an activation whose output is one part of a channel
/// concatenation, written straight into it. The U-Net's ReLU(concat(skip, up)) is two of these,
/// so the concatenation itself is never stored.
pub fn activation_into_channels(dev: &Device, a: Act, x: &Tensor, y: &mut Tensor, c0: usize) {
    let (s, d) = (x.shape, y.shape);
    assert!(
        s.n == d.n && s.h == d.h && s.w == d.w && c0 + s.c <= d.c,
        "activation_into_channels: {s} into {d} at {c0}"
    );
    match dev {
        Device::Cpu => {
            let (xv, yv) = (x.cpu(), y.cpu_mut());
            for n in 0..s.n {
                let to = &mut yv[(n * d.c + c0) * d.hw()..(n * d.c + c0 + s.c) * d.hw()];
                zip_map(to, &xv[n * s.chw()..(n + 1) * s.chw()], |o, v| *o = act_fwd(a, v));
            }
        }
        Device::Cuda(c) => cuda_activation_into_channels(c, a, x, y, c0),
    }
}

/// dx = act'·dy over channels [c0, c0 + dx.c) of the activation's output `y` and its gradient
/// `dy` (the backward of `activation_into_channels`). The gradient follows from the output for
/// every kind: LeakyReLU's and ReLU's output has the sign of their input.
pub fn activation_backward_from_channels(dev: &Device, a: Act, y: &Tensor, dy: &Tensor, c0: usize, dx: &mut Tensor) {
    let (s, d) = (y.shape, dx.shape);
    assert!(
        s == dy.shape && s.n == d.n && s.h == d.h && s.w == d.w && c0 + d.c <= s.c,
        "activation_backward_from_channels: {d} from {s} at {c0}"
    );
    match dev {
        Device::Cpu => {
            let (yv, dyv, dxv) = (y.cpu(), dy.cpu(), dx.cpu_mut());
            for n in 0..s.n {
                let from = (n * s.c + c0) * s.hw()..(n * s.c + c0 + d.c) * s.hw();
                let to = &mut dxv[n * d.chw()..(n + 1) * d.chw()];
                zip2_map(to, &yv[from.clone()], &dyv[from], |o, v, g| *o = act_grad(a, v, v) * g);
            }
        }
        Device::Cuda(c) => cuda_activation_backward_from_channels(c, a, y, dy, c0, dx),
    }
}

/// The counter-based hash behind dropout masks: SplitMix64's finaliser of `seed + i·golden`.
/// kernels/common.cuh has the same function, so CPU and GPU draw identical masks.
pub fn splitmix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) with 24 bits, from the top bits of the hash.
pub fn uniform(seed: u64, i: u64) -> f32 {
    (splitmix(seed, i) >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// Inverted dropout: an element is kept when uniform(seed, i) ≥ p and then scaled by 1/(1−p).
/// `mask` receives the per-element factor (0 or 1/(1−p)) for the backward. (Allocates the seed's
/// device copy: for tests and one-off calls; networks keep their seeds in `StepValues` and call
/// `dropout_apply`.)
pub fn dropout_forward(dev: &Device, p: f32, seed: u64, x: &Tensor, y: &mut Tensor, mask: &mut Tensor) {
    let mut seeds = StepValues::new(dev, 1);
    seeds.set(dev, &[seed]);
    dropout_apply(dev, p, &seeds, 0, x, y, mask);
}

/// Dropout with seed `seeds[i]`, read from memory (device memory on CUDA, so a captured step
/// replays with each step's masks).
pub fn dropout_apply(
    dev: &Device,
    p: f32,
    seeds: &StepValues<u64>,
    i: usize,
    x: &Tensor,
    y: &mut Tensor,
    mask: &mut Tensor,
) {
    assert!(x.shape == y.shape && x.shape == mask.shape, "dropout shapes");
    assert!((0.0..1.0).contains(&p), "dropout probability {p} outside [0, 1)");
    match dev {
        Device::Cpu => {
            let seed = seeds.host()[i];
            let scale = 1.0 / (1.0 - p);
            mask.cpu_mut()
                .par_chunks_mut(1 << 14)
                .enumerate()
                .for_each(|(ci, out)| {
                    for (j, o) in out.iter_mut().enumerate() {
                        *o = if uniform(seed, ((ci << 14) + j) as u64) >= p {
                            scale
                        } else {
                            0.0
                        };
                    }
                });
            zip2_map(y.cpu_mut(), x.cpu(), mask.cpu(), |o, v, m| *o = v * m);
        }
        Device::Cuda(c) => cuda_dropout_forward(c, p, seeds, i, x, y, mask),
    }
}

/// dx = dy · mask (elementwise product; also the generic multiply).
pub fn mul(dev: &Device, a: &Tensor, b: &Tensor, out: &mut Tensor) {
    assert!(a.shape == b.shape && a.shape == out.shape, "mul shapes");
    match dev {
        Device::Cpu => zip2_map(out.cpu_mut(), a.cpu(), b.cpu(), |o, x, m| *o = x * m),
        Device::Cuda(c) => cuda_mul(c, a, b, out),
    }
}

// ---------------------------------------------------------------------------------------------
// CUDA launchers (kernels/activation.cu)

/// The activation's code and slope in kernels/common.cuh.
pub(crate) fn act_code(a: Act) -> (i32, f32) {
    match a {
        Act::LeakyRelu(s) => (0, s),
        Act::Relu => (1, 0.0),
        Act::Tanh => (2, 0.0),
        Act::Sigmoid => (3, 0.0),
    }
}

fn cuda_activation_forward(c: &CudaBackend, a: Act, x: &Tensor, y: &mut Tensor) {
    let (kind, slope) = act_code(a);
    let n = x.numel() as i64;
    let cfg = c.cfg_1d(x.numel());
    launch!(
        c,
        "activation",
        "act_forward",
        cfg,
        x.cuda(),
        y.cuda_mut(),
        &n,
        &kind,
        &slope
    );
}

fn cuda_activation_backward(c: &CudaBackend, a: Act, x: &Tensor, y: &Tensor, dy: &Tensor, dx: &mut Tensor) {
    let (kind, slope) = act_code(a);
    let n = x.numel() as i64;
    let cfg = c.cfg_1d(x.numel());
    launch!(
        c,
        "activation",
        "act_backward",
        cfg,
        x.cuda(),
        y.cuda(),
        dy.cuda(),
        dx.cuda_mut(),
        &n,
        &kind,
        &slope
    );
}

fn cuda_activation_into_channels(c: &CudaBackend, a: Act, x: &Tensor, y: &mut Tensor, c0: usize) {
    let (kind, slope) = act_code(a);
    let (s, d) = (x.shape, y.shape);
    let (n, x_c, y_c, c0, hw) = (s.n as i32, s.c as i32, d.c as i32, c0 as i32, s.hw() as i64);
    let cfg = c.cfg_1d(x.numel());
    launch!(
        c,
        "activation",
        "act_forward_into",
        cfg,
        x.cuda(),
        y.cuda_mut(),
        &n,
        &x_c,
        &y_c,
        &c0,
        &hw,
        &kind,
        &slope
    );
}

fn cuda_activation_backward_from_channels(
    c: &CudaBackend,
    a: Act,
    y: &Tensor,
    dy: &Tensor,
    c0: usize,
    dx: &mut Tensor,
) {
    let (kind, slope) = act_code(a);
    let (s, d) = (y.shape, dx.shape);
    let (n, dx_c, y_c, c0, hw) = (s.n as i32, d.c as i32, s.c as i32, c0 as i32, s.hw() as i64);
    let cfg = c.cfg_1d(dx.numel());
    launch!(
        c,
        "activation",
        "act_backward_from",
        cfg,
        y.cuda(),
        dy.cuda(),
        dx.cuda_mut(),
        &n,
        &dx_c,
        &y_c,
        &c0,
        &hw,
        &kind,
        &slope
    );
}

fn cuda_dropout_forward(
    c: &CudaBackend,
    p: f32,
    seeds: &StepValues<u64>,
    i: usize,
    x: &Tensor,
    y: &mut Tensor,
    mask: &mut Tensor,
) {
    let seed = seeds.cuda(i);
    // The same f32 expression as the CPU path, so both scale by the identical value.
    let scale = 1.0 / (1.0 - p);
    let n = x.numel() as i64;
    let cfg = c.cfg_1d(x.numel());
    launch!(
        c,
        "activation",
        "dropout_forward",
        cfg,
        x.cuda(),
        y.cuda_mut(),
        mask.cuda_mut(),
        &n,
        &seed,
        &p,
        &scale
    );
}

fn cuda_mul(c: &CudaBackend, a: &Tensor, b: &Tensor, out: &mut Tensor) {
    let n = a.numel() as i64;
    let cfg = c.cfg_1d(a.numel());
    launch!(
        c,
        "activation",
        "mul_forward",
        cfg,
        a.cuda(),
        b.cuda(),
        out.cuda_mut(),
        &n
    );
}

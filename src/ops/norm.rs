//! Batch normalisation over (N, H, W) per channel, PyTorch semantics (SPEC.md §5): train mode
//! normalises with the batch mean and *biased* variance and updates the running stats with the
//! *unbiased* variance; eval mode uses the running stats. CUDA twin: kernels/norm.cu.

use crate::device::cuda::launch;
use crate::device::{CudaBackend, Device};
use crate::tensor::{Span, Storage, Tensor};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug)]
pub struct BnParams {
    /// gamma and beta in the network's parameter buffer.
    pub weight: Span,
    pub bias: Span,
    /// running_mean and running_var in the network's buffer storage.
    pub running_mean: Span,
    pub running_var: Span,
    pub eps: f32,
    pub momentum: f32,
}

/// Per-channel statistics a train-mode forward keeps for its backward (length C each).
pub struct BnSaved {
    pub mean: Storage,
    pub invstd: Storage,
}

/// Sums f over every (n, h, w) element of channel c, in f64.
fn channel_sum(v: &[f32], n: usize, c: usize, hw: usize, ch: usize, f: impl Fn(usize, f32) -> f64) -> f64 {
    let mut s = 0.0f64;
    for i in 0..n {
        let base = (i * c + ch) * hw;
        for (j, &x) in v[base..base + hw].iter().enumerate() {
            s += f(base + j, x);
        }
    }
    s
}

/// Train-mode forward: y = (x − mean)·invstd·γ + β with batch statistics; updates running stats.
pub fn batch_norm_forward_train(
    dev: &Device,
    p: &BnParams,
    params: &Storage,
    buffers: &mut Storage,
    x: &Tensor,
    y: &mut Tensor,
    saved: &mut BnSaved,
) {
    let s = x.shape;
    assert_eq!(s, y.shape);
    let m = s.n * s.hw();
    assert!(
        m > 1,
        "batch norm in train mode needs more than one value per channel (input {s})"
    );
    match dev {
        Device::Cpu => {
            let xv = x.cpu();
            // Two passes in f64: mean, then the centred sum of squares (stable for large means).
            let stats: Vec<(f64, f64)> = (0..s.c)
                .into_par_iter()
                .map(|ch| {
                    let mean = channel_sum(xv, s.n, s.c, s.hw(), ch, |_, v| v as f64) / m as f64;
                    let ss = channel_sum(xv, s.n, s.c, s.hw(), ch, |_, v| (v as f64 - mean).powi(2));
                    (mean, ss)
                })
                .collect();
            let (g, b) = (&params.cpu()[p.weight.range()], &params.cpu()[p.bias.range()]);
            let mean: Vec<f32> = stats.iter().map(|&(mu, _)| mu as f32).collect();
            let invstd: Vec<f32> = stats
                .iter()
                .map(|&(_, ss)| (1.0 / (ss / m as f64 + p.eps as f64).sqrt()) as f32)
                .collect();
            y.data
                .cpu_mut()
                .par_chunks_mut(s.hw())
                .enumerate()
                .for_each(|(plane, out)| {
                    let ch = plane % s.c;
                    let src = &xv[plane * s.hw()..(plane + 1) * s.hw()];
                    let (mu, is, gg, bb) = (mean[ch], invstd[ch], g[ch], b[ch]);
                    out.iter_mut().zip(src).for_each(|(o, &v)| *o = (v - mu) * is * gg + bb);
                });
            let buf = buffers.cpu_mut();
            let mom = p.momentum as f64;
            for (ch, &(mu, ss)) in stats.iter().enumerate() {
                let rm = &mut buf[p.running_mean.off + ch];
                *rm = ((1.0 - mom) * *rm as f64 + mom * mu) as f32;
                let rv = &mut buf[p.running_var.off + ch];
                *rv = ((1.0 - mom) * *rv as f64 + mom * ss / (m - 1) as f64) as f32;
            }
            saved.mean.cpu_mut().copy_from_slice(&mean);
            saved.invstd.cpu_mut().copy_from_slice(&invstd);
        }
        Device::Cuda(c) => cuda_batch_norm_forward_train(c, p, params, buffers, x, y, saved),
    }
}

/// Eval-mode forward: normalises with the running statistics.
pub fn batch_norm_forward_eval(
    dev: &Device,
    p: &BnParams,
    params: &Storage,
    buffers: &Storage,
    x: &Tensor,
    y: &mut Tensor,
) {
    let s = x.shape;
    assert_eq!(s, y.shape);
    match dev {
        Device::Cpu => {
            let (g, b) = (&params.cpu()[p.weight.range()], &params.cpu()[p.bias.range()]);
            let (rm, rv) = (
                &buffers.cpu()[p.running_mean.range()],
                &buffers.cpu()[p.running_var.range()],
            );
            let xv = x.cpu();
            y.data
                .cpu_mut()
                .par_chunks_mut(s.hw())
                .enumerate()
                .for_each(|(plane, out)| {
                    let ch = plane % s.c;
                    let is = 1.0 / (rv[ch] + p.eps).sqrt();
                    let src = &xv[plane * s.hw()..(plane + 1) * s.hw()];
                    out.iter_mut()
                        .zip(src)
                        .for_each(|(o, &v)| *o = (v - rm[ch]) * is * g[ch] + b[ch]);
                });
        }
        Device::Cuda(c) => cuda_batch_norm_forward_eval(c, p, params, buffers, x, y),
    }
}

/// Train-mode backward. dx = invstd/M·(M·dŷ − Σdŷ − x̂·Σ(dŷ·x̂)) with dŷ = dy·γ, x̂ = (x − mean)·invstd.
/// Adds dγ = Σ dy·x̂ and dβ = Σ dy into `grads` when given (not when the network is frozen).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    dev: &Device,
    p: &BnParams,
    params: &Storage,
    grads: Option<&mut Storage>,
    saved: &BnSaved,
    x: &Tensor,
    dy: &Tensor,
    dx: &mut Tensor,
) {
    let s = x.shape;
    assert!(s == dy.shape && s == dx.shape, "batch norm backward shapes");
    match dev {
        Device::Cpu => {
            let (xv, dyv) = (x.cpu(), dy.cpu());
            let (mean, invstd) = (saved.mean.cpu(), saved.invstd.cpu());
            let m = (s.n * s.hw()) as f64;
            // Σdy and Σdy·x̂ per channel.
            let sums: Vec<(f64, f64)> = (0..s.c)
                .into_par_iter()
                .map(|ch| {
                    let (mu, is) = (mean[ch] as f64, invstd[ch] as f64);
                    let sdy = channel_sum(dyv, s.n, s.c, s.hw(), ch, |_, d| d as f64);
                    let sdyx = channel_sum(dyv, s.n, s.c, s.hw(), ch, |i, d| d as f64 * (xv[i] as f64 - mu) * is);
                    (sdy, sdyx)
                })
                .collect();
            let g = &params.cpu()[p.weight.range()];
            dx.data
                .cpu_mut()
                .par_chunks_mut(s.hw())
                .enumerate()
                .for_each(|(plane, out)| {
                    let ch = plane % s.c;
                    let (mu, is, gg) = (mean[ch] as f64, invstd[ch] as f64, g[ch] as f64);
                    let (sdy, sdyx) = sums[ch];
                    let base = plane * s.hw();
                    for (j, o) in out.iter_mut().enumerate() {
                        let xhat = (xv[base + j] as f64 - mu) * is;
                        *o = (gg * is / m * (m * dyv[base + j] as f64 - sdy - xhat * sdyx)) as f32;
                    }
                });
            if let Some(grads) = grads {
                let gv = grads.cpu_mut();
                for (ch, &(sdy, sdyx)) in sums.iter().enumerate() {
                    gv[p.weight.off + ch] += sdyx as f32;
                    gv[p.bias.off + ch] += sdy as f32;
                }
            }
        }
        Device::Cuda(c) => cuda_batch_norm_backward(c, p, params, grads, saved, x, dy, dx),
    }
}

// ---------------------------------------------------------------------------------------------
// CUDA launchers (kernels/norm.cu)

/// Mirror of `struct BnArgs` in kernels/norm.cu.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct BnArgs {
    hw: i64,
    n: i32,
    c: i32,
    gamma_off: i32,
    beta_off: i32,
    rmean_off: i32,
    rvar_off: i32,
    eps: f32,
    momentum: f32,
    has_grads: i32,
    pad: i32,
}

// SAFETY: plain-old-data with the C layout of the kernel's parameter struct.
unsafe impl cudarc::driver::DeviceRepr for BnArgs {}

fn bn_args(p: &BnParams, x: &Tensor, has_grads: bool) -> BnArgs {
    let s = x.shape;
    let off = |sp: Span| i32::try_from(sp.off).expect("parameter offset beyond i32");
    BnArgs {
        hw: s.hw() as i64,
        n: s.n as i32,
        c: s.c as i32,
        gamma_off: off(p.weight),
        beta_off: off(p.bias),
        rmean_off: off(p.running_mean),
        rvar_off: off(p.running_var),
        eps: p.eps,
        momentum: p.momentum,
        has_grads: has_grads as i32,
        pad: 0,
    }
}

/// One block per channel.
fn per_channel(c: usize) -> cudarc::driver::LaunchConfig {
    cudarc::driver::LaunchConfig {
        grid_dim: (c as u32, 1, 1),
        block_dim: (crate::device::cuda::BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn cuda_batch_norm_forward_train(
    c: &CudaBackend,
    p: &BnParams,
    params: &Storage,
    buffers: &mut Storage,
    x: &Tensor,
    y: &mut Tensor,
    saved: &mut BnSaved,
) {
    let a = bn_args(p, x, false);
    let cfg = per_channel(x.shape.c);
    launch!(
        c,
        "norm",
        "bn_forward_train",
        cfg,
        x.cuda(),
        y.cuda_mut(),
        params.cuda(),
        buffers.cuda_mut(),
        saved.mean.cuda_mut(),
        saved.invstd.cuda_mut(),
        &a
    );
}

fn cuda_batch_norm_forward_eval(
    c: &CudaBackend,
    p: &BnParams,
    params: &Storage,
    buffers: &Storage,
    x: &Tensor,
    y: &mut Tensor,
) {
    let a = bn_args(p, x, false);
    let cfg = c.cfg_1d(x.numel());
    launch!(
        c,
        "norm",
        "bn_forward_eval",
        cfg,
        x.cuda(),
        y.cuda_mut(),
        params.cuda(),
        buffers.cuda(),
        &a
    );
}

#[allow(clippy::too_many_arguments)]
fn cuda_batch_norm_backward(
    c: &CudaBackend,
    p: &BnParams,
    params: &Storage,
    grads: Option<&mut Storage>,
    saved: &BnSaved,
    x: &Tensor,
    dy: &Tensor,
    dx: &mut Tensor,
) {
    let cfg = per_channel(x.shape.c);
    match grads {
        Some(g) => {
            let a = bn_args(p, x, true);
            launch!(
                c,
                "norm",
                "bn_backward",
                cfg,
                x.cuda(),
                dy.cuda(),
                dx.cuda_mut(),
                params.cuda(),
                g.cuda_mut(),
                saved.mean.cuda(),
                saved.invstd.cuda(),
                &a
            );
        }
        None => {
            // No gradients wanted: the kernel never touches its grads argument (params stands in).
            let a = bn_args(p, x, false);
            launch!(
                c,
                "norm",
                "bn_backward",
                cfg,
                x.cuda(),
                dy.cuda(),
                dx.cuda_mut(),
                params.cuda(),
                params.cuda(),
                saved.mean.cuda(),
                saved.invstd.cuda(),
                &a
            );
        }
    }
}

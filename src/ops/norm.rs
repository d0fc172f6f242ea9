//! Normalisation layers, PyTorch semantics (SPEC.md §5). CUDA twin: kernels/norm.cu.
//! - BatchNorm2d over (N, H, W) per channel: train mode normalises with the batch mean and
//!   *biased* variance and updates the running stats with the *unbiased* variance; eval mode uses
//!   the running stats.
//! - InstanceNorm2d (affine=False, track_running_stats=False, CycleGAN's): over (H, W) per sample
//!   and channel, with the biased variance, in train and eval mode alike; no parameters.
//!
//! Fused activation: in the networks every norm but a few is followed by LeakyReLU or ReLU, so
//! each forward takes the activation to apply as it writes y (`act`), and each backward then
//! takes the gradient of the activation's output with that output (`act: Some((kind, y))`) and
//! returns the gradient of the norm's input: norm → activation is one pass over memory each
//! way instead of two, and rounds exactly as the two ops one after the other (the activation of
//! the same f32 value; act'·dy in f32 with the mask from the output's sign, as `activation_backward`).

use crate::device::cuda::{launch, SCRATCH64_LEN};
use crate::device::{CudaBackend, Device};
use crate::ops::activation::{act_code, act_fwd, act_grad, Act};
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

/// The statistics a forward keeps for its backward: per channel (length C) for batch norm, per
/// sample and channel (length N·C, index n·C + c) for instance norm.
pub struct BnSaved {
    pub mean: Storage,
    pub invstd: Storage,
}

/// The activation fused into a norm's output; LeakyReLU and ReLU only (their gradient follows
/// from the sign of their output, which is all the backward keeps).
fn check_fusable(act: Option<Act>) {
    assert!(
        matches!(act, None | Some(Act::LeakyRelu(_) | Act::Relu)),
        "a norm fuses only LeakyReLU or ReLU, not {act:?}"
    );
}

/// The fused activation of a norm's output value (the identity without one).
#[inline(always)]
fn fused(act: Option<Act>, v: f32) -> f32 {
    act.map_or(v, |a| act_fwd(a, v))
}

/// The backward's view of the fused activation: its kind and forward output.
type FusedOut<'a> = Option<(Act, &'a [f32])>;

fn fused_out<'a>(act: Option<(Act, &'a Tensor)>, x: &Tensor) -> FusedOut<'a> {
    act.map(|(a, y)| {
        check_fusable(Some(a));
        assert_eq!(y.shape, x.shape, "fused activation output shape");
        (a, y.cpu())
    })
}

/// The gradient reaching the norm's output at i: dy, or dy through the fused activation.
#[inline(always)]
fn fused_dy(act: FusedOut, i: usize, dy: f32) -> f32 {
    act.map_or(dy, |(a, y)| act_grad(a, y[i], y[i]) * dy)
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

/// Train-mode forward: y = act((x − mean)·invstd·γ + β) with batch statistics (act: the fused
/// activation, or none); updates running stats.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward_train(
    dev: &Device,
    p: &BnParams,
    params: &Storage,
    buffers: &mut Storage,
    x: &Tensor,
    y: &mut Tensor,
    saved: &mut BnSaved,
    act: Option<Act>,
) {
    let s = x.shape;
    assert_eq!(s, y.shape);
    check_fusable(act);
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
                    out.iter_mut()
                        .zip(src)
                        .for_each(|(o, &v)| *o = fused(act, (v - mu) * is * gg + bb));
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
        Device::Cuda(c) => cuda_batch_norm_forward_train(c, p, params, buffers, x, y, saved, act),
    }
}

/// Eval-mode forward: normalises with the running statistics, then the fused activation.
pub fn batch_norm_forward_eval(
    dev: &Device,
    p: &BnParams,
    params: &Storage,
    buffers: &Storage,
    x: &Tensor,
    y: &mut Tensor,
    act: Option<Act>,
) {
    let s = x.shape;
    assert_eq!(s, y.shape);
    check_fusable(act);
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
                        .for_each(|(o, &v)| *o = fused(act, (v - rm[ch]) * is * g[ch] + b[ch]));
                });
        }
        Device::Cuda(c) => cuda_batch_norm_forward_eval(c, p, params, buffers, x, y, act),
    }
}

/// Train-mode backward. dx = invstd/M·(M·dŷ − Σdŷ − x̂·Σ(dŷ·x̂)) with dŷ = dy·γ, x̂ = (x − mean)·invstd.
/// Adds dγ = Σ dy·x̂ and dβ = Σ dy into `grads` when given (not when the network is frozen).
/// With `act` = (the fused activation, its forward output), `dy` is the gradient of that output.
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
    act: Option<(Act, &Tensor)>,
) {
    let s = x.shape;
    assert!(s == dy.shape && s == dx.shape, "batch norm backward shapes");
    match dev {
        Device::Cpu => {
            let (xv, dyv) = (x.cpu(), dy.cpu());
            let act = fused_out(act, x);
            let (mean, invstd) = (saved.mean.cpu(), saved.invstd.cpu());
            let m = (s.n * s.hw()) as f64;
            // Σdy and Σdy·x̂ per channel.
            let sums: Vec<(f64, f64)> = (0..s.c)
                .into_par_iter()
                .map(|ch| {
                    let (mu, is) = (mean[ch] as f64, invstd[ch] as f64);
                    let sdy = channel_sum(dyv, s.n, s.c, s.hw(), ch, |i, d| fused_dy(act, i, d) as f64);
                    let sdyx = channel_sum(dyv, s.n, s.c, s.hw(), ch, |i, d| {
                        fused_dy(act, i, d) as f64 * (xv[i] as f64 - mu) * is
                    });
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
                        let d = fused_dy(act, base + j, dyv[base + j]) as f64;
                        *o = (gg * is / m * (m * d - sdy - xhat * sdyx)) as f32;
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
        Device::Cuda(c) => cuda_batch_norm_backward(c, p, params, grads, saved, x, dy, dx, act),
    }
}

// ---------------------------------------------------------------------------------------------
// InstanceNorm2d (affine off)

fn check_instance(x: &Tensor, y: &Tensor, saved: &BnSaved) {
    let s = x.shape;
    assert_eq!(s, y.shape, "instance norm shapes");
    assert!(
        s.hw() > 1,
        "instance norm needs more than one spatial element per channel (input {s})"
    );
    assert!(
        saved.mean.len() >= s.n * s.c && saved.invstd.len() >= s.n * s.c,
        "instance norm: saved statistics shorter than N·C for {s}"
    );
}

/// y = act((x − mean)·invstd) per (sample, channel) plane, invstd = 1/sqrt(biased var + eps) (act:
/// the fused activation, or none); keeps mean and invstd (N·C each) for the backward. The same in
/// train and eval mode.
pub fn instance_norm_forward(
    dev: &Device,
    eps: f32,
    x: &Tensor,
    y: &mut Tensor,
    saved: &mut BnSaved,
    act: Option<Act>,
) {
    check_instance(x, y, saved);
    check_fusable(act);
    let s = x.shape;
    match dev {
        Device::Cpu => {
            let xv = x.cpu();
            let hw = s.hw();
            let stats: Vec<(f32, f32)> = xv[..s.numel()]
                .par_chunks(hw)
                .zip(y.data.cpu_mut().par_chunks_mut(hw))
                .map(|(src, out)| {
                    // Two passes in f64: mean, then the centred sum of squares.
                    let mean = lane_sum(src, src, |v, _| v as f64) / hw as f64;
                    let ss = lane_sum(src, src, |v, _| (v as f64 - mean).powi(2));
                    let (mu, is) = (mean as f32, (1.0 / (ss / hw as f64 + eps as f64).sqrt()) as f32);
                    out.iter_mut()
                        .zip(src)
                        .for_each(|(o, &v)| *o = fused(act, (v - mu) * is));
                    (mu, is)
                })
                .collect();
            let (m, is) = (saved.mean.cpu_mut(), saved.invstd.cpu_mut());
            for (i, &(mu, inv)) in stats.iter().enumerate() {
                m[i] = mu;
                is[i] = inv;
            }
        }
        Device::Cuda(c) => cuda_instance_norm_forward(c, eps, x, y, saved, act),
    }
}

/// Σ_i f(a[i], b[i]) in f64 over 8 interleaved partial sums (lane l takes i ≡ l mod 8 of the
/// first ⌊n/8⌋·8 elements, then the tail is added in order): a fixed order, so the result does not
/// depend on the machine, and independent additions the compiler can vectorise — a single running
/// f64 sum waits on each addition's latency.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f64) -> f64 {
    let n = a.len().min(b.len());
    let (ca, cb) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    let mut acc = [0f64; 8];
    for (xa, xb) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += f(xa[l], xb[l]);
        }
    }
    let tail: f64 = ta.iter().zip(tb).map(|(&x, &y)| f(x, y)).sum();
    acc.iter().sum::<f64>() + tail
}

/// dx = invstd/M·(M·dy − Σdy − x̂·Σ(dy·x̂)) per plane (M = H·W), in f64, from the saved statistics.
/// With `act` = (the fused activation, its forward output), `dy` is the gradient of that output.
pub fn instance_norm_backward(
    dev: &Device,
    saved: &BnSaved,
    x: &Tensor,
    dy: &Tensor,
    dx: &mut Tensor,
    act: Option<(Act, &Tensor)>,
) {
    check_instance(x, dx, saved);
    assert_eq!(x.shape, dy.shape, "instance norm backward shapes");
    let s = x.shape;
    match dev {
        Device::Cpu => {
            let (xv, dyv) = (x.cpu(), dy.cpu());
            let act = fused_out(act, x);
            let (mean, invstd) = (saved.mean.cpu(), saved.invstd.cpu());
            let hw = s.hw();
            let m = hw as f64;
            dx.data
                .cpu_mut()
                .par_chunks_mut(hw)
                .enumerate()
                .for_each_init(Vec::new, |through_act, (plane, out)| {
                    let (mu, is) = (mean[plane] as f64, invstd[plane] as f64);
                    let plane_range = plane * hw..(plane + 1) * hw;
                    let (xs, mut ds) = (&xv[plane_range.clone()], &dyv[plane_range.clone()]);
                    if let Some((a, y)) = act {
                        // The gradient through the fused activation, once per plane.
                        through_act.clear();
                        through_act.extend(ds.iter().zip(&y[plane_range]).map(|(&d, &v)| act_grad(a, v, v) * d));
                        ds = through_act;
                    }
                    let sdy = lane_sum(ds, ds, |d, _| d as f64);
                    let sdyx = lane_sum(ds, xs, |d, v| d as f64 * (v as f64 - mu) * is);
                    for ((o, &d), &v) in out.iter_mut().zip(ds).zip(xs) {
                        let xhat = (v as f64 - mu) * is;
                        *o = (is / m * (m * d as f64 - sdy - xhat * sdyx)) as f32;
                    }
                });
        }
        Device::Cuda(c) => cuda_instance_norm_backward(c, saved, x, dy, dx, act),
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
    act: i32,
    slope: f32,
    pad: i32,
}

// SAFETY: plain-old-data with the C layout of the kernel's parameter struct.
unsafe impl cudarc::driver::DeviceRepr for BnArgs {}

/// The kernels' code and slope of the fused activation (-1 for none).
fn fused_code(act: Option<Act>) -> (i32, f32) {
    act.map_or((-1, 0.0), act_code)
}

fn bn_args(p: &BnParams, x: &Tensor, has_grads: bool, act: Option<Act>) -> BnArgs {
    let s = x.shape;
    let (act, slope) = fused_code(act);
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
        act,
        slope,
        pad: 0,
    }
}

/// Blocks per channel for the BN train kernels: 1 (v1, bn_forward_train / bn_backward) unless the
/// channels are too few to fill the GPU and each has many values (the outer levels; batch 64),
/// then S > 1 (v2, bn_split_*): about two blocks per SM in all, at least 4096 values per block,
/// at most 32 blocks per channel, and C·S·2 partials within the f64 scratch.
/// `PIX2PIX_BN_VARIANT=1` forces v1, `=2` v2 wherever S ≥ 2 is possible (the kernel lab's switch).
fn bn_splits(c: &CudaBackend, channels: usize, m: usize) -> u32 {
    static VARIANT: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    let variant = *VARIANT.get_or_init(|| std::env::var("PIX2PIX_BN_VARIANT").ok().and_then(|v| v.parse().ok()));
    let cap = (m / 4096).min(32).min(SCRATCH64_LEN / (2 * channels));
    let want = match variant {
        Some(1) => 1,
        Some(2) => cap,
        _ => (2 * c.sm_count as usize).div_ceil(channels).min(cap),
    };
    want.max(1) as u32
}

/// Grid (C, S) for the v2 BN kernels.
fn per_channel_split(c: usize, splits: u32) -> cudarc::driver::LaunchConfig {
    cudarc::driver::LaunchConfig {
        grid_dim: (c as u32, splits, 1),
        block_dim: (crate::device::cuda::BLOCK, 1, 1),
        shared_mem_bytes: 0,
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

#[allow(clippy::too_many_arguments)]
fn cuda_batch_norm_forward_train(
    c: &CudaBackend,
    p: &BnParams,
    params: &Storage,
    buffers: &mut Storage,
    x: &Tensor,
    y: &mut Tensor,
    saved: &mut BnSaved,
    act: Option<Act>,
) {
    let a = bn_args(p, x, false, act);
    let splits = bn_splits(c, x.shape.c, x.shape.n * x.shape.hw());
    if splits > 1 {
        let cfg = per_channel_split(x.shape.c, splits);
        let mut part = c.scratch64();
        launch!(c, "norm", "bn_split_sum", cfg, x.cuda(), &mut *part, &a, &splits);
        launch!(c, "norm", "bn_split_sq", cfg, x.cuda(), &mut *part, &a, &splits);
        launch!(
            c,
            "norm",
            "bn_split_apply",
            cfg,
            x.cuda(),
            y.cuda_mut(),
            params.cuda(),
            buffers.cuda_mut(),
            saved.mean.cuda_mut(),
            saved.invstd.cuda_mut(),
            &*part,
            &a,
            &splits
        );
        return;
    }
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
    act: Option<Act>,
) {
    let a = bn_args(p, x, false, act);
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
    act: Option<(Act, &Tensor)>,
) {
    let a = bn_args(p, x, grads.is_some(), act.map(|(k, _)| k));
    // Without a fused activation the kernels never read act_y; x stands in for the pointer.
    let act_y = act.map_or(x, |(_, y)| y);
    // The kernels write dgamma/dbeta into `grads` only when has_grads: without gradients
    // (frozen D) `params` stands in for the pointer and is never written.
    macro_rules! with_grads {
        ($launch:ident) => {
            match grads {
                Some(g) => $launch!(g.cuda_mut()),
                None => $launch!(params.cuda()),
            }
        };
    }
    let splits = bn_splits(c, x.shape.c, x.shape.n * x.shape.hw());
    if splits > 1 {
        let cfg = per_channel_split(x.shape.c, splits);
        let mut part = c.scratch64();
        launch!(
            c,
            "norm",
            "bn_split_bwd_sums",
            cfg,
            x.cuda(),
            dy.cuda(),
            act_y.cuda(),
            saved.mean.cuda(),
            saved.invstd.cuda(),
            &mut *part,
            &a,
            &splits
        );
        macro_rules! apply {
            ($g:expr) => {
                launch!(
                    c,
                    "norm",
                    "bn_split_bwd_apply",
                    cfg,
                    x.cuda(),
                    dy.cuda(),
                    act_y.cuda(),
                    dx.cuda_mut(),
                    params.cuda(),
                    $g,
                    saved.mean.cuda(),
                    saved.invstd.cuda(),
                    &*part,
                    &a,
                    &splits
                )
            };
        }
        with_grads!(apply);
        return;
    }
    let cfg = per_channel(x.shape.c);
    macro_rules! backward {
        ($g:expr) => {
            launch!(
                c,
                "norm",
                "bn_backward",
                cfg,
                x.cuda(),
                dy.cuda(),
                act_y.cuda(),
                dx.cuda_mut(),
                params.cuda(),
                $g,
                saved.mean.cuda(),
                saved.invstd.cuda(),
                &a
            )
        };
    }
    with_grads!(backward);
}

/// One block per (sample, channel) plane.
fn cuda_instance_norm_forward(
    c: &CudaBackend,
    eps: f32,
    x: &Tensor,
    y: &mut Tensor,
    saved: &mut BnSaved,
    act: Option<Act>,
) {
    let s = x.shape;
    let (act, slope) = fused_code(act);
    let (planes, hw) = ((s.n * s.c) as i64, s.hw() as i64);
    let cfg = per_channel(s.n * s.c);
    launch!(
        c,
        "norm",
        "in_forward",
        cfg,
        x.cuda(),
        y.cuda_mut(),
        saved.mean.cuda_mut(),
        saved.invstd.cuda_mut(),
        &planes,
        &hw,
        &eps,
        &act,
        &slope
    );
}

fn cuda_instance_norm_backward(
    c: &CudaBackend,
    saved: &BnSaved,
    x: &Tensor,
    dy: &Tensor,
    dx: &mut Tensor,
    act: Option<(Act, &Tensor)>,
) {
    let s = x.shape;
    let (code, slope) = fused_code(act.map(|(k, _)| k));
    // Without a fused activation the kernel never reads act_y; x stands in for the pointer.
    let act_y = act.map_or(x, |(_, y)| y);
    let (planes, hw) = ((s.n * s.c) as i64, s.hw() as i64);
    let cfg = per_channel(s.n * s.c);
    launch!(
        c,
        "norm",
        "in_backward",
        cfg,
        x.cuda(),
        dy.cuda(),
        act_y.cuda(),
        dx.cuda_mut(),
        saved.mean.cuda(),
        saved.invstd.cuda(),
        &planes,
        &hw,
        &code,
        &slope
    );
}

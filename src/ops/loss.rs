//! Losses with their reductions and gradients in one pass. Each writes `weight · mean(loss)` into
//! one slot of a small loss buffer that stays on the device (read once per logged step, never
//! inside it), and the gradient of `grad_weight · mean(loss)` into dx. The D step uses
//! grad_weight = 0.5·weight (loss_D = 0.5·(fake + real)) while logging the unhalved value.
//! CUDA twin: kernels/loss.cu (deterministic tree reductions).

use crate::device::cuda::launch;
use crate::device::{CudaBackend, Device};
use crate::tensor::{Storage, Tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LossKind {
    /// BCEWithLogits against a constant target (vanilla GAN).
    BceWithLogits,
    /// MSE against a constant target (lsgan).
    Mse,
}

/// Where a loss writes its value and how it scales value and gradient.
#[derive(Clone, Copy, Debug)]
pub struct LossOut {
    pub slot: usize,
    pub weight: f32,
    pub grad_weight: f32,
}

fn bce(x: f32, t: f32) -> f64 {
    // max(x,0) − x·t + log(1 + e^−|x|), the stable form PyTorch uses.
    let x = x as f64;
    x.max(0.0) - x * t as f64 + (-x.abs()).exp().ln_1p()
}

/// GAN loss of logits `x` against a constant target (1 real, 0 fake).
pub fn gan_loss(
    dev: &Device,
    kind: LossKind,
    x: &Tensor,
    target: f32,
    out: LossOut,
    losses: &mut Storage,
    dx: Option<&mut Tensor>,
) {
    if let Some(dx) = &dx {
        assert_eq!(dx.shape, x.shape, "loss gradient shape");
    }
    match dev {
        Device::Cpu => {
            let xv = x.cpu();
            let n = xv.len() as f64;
            let sum: f64 = match kind {
                LossKind::BceWithLogits => xv.iter().map(|&v| bce(v, target)).sum(),
                LossKind::Mse => xv.iter().map(|&v| ((v - target) as f64).powi(2)).sum(),
            };
            losses.cpu_mut()[out.slot] = (out.weight as f64 * sum / n) as f32;
            if let Some(dx) = dx {
                let s = out.grad_weight / n as f32;
                for (d, &v) in dx.cpu_mut().iter_mut().zip(xv) {
                    *d = match kind {
                        LossKind::BceWithLogits => s * (1.0 / (1.0 + (-v).exp()) - target),
                        LossKind::Mse => s * 2.0 * (v - target),
                    };
                }
            }
        }
        Device::Cuda(c) => cuda_gan_loss(c, kind, x, target, out, losses, dx),
    }
}

/// L1 loss mean|x − y|; gradient sign(x − y) (0 where equal, as torch.sign).
pub fn l1_loss(dev: &Device, x: &Tensor, y: &Tensor, out: LossOut, losses: &mut Storage, dx: Option<&mut Tensor>) {
    assert_eq!(x.shape, y.shape, "L1 shapes");
    match dev {
        Device::Cpu => {
            let (xv, yv) = (x.cpu(), y.cpu());
            let n = xv.len() as f64;
            let sum: f64 = xv.iter().zip(yv).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum();
            losses.cpu_mut()[out.slot] = (out.weight as f64 * sum / n) as f32;
            if let Some(dx) = dx {
                let s = out.grad_weight / n as f32;
                for ((d, &a), &b) in dx.cpu_mut().iter_mut().zip(xv).zip(yv) {
                    *d = if a > b {
                        s
                    } else if a < b {
                        -s
                    } else {
                        0.0
                    };
                }
            }
        }
        Device::Cuda(c) => cuda_l1_loss(c, x, y, out, losses, dx),
    }
}

// ---------------------------------------------------------------------------------------------
// CUDA launchers (kernels/loss.cu)

/// First-stage blocks of the loss reduction: a function of n only (so the summation order, and the
/// result, do not depend on the GPU), at least 2048 elements per block, at most the f64 scratch.
fn loss_blocks(n: usize) -> usize {
    n.div_ceil(2048).clamp(1, crate::device::cuda::SCRATCH64_LEN)
}

/// kind: 0 BCE-with-logits, 1 MSE (against `target`), 2 L1 (against `y`).
#[allow(clippy::too_many_arguments)]
fn cuda_loss(
    c: &CudaBackend,
    kind: i32,
    x: &Tensor,
    y: Option<&Tensor>,
    target: f32,
    out: LossOut,
    losses: &mut Storage,
    dx: Option<&mut Tensor>,
) {
    use cudarc::driver::LaunchConfig;
    let numel = x.numel();
    assert!(numel > 0, "loss of an empty tensor");
    assert!(
        out.slot < losses.len(),
        "loss slot {} outside the loss buffer",
        out.slot
    );
    let n = numel as i64;
    // As the CPU: n as f64, then grad_weight / (n as f32).
    let s = out.grad_weight / (numel as f64) as f32;
    let blocks = loss_blocks(numel);
    let cfg = LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (crate::device::cuda::BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    let yv = y.unwrap_or(x).cuda();
    let mut partial = c.scratch64();
    match dx {
        Some(dx) => {
            let has_dx = 1i32;
            launch!(
                c,
                "loss",
                "loss_partial",
                cfg,
                x.cuda(),
                yv,
                dx.cuda_mut(),
                &mut *partial,
                &n,
                &kind,
                &target,
                &s,
                &has_dx
            );
        }
        None => {
            // dx is never written: pass x's buffer as a placeholder.
            let has_dx = 0i32;
            launch!(
                c,
                "loss",
                "loss_partial",
                cfg,
                x.cuda(),
                yv,
                x.cuda(),
                &mut *partial,
                &n,
                &kind,
                &target,
                &s,
                &has_dx
            );
        }
    }
    let count = blocks as i32;
    let one = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (crate::device::cuda::BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut slot = losses.cuda_mut().slice_mut(out.slot..out.slot + 1);
    launch!(
        c,
        "loss",
        "loss_final",
        one,
        &*partial,
        &count,
        &n,
        &out.weight,
        &mut slot
    );
}

fn cuda_gan_loss(
    c: &CudaBackend,
    kind: LossKind,
    x: &Tensor,
    target: f32,
    out: LossOut,
    losses: &mut Storage,
    dx: Option<&mut Tensor>,
) {
    let code = match kind {
        LossKind::BceWithLogits => 0,
        LossKind::Mse => 1,
    };
    cuda_loss(c, code, x, None, target, out, losses, dx)
}

fn cuda_l1_loss(c: &CudaBackend, x: &Tensor, y: &Tensor, out: LossOut, losses: &mut Storage, dx: Option<&mut Tensor>) {
    cuda_loss(c, 2, x, Some(y), 0.0, out, losses, dx)
}

//! Adam over a network's flat parameter buffer, PyTorch semantics (torch.optim.Adam, no weight
//! decay, no amsgrad): m ← lerp(m, g, 1−β1); v ← β2·v + (1−β2)·g²;
//! p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε). The scalar factors are computed in f64 as
//! PyTorch does in Python, the elementwise part in f32. CUDA twin: kernels/adam.cu (one fused launch). The two per-step
//! factors are read from memory (`StepValues`), so one captured step serves every step.

use crate::device::cuda::launch;
use crate::device::step_values::StepValues;
use crate::device::{CudaBackend, Device};
use crate::tensor::Storage;
use rayon::prelude::*;

#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// 1-based step number (after increment), as PyTorch's state['step'].
    pub step: u64,
}

impl AdamStep {
    /// (−step_size, 1/√(1−β2ᵗ)) as f32, shared by both devices.
    pub fn factors(&self) -> (f32, f32) {
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        ((-self.lr / bc1) as f32, bc2.sqrt() as f32)
    }
}

/// torch.lerp for f32: start + w·(end − start), computed from the nearer end as ATen does.
#[inline]
pub fn lerp(start: f32, end: f32, w: f32) -> f32 {
    if w.abs() < 0.5 {
        start + w * (end - start)
    } else {
        end - (end - start) * (1.0 - w)
    }
}

/// One Adam step with the factors of `s` (allocates their device copy: for tests and one-off
/// updates; training prepares them once per step and calls `adam_apply`).
pub fn adam_update(dev: &Device, s: &AdamStep, param: &mut Storage, grad: &Storage, m: &mut Storage, v: &mut Storage) {
    let mut factors = StepValues::new(dev, 2);
    let (neg_step, bc2_sqrt) = s.factors();
    factors.set(dev, &[neg_step, bc2_sqrt]);
    adam_apply(dev, s, &factors, param, grad, m, v);
}

/// One Adam step whose per-step factors [−step_size, √(1−β2ᵗ)] (`AdamStep::factors`) are read
/// from `factors` (device memory on CUDA, so a captured step replays with each step's values);
/// β1, β2 and ε come from `s`.
pub fn adam_apply(
    dev: &Device,
    s: &AdamStep,
    factors: &StepValues<f32>,
    param: &mut Storage,
    grad: &Storage,
    m: &mut Storage,
    v: &mut Storage,
) {
    let len = param.len();
    assert!(
        grad.len() == len && m.len() == len && v.len() == len,
        "adam buffers differ in length"
    );
    match dev {
        Device::Cpu => {
            let (neg_step, bc2_sqrt) = (factors.host()[0], factors.host()[1]);
            let AdamArgs {
                one_m_b1,
                b2,
                one_m_b2,
                eps,
                ..
            } = AdamArgs::new(s, len);
            const CH: usize = 1 << 14;
            param
                .cpu_mut()
                .par_chunks_mut(CH)
                .zip(grad.cpu().par_chunks(CH))
                .zip(m.cpu_mut().par_chunks_mut(CH))
                .zip(v.cpu_mut().par_chunks_mut(CH))
                .for_each(|(((p, g), m), v)| {
                    for i in 0..p.len() {
                        m[i] = lerp(m[i], g[i], one_m_b1);
                        v[i] = v[i] * b2 + one_m_b2 * g[i] * g[i];
                        let denom = v[i].sqrt() / bc2_sqrt + eps;
                        p[i] += neg_step * m[i] / denom;
                    }
                });
        }
        Device::Cuda(c) => cuda_adam_apply(c, s, factors, param, grad, m, v),
    }
}

// ---------------------------------------------------------------------------------------------
// CUDA launcher (kernels/adam.cu)

/// Mirror of `struct AdamArgs` in kernels/adam.cu.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct AdamArgs {
    n: u64,
    one_m_b1: f32,
    b2: f32,
    one_m_b2: f32,
    eps: f32,
}

// SAFETY: plain-old-data with the C layout of the kernel's parameter struct.
unsafe impl cudarc::driver::DeviceRepr for AdamArgs {}

impl AdamArgs {
    /// The per-run constants as f32, shared by both devices: 1−β are formed in f64 then rounded,
    /// as PyTorch passes Python floats to its f32 kernels.
    fn new(s: &AdamStep, n: usize) -> Self {
        AdamArgs {
            n: n as u64,
            one_m_b1: (1.0 - s.beta1) as f32,
            b2: s.beta2 as f32,
            one_m_b2: (1.0 - s.beta2) as f32,
            eps: s.eps as f32,
        }
    }
}

fn cuda_adam_apply(
    c: &CudaBackend,
    s: &AdamStep,
    factors: &StepValues<f32>,
    param: &mut Storage,
    grad: &Storage,
    m: &mut Storage,
    v: &mut Storage,
) {
    let a = AdamArgs::new(s, param.len());
    let cfg = c.cfg_1d(param.len());
    let f = factors.cuda(0);
    launch!(
        c,
        "adam",
        "adam_update",
        cfg,
        param.cuda_mut(),
        grad.cuda(),
        m.cuda_mut(),
        v.cuda_mut(),
        &a,
        &f
    );
}

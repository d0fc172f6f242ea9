//! One pix2pix training iteration, exactly in the reference's order (SPEC.md §3):
//! 1. fake_B = G(real_A), once.
//! 2. D step: zero D's grads; D(real_A|fake_B detached) vs 0 → loss_D_fake; D(real_A|real_B) vs 1
//!    → loss_D_real; backward of 0.5·(fake + real); Adam on D. (Each pass's backward runs right
//!    after its forward: the gradient sum is the same, BN statistics stay per pass, and one set of
//!    D activations suffices.)
//! 3. G step: zero G's grads; D (just updated, its weights frozen) on real_A|fake_B vs 1 →
//!    loss_G_GAN; loss_G_L1 = λ·L1(fake_B, real_B); backward of the sum into G; Adam on G.

use super::model::{iteration_meta, read_iteration, Generator, Model};
use super::patchgan::{PatchGan, PatchGanConfig};
use super::phases::{PhaseTimes, StepTimer};
use super::unet::{UnetConfig, UnetGenerator};
use crate::checkpoint::NamedTensor;
use crate::device::Device;
use crate::nn::ParamStore;
use crate::ops::activation::splitmix;
use crate::ops::loss::{gan_loss, l1_loss, LossKind, LossOut};
use crate::ops::tensor::{extract_channels, insert_channels};
use crate::tensor::{Shape, Storage, Tensor};
use anyhow::{bail, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GanMode {
    /// BCE with logits (pix2pix default).
    Vanilla,
    /// Least squares (MSE), CycleGAN's default.
    Lsgan,
}

impl GanMode {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "vanilla" => Ok(GanMode::Vanilla),
            "lsgan" => Ok(GanMode::Lsgan),
            _ => bail!("unknown --gan-mode {s:?}: expected vanilla or lsgan"),
        }
    }
    pub fn loss(self) -> LossKind {
        match self {
            GanMode::Vanilla => LossKind::BceWithLogits,
            GanMode::Lsgan => LossKind::Mse,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Pix2PixOptions {
    pub gan_mode: GanMode,
    pub lambda_l1: f32,
    pub beta1: f64,
    pub beta2: f64,
}

impl Default for Pix2PixOptions {
    fn default() -> Self {
        Pix2PixOptions {
            gan_mode: GanMode::Vanilla,
            lambda_l1: 100.0,
            beta1: 0.5,
            beta2: 0.999,
        }
    }
}

/// The four logged losses (G_L1 already multiplied by λ, D losses not halved).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Losses {
    pub g_gan: f32,
    pub g_l1: f32,
    pub d_real: f32,
    pub d_fake: f32,
}

impl Losses {
    pub const NAMES: [&'static str; 4] = ["G_GAN", "G_L1", "D_real", "D_fake"];
    pub fn values(&self) -> [f32; 4] {
        [self.g_gan, self.g_l1, self.d_real, self.d_fake]
    }
}

const G_GAN: usize = 0;
const G_L1: usize = 1;
const D_REAL: usize = 2;
const D_FAKE: usize = 3;

/// Buffers of the step, allocated once per batch shape.
struct StepBuffers {
    shape: Shape,
    d_in: Tensor,
    g_logits: Tensor,
    g_d_in: Tensor,
    g_fake: Tensor,
}

pub struct Pix2Pix {
    /// Per-phase timing (syncs the device between phases); None in normal training.
    pub phase_times: Option<PhaseTimes>,
    pub g: UnetGenerator,
    pub d: PatchGan,
    pub opt: Pix2PixOptions,
    /// Iterations taken; with the seed, it picks each iteration's dropout masks.
    pub iteration: u64,
    pub seed: u64,
    losses: Storage,
    bufs: Option<StepBuffers>,
}

impl Pix2Pix {
    /// G and D initialised from one seed (G first, then D, like the reference's init order).
    pub fn new(gcfg: UnetConfig, dcfg: PatchGanConfig, opt: Pix2PixOptions, dev: &Device, seed: u64) -> Result<Self> {
        if dcfg.input_nc != gcfg.input_nc + gcfg.output_nc {
            bail!(
                "the conditional discriminator takes {} channels, got {}",
                gcfg.input_nc + gcfg.output_nc,
                dcfg.input_nc
            );
        }
        let g = UnetGenerator::new(gcfg, dev, splitmix(seed, 1))?;
        let d = PatchGan::new(dcfg, dev, splitmix(seed, 2))?;
        Ok(Pix2Pix {
            g,
            d,
            opt,
            iteration: 0,
            seed,
            losses: dev.zeros(4),
            bufs: None,
            phase_times: None,
        })
    }

    /// The dropout seed of the current iteration.
    pub fn dropout_seed(&self) -> u64 {
        splitmix(self.seed ^ 0x5EED_D0D0, self.iteration)
    }

    /// Checks a batch against the networks (channels, size multiple, D output size).
    pub fn check_batch(&self, a: Shape, b: Shape) -> Result<()> {
        self.g.check_input(a)?;
        if b != a.with_c(self.g.cfg.output_nc) {
            bail!("real_B is {b}, expected {}", a.with_c(self.g.cfg.output_nc));
        }
        self.d.out_shape(a.with_c(self.d.cfg.input_nc))?;
        Ok(())
    }

    fn ensure_buffers(&mut self, dev: &Device, a: Shape) {
        if self.bufs.as_ref().is_some_and(|b| b.shape == a) {
            return;
        }
        let d_in = a.with_c(self.d.cfg.input_nc);
        let logits = self.d.out_shape(d_in).expect("checked batch");
        self.bufs = Some(StepBuffers {
            shape: a,
            d_in: dev.zeros_tensor(d_in),
            g_logits: dev.zeros_tensor(logits),
            g_d_in: dev.zeros_tensor(d_in),
            g_fake: dev.zeros_tensor(a.with_c(self.g.cfg.output_nc)),
        });
    }

    /// One optimize_parameters() call at learning rate `lr`. No host synchronisation inside.
    pub fn step(&mut self, dev: &Device, real_a: &Tensor, real_b: &Tensor, lr: f64) {
        self.prepare_step(dev, lr);
        self.run_step(dev, real_a, real_b);
    }

    /// The host half of a step: the iteration's dropout seed and both Adam steps' factors.
    pub fn prepare_step(&mut self, dev: &Device, lr: f64) {
        let seed = self.dropout_seed();
        self.iteration += 1;
        self.g.set_dropout_seed(dev, seed);
        let (b1, b2) = (self.opt.beta1, self.opt.beta2);
        self.d.params.prepare_adam(lr, b1, b2);
        self.g.params.prepare_adam(lr, b1, b2);
    }

    /// The device half of a step (capturable): every launch, in SPEC.md §3's order.
    pub fn run_step(&mut self, dev: &Device, real_a: &Tensor, real_b: &Tensor) {
        self.ensure_buffers(dev, real_a.shape);
        let kind = self.opt.gan_mode.loss();
        let bufs = self.bufs.as_mut().expect("buffers allocated");
        let ca = real_a.shape.c;
        let mut t = StepTimer::new(dev, self.phase_times.take());

        // 1. G forward.
        t.phase("G forward");
        let fake_b = self.g.forward_prepared(dev, real_a, true, true);

        // 2. D step: fake (detached) then real.
        t.phase("D step (fwd+bwd ×2)");
        self.d.params.zero_grad();
        insert_channels(dev, real_a, &mut bufs.d_in, 0);
        insert_channels(dev, fake_b, &mut bufs.d_in, ca);
        let half = LossOut {
            slot: D_FAKE,
            weight: 1.0,
            grad_weight: 0.5,
        };
        let logits = self.d.forward(dev, &bufs.d_in);
        gan_loss(dev, kind, logits, 0.0, half, &mut self.losses, Some(&mut bufs.g_logits));
        self.d.backward(dev, &bufs.d_in, &bufs.g_logits, true, None);
        insert_channels(dev, real_b, &mut bufs.d_in, ca);
        let logits = self.d.forward(dev, &bufs.d_in);
        gan_loss(
            dev,
            kind,
            logits,
            1.0,
            LossOut { slot: D_REAL, ..half },
            &mut self.losses,
            Some(&mut bufs.g_logits),
        );
        self.d.backward(dev, &bufs.d_in, &bufs.g_logits, true, None);
        t.phase("Adam D");
        self.d.params.apply_adam();

        // 3. G step through the updated, frozen D.
        t.phase("G step (D fwd+bwd, G bwd)");
        self.g.params.zero_grad();
        let fake_b = self.g.output();
        insert_channels(dev, fake_b, &mut bufs.d_in, ca);
        let logits = self.d.forward(dev, &bufs.d_in);
        let full = LossOut {
            slot: G_GAN,
            weight: 1.0,
            grad_weight: 1.0,
        };
        gan_loss(dev, kind, logits, 1.0, full, &mut self.losses, Some(&mut bufs.g_logits));
        self.d
            .backward(dev, &bufs.d_in, &bufs.g_logits, false, Some(&mut bufs.g_d_in));
        let lambda = self.opt.lambda_l1;
        let l1 = LossOut {
            slot: G_L1,
            weight: lambda,
            grad_weight: lambda,
        };
        l1_loss(dev, fake_b, real_b, l1, &mut self.losses, Some(&mut bufs.g_fake));
        extract_channels(dev, &bufs.g_d_in, ca, &mut bufs.g_fake, true);
        self.g.backward(dev, real_a, &bufs.g_fake);
        t.phase("Adam G");
        self.g.params.apply_adam();
        self.phase_times = t.finish();
    }

    /// The last step's losses (a device→host copy: call it when logging, not every step).
    pub fn losses(&self, dev: &Device) -> Losses {
        let v = dev.download(&self.losses);
        Losses {
            g_gan: v[G_GAN],
            g_l1: v[G_L1],
            d_real: v[D_REAL],
            d_fake: v[D_FAKE],
        }
    }
}

impl Model for Pix2Pix {
    fn kind(&self) -> &'static str {
        "pix2pix"
    }
    fn networks(&self) -> Vec<(&'static str, &ParamStore)> {
        vec![("G", &self.g.params), ("D", &self.d.params)]
    }
    fn networks_mut(&mut self) -> Vec<(&'static str, &mut ParamStore)> {
        vec![("G", &mut self.g.params), ("D", &mut self.d.params)]
    }
    fn loss_names(&self) -> &'static [&'static str] {
        &Losses::NAMES
    }
    fn loss_buffer(&self) -> &Storage {
        &self.losses
    }
    fn losses_from(&self, raw: &[f32]) -> Vec<f32> {
        raw[..4].to_vec()
    }
    fn check_batch(&self, a: Shape, b: Shape) -> Result<()> {
        Pix2Pix::check_batch(self, a, b)
    }
    fn prepare_step(&mut self, dev: &Device, lr: f64, _batch: Shape) {
        Pix2Pix::prepare_step(self, dev, lr)
    }
    fn run_step(&mut self, dev: &Device, real_a: &Tensor, real_b: &Tensor) {
        Pix2Pix::run_step(self, dev, real_a, real_b)
    }
    fn set_phase_timing(&mut self, on: bool) {
        self.phase_times = on.then(PhaseTimes::default);
    }
    fn phase_times(&self) -> Option<&PhaseTimes> {
        self.phase_times.as_ref()
    }
    fn extra_state(&self, _dev: &Device) -> (Vec<NamedTensor>, Vec<(String, String)>) {
        (vec![], iteration_meta(self.iteration))
    }
    fn load_extra_state(
        &mut self,
        _dev: &Device,
        path: &Path,
        _tensors: &BTreeMap<String, NamedTensor>,
        meta: &HashMap<String, String>,
    ) -> Result<()> {
        self.iteration = read_iteration(path, meta)?;
        Ok(())
    }
    fn generator_ab(&mut self) -> &mut dyn Generator {
        &mut self.g
    }
    fn visuals(&self, dev: &Device) -> Vec<(&'static str, Vec<f32>)> {
        vec![("fake_B", dev.download(&self.g.output().data))]
    }
}

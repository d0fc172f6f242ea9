//! One CycleGAN training iteration (SPEC.md §7, the reference's cycle_gan_model.py). G_A: A→B,
//! G_B: B→A (ResNet generators); D_A judges B-domain images, D_B A-domain ones (PatchGANs with 3
//! input channels). Unlike pix2pix, the G step comes first:
//! 1. G step (D frozen): zero G's grads; the six terms
//!    G_A = GAN(D_A(fake_B), 1), G_B = GAN(D_B(fake_A), 1), cycle_A = λ_A·L1(G_B(fake_B), A),
//!    cycle_B = λ_B·L1(G_A(fake_A), B), idt_A = λ_B·λ_idt·L1(G_A(B), B), idt_B = λ_A·λ_idt·L1(G_B(A), A)
//!    with fake_B = G_A(A), fake_A = G_B(B); backward of their sum; Adam on G_A and G_B.
//! 2. D step: zero D's grads; D_A: 0.5·[GAN(D_A(B), 1) + GAN(D_A(pool_B.query(fake_B)), 0)], real
//!    pass first; D_B the same with A and pool_A; Adam on D_A and D_B.
//!
//! The step is written for CycleGAN's symmetry: every phase does the same work for G_A/D_A and for
//! G_B/D_B, on disjoint networks, so each phase is one `Device::join` of the two sides (side by
//! side on the CPU's threads, one after the other on a CUDA stream). Each generator keeps two
//! forwards (`Pass`): its first on a real image, its second on the other generator's fake.
//! - forwards: fake_B = G_A(A), fake_A = G_B(B) (first passes); rec_A = G_B(fake_B),
//!   rec_B = G_A(fake_A) (second passes);
//! - backward of the cycle terms through the second passes to the fakes, with D_A(fake_B) and
//!   D_B(fake_A) beside them; then D's input gradients join the fakes', back through the first
//!   passes; then the identity terms (a first-pass forward and backward each).
//!
//! The gradient is the same sum as the reference's one backward (weights do not change within the
//! step). Each network's forwards keep the reference's order (G_A: fake_B, rec_B, idt_A; G_B:
//! rec_A, fake_A, idt_B) where that order matters, i.e. with BatchNorm's running statistics
//! (`--norm batch`): there the four generator forwards run one by one in the reference's order.

use super::image_pool::ImagePool;
use super::model::{iteration_meta, network_seed, read_iteration, Generator, Model};
use super::patchgan::{PatchGan, PatchGanConfig};
use super::phases::{PhaseTimes, StepTimer};
use super::pix2pix::GanMode;
use super::resnet::{Pass, ResnetConfig, ResnetGenerator};
use crate::checkpoint::NamedTensor;
use crate::device::Device;
use crate::nn::ParamStore;
use crate::ops::loss::{gan_loss, l1_loss, LossOut};
use crate::ops::tensor::copy;
use crate::tensor::{Shape, Storage, Tensor};
use anyhow::{bail, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CycleGanOptions {
    pub gan_mode: GanMode,
    pub lambda_a: f32,
    pub lambda_b: f32,
    pub lambda_identity: f32,
    pub pool_size: usize,
    pub beta1: f64,
    pub beta2: f64,
}

impl Default for CycleGanOptions {
    /// The reference's CycleGAN defaults: lsgan, λ_A = λ_B = 10, λ_idt = 0.5, pool 50, Adam(0.5, 0.999).
    fn default() -> Self {
        CycleGanOptions {
            gan_mode: GanMode::Lsgan,
            lambda_a: 10.0,
            lambda_b: 10.0,
            lambda_identity: 0.5,
            pool_size: 50,
            beta1: 0.5,
            beta2: 0.999,
        }
    }
}

/// The reference's loss_names.
pub const LOSS_NAMES: [&str; 8] = ["D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B"];

// Slots of the device loss buffer; D_A and D_B are logged as 0.5·(real + fake).
const D_A_REAL: usize = 0;
const D_A_FAKE: usize = 1;
const G_A: usize = 2;
const CYCLE_A: usize = 3;
const IDT_A: usize = 4;
const D_B_REAL: usize = 5;
const D_B_FAKE: usize = 6;
const G_B: usize = 7;
const CYCLE_B: usize = 8;
const IDT_B: usize = 9;
const SLOTS: usize = 10;

/// Buffers of the step, allocated once per batch shape.
struct StepBuffers {
    shape: Shape,
    fake_b: Tensor,
    rec_a: Tensor,
    fake_a: Tensor,
    rec_b: Tensor,
    /// Gradients of a G_A output (rec_B in the cycle, idt_A in the identity) and of a G_B output.
    g_out_ga: Tensor,
    g_out_gb: Tensor,
    /// Gradients of the fakes (from the second passes and from D), and of D_A's and D_B's inputs.
    g_fake_b: Tensor,
    g_fake_a: Tensor,
    g_d_in_a: Tensor,
    g_d_in_b: Tensor,
    g_logits_a: Tensor,
    g_logits_b: Tensor,
    /// The pools' answers: D_A's fake input (from pool_B) and D_B's (from pool_A).
    pooled_b: Tensor,
    pooled_a: Tensor,
}

pub struct CycleGan {
    pub g_a: ResnetGenerator,
    pub g_b: ResnetGenerator,
    pub d_a: PatchGan,
    pub d_b: PatchGan,
    pub pool_a: ImagePool,
    pub pool_b: ImagePool,
    pub opt: CycleGanOptions,
    pub iteration: u64,
    pub phase_times: Option<PhaseTimes>,
    losses: Storage,
    bufs: Option<StepBuffers>,
}

impl CycleGan {
    /// G_A, G_B, D_A, D_B initialised from one seed in the reference's model_names order; the
    /// pools draw from their own streams of the same seed.
    pub fn new(g: ResnetConfig, d: PatchGanConfig, opt: CycleGanOptions, dev: &Device, seed: u64) -> Result<Self> {
        if d.input_nc != g.output_nc || g.input_nc != g.output_nc {
            bail!(
                "CycleGAN needs generators with as many input as output channels and an unconditional D on them \
                 (G {}→{}, D {} channels)",
                g.input_nc,
                g.output_nc,
                d.input_nc
            );
        }
        Ok(CycleGan {
            g_a: ResnetGenerator::new(g, dev, network_seed(seed, 1))?,
            g_b: ResnetGenerator::new(g, dev, network_seed(seed, 2))?,
            d_a: PatchGan::new(d, dev, network_seed(seed, 3))?,
            d_b: PatchGan::new(d, dev, network_seed(seed, 4))?,
            pool_a: ImagePool::new(opt.pool_size, network_seed(seed, 5)),
            pool_b: ImagePool::new(opt.pool_size, network_seed(seed, 6)),
            opt,
            iteration: 0,
            phase_times: None,
            losses: dev.zeros(SLOTS),
            bufs: None,
        })
    }

    pub fn check_batch(&self, a: Shape, b: Shape) -> Result<()> {
        self.g_a.check_input(a)?;
        if b != a {
            bail!("real_B is {b}, expected the shape of real_A ({a})");
        }
        self.d_a.out_shape(a)?;
        Ok(())
    }

    fn ensure_buffers(&mut self, dev: &Device, s: Shape) {
        if self.bufs.as_ref().is_some_and(|b| b.shape == s) {
            return;
        }
        let logits = self.d_a.out_shape(s).expect("checked batch");
        let z = |s: Shape| dev.zeros_tensor(s);
        self.bufs = Some(StepBuffers {
            shape: s,
            fake_b: z(s),
            rec_a: z(s),
            fake_a: z(s),
            rec_b: z(s),
            g_out_ga: z(s),
            g_out_gb: z(s),
            g_fake_b: z(s),
            g_fake_a: z(s),
            g_d_in_a: z(s),
            g_d_in_b: z(s),
            g_logits_a: z(logits),
            g_logits_b: z(logits),
            pooled_b: z(s),
            pooled_a: z(s),
        });
    }

    /// One optimize_parameters() call at learning rate `lr`. No host synchronisation inside.
    pub fn step(&mut self, dev: &Device, real_a: &Tensor, real_b: &Tensor, lr: f64) {
        self.prepare_step(dev, lr, real_a.shape);
        self.run_step(dev, real_a, real_b);
    }

    /// The host half of a step: the four Adam steps' factors and both pools' plans.
    pub fn prepare_step(&mut self, dev: &Device, lr: f64, batch: Shape) {
        self.iteration += 1;
        self.pool_b.prepare(dev, batch);
        self.pool_a.prepare(dev, batch);
        let o = self.opt;
        for ps in [
            &mut self.g_a.params,
            &mut self.g_b.params,
            &mut self.d_a.params,
            &mut self.d_b.params,
        ] {
            ps.prepare_adam(lr, o.beta1, o.beta2);
        }
    }

    /// The device half of a step (capturable): every launch, in SPEC.md §7's order.
    pub fn run_step(&mut self, dev: &Device, real_a: &Tensor, real_b: &Tensor) {
        self.ensure_buffers(dev, real_a.shape);
        let o = self.opt;
        let kind = o.gan_mode.loss();
        let b = self.bufs.as_mut().expect("buffers allocated");
        let losses = &mut self.losses;
        let (ga, gb, da, db) = (&mut self.g_a, &mut self.g_b, &mut self.d_a, &mut self.d_b);
        let w = |slot: usize, weight: f32| LossOut {
            slot,
            weight,
            grad_weight: weight,
        };
        let mut t = StepTimer::new(dev, self.phase_times.take());

        // 1. G step (D frozen: its input gradients only).
        t.phase("G forward (two passes each)");
        ga.params.zero_grad();
        gb.params.zero_grad();
        let fwd = |g: &mut ResnetGenerator, pass: Pass, x: &Tensor, out: &mut Tensor| {
            copy(dev, g.forward_pass(dev, pass, x, true), out, false);
        };
        if ga.has_running_stats() || gb.has_running_stats() {
            fwd(ga, Pass::First, real_a, &mut b.fake_b);
            fwd(gb, Pass::Second, &b.fake_b, &mut b.rec_a);
            fwd(gb, Pass::First, real_b, &mut b.fake_a);
            fwd(ga, Pass::Second, &b.fake_a, &mut b.rec_b);
        } else {
            dev.join(
                || fwd(ga, Pass::First, real_a, &mut b.fake_b),
                || fwd(gb, Pass::First, real_b, &mut b.fake_a),
            );
            dev.join(
                || fwd(gb, Pass::Second, &b.fake_b, &mut b.rec_a),
                || fwd(ga, Pass::Second, &b.fake_a, &mut b.rec_b),
            );
        }

        // cycle_A = λ_A·L1(rec_A, A) back through G_B's second pass to fake_B, while D_A judges
        // fake_B; the same for B.
        t.phase("G backward (cycle, GAN)");
        l1_loss(
            dev,
            &b.rec_a,
            real_a,
            w(CYCLE_A, o.lambda_a),
            losses,
            Some(&mut b.g_out_gb),
        );
        l1_loss(
            dev,
            &b.rec_b,
            real_b,
            w(CYCLE_B, o.lambda_b),
            losses,
            Some(&mut b.g_out_ga),
        );
        dev.join(
            || {
                gb.backward_pass(dev, Pass::Second, &b.fake_b, &b.g_out_gb, Some(&mut b.g_fake_b));
                da.forward(dev, &b.fake_b);
            },
            || {
                ga.backward_pass(dev, Pass::Second, &b.fake_a, &b.g_out_ga, Some(&mut b.g_fake_a));
                db.forward(dev, &b.fake_a);
            },
        );
        // G_A = GAN(D_A(fake_B), 1): its input gradient joins fake_B's, back through G_A's first pass.
        gan_loss(
            dev,
            kind,
            da.logits(),
            1.0,
            w(G_A, 1.0),
            losses,
            Some(&mut b.g_logits_a),
        );
        gan_loss(
            dev,
            kind,
            db.logits(),
            1.0,
            w(G_B, 1.0),
            losses,
            Some(&mut b.g_logits_b),
        );
        let judged = |g: &mut ResnetGenerator,
                      d: &mut PatchGan,
                      real: &Tensor,
                      fake: &Tensor,
                      g_logits: &Tensor,
                      g_d_in: &mut Tensor,
                      g_fake: &mut Tensor| {
            d.backward(dev, fake, g_logits, false, Some(&mut *g_d_in));
            copy(dev, g_d_in, g_fake, true);
            g.backward_pass(dev, Pass::First, real, g_fake, None);
        };
        dev.join(
            || {
                judged(
                    ga,
                    da,
                    real_a,
                    &b.fake_b,
                    &b.g_logits_a,
                    &mut b.g_d_in_a,
                    &mut b.g_fake_b,
                )
            },
            || {
                judged(
                    gb,
                    db,
                    real_b,
                    &b.fake_a,
                    &b.g_logits_b,
                    &mut b.g_d_in_b,
                    &mut b.g_fake_a,
                )
            },
        );

        // Identity terms: idt_A = λ_B·λ_idt·L1(G_A(B), B), idt_B = λ_A·λ_idt·L1(G_B(A), A).
        if o.lambda_identity > 0.0 {
            t.phase("G identity");
            dev.join(
                || ga.forward_pass(dev, Pass::First, real_b, true).shape,
                || gb.forward_pass(dev, Pass::First, real_a, true).shape,
            );
            let wa = w(IDT_A, o.lambda_b * o.lambda_identity);
            l1_loss(dev, ga.output(), real_b, wa, losses, Some(&mut b.g_out_ga));
            let wb = w(IDT_B, o.lambda_a * o.lambda_identity);
            l1_loss(dev, gb.output(), real_a, wb, losses, Some(&mut b.g_out_gb));
            dev.join(
                || ga.backward_pass(dev, Pass::First, real_b, &b.g_out_ga, None),
                || gb.backward_pass(dev, Pass::First, real_a, &b.g_out_gb, None),
            );
        }
        t.phase("Adam G");
        ga.params.apply_adam();
        gb.params.apply_adam();

        // 2. D step: real first, then the pooled fake (detached: D's input gradient is not used).
        t.phase("D step (D_A, D_B)");
        da.params.zero_grad();
        db.params.zero_grad();
        self.pool_b.apply(dev, &b.fake_b, &mut b.pooled_b);
        self.pool_a.apply(dev, &b.fake_a, &mut b.pooled_a);
        let half = |slot: usize| LossOut {
            slot,
            weight: 1.0,
            grad_weight: 0.5,
        };
        dev.join(|| da.forward(dev, real_b).shape, || db.forward(dev, real_a).shape);
        gan_loss(
            dev,
            kind,
            da.logits(),
            1.0,
            half(D_A_REAL),
            losses,
            Some(&mut b.g_logits_a),
        );
        gan_loss(
            dev,
            kind,
            db.logits(),
            1.0,
            half(D_B_REAL),
            losses,
            Some(&mut b.g_logits_b),
        );
        let real_then_fake = |d: &mut PatchGan, real: &Tensor, g_logits: &Tensor, pooled: &Tensor| {
            d.backward(dev, real, g_logits, true, None);
            d.forward(dev, pooled);
        };
        dev.join(
            || real_then_fake(da, real_b, &b.g_logits_a, &b.pooled_b),
            || real_then_fake(db, real_a, &b.g_logits_b, &b.pooled_a),
        );
        gan_loss(
            dev,
            kind,
            da.logits(),
            0.0,
            half(D_A_FAKE),
            losses,
            Some(&mut b.g_logits_a),
        );
        gan_loss(
            dev,
            kind,
            db.logits(),
            0.0,
            half(D_B_FAKE),
            losses,
            Some(&mut b.g_logits_b),
        );
        dev.join(
            || da.backward(dev, &b.pooled_b, &b.g_logits_a, true, None),
            || db.backward(dev, &b.pooled_a, &b.g_logits_b, true, None),
        );
        t.phase("Adam D");
        da.params.apply_adam();
        db.params.apply_adam();
        self.phase_times = t.finish();
    }

    /// The last step's losses in `LOSS_NAMES` order (one device→host copy).
    pub fn loss_values(&self, dev: &Device) -> Vec<f32> {
        Self::logged_losses(&dev.download(&self.losses))
    }

    /// The logged losses from the raw slots (D_A, D_B are the halved sums of their two terms).
    fn logged_losses(v: &[f32]) -> Vec<f32> {
        vec![
            (v[D_A_REAL] + v[D_A_FAKE]) * 0.5,
            v[G_A],
            v[CYCLE_A],
            v[IDT_A],
            (v[D_B_REAL] + v[D_B_FAKE]) * 0.5,
            v[G_B],
            v[CYCLE_B],
            v[IDT_B],
        ]
    }
}

impl Model for CycleGan {
    fn kind(&self) -> &'static str {
        "cycle_gan"
    }
    fn networks(&self) -> Vec<(&'static str, &ParamStore)> {
        vec![
            ("G_A", &self.g_a.params),
            ("G_B", &self.g_b.params),
            ("D_A", &self.d_a.params),
            ("D_B", &self.d_b.params),
        ]
    }
    fn networks_mut(&mut self) -> Vec<(&'static str, &mut ParamStore)> {
        vec![
            ("G_A", &mut self.g_a.params),
            ("G_B", &mut self.g_b.params),
            ("D_A", &mut self.d_a.params),
            ("D_B", &mut self.d_b.params),
        ]
    }
    fn loss_names(&self) -> &'static [&'static str] {
        &LOSS_NAMES
    }
    fn loss_buffer(&self) -> &Storage {
        &self.losses
    }
    fn losses_from(&self, raw: &[f32]) -> Vec<f32> {
        Self::logged_losses(raw)
    }
    fn check_batch(&self, a: Shape, b: Shape) -> Result<()> {
        CycleGan::check_batch(self, a, b)
    }
    fn prepare_step(&mut self, dev: &Device, lr: f64, batch: Shape) {
        CycleGan::prepare_step(self, dev, lr, batch)
    }
    fn run_step(&mut self, dev: &Device, real_a: &Tensor, real_b: &Tensor) {
        CycleGan::run_step(self, dev, real_a, real_b)
    }
    fn set_phase_timing(&mut self, on: bool) {
        self.phase_times = on.then(PhaseTimes::default);
    }
    fn phase_times(&self) -> Option<&PhaseTimes> {
        self.phase_times.as_ref()
    }
    fn extra_state(&self, dev: &Device) -> (Vec<NamedTensor>, Vec<(String, String)>) {
        let mut meta = iteration_meta(self.iteration);
        let mut tensors = vec![];
        for (name, pool) in [("pool_A", &self.pool_a), ("pool_B", &self.pool_b)] {
            let (t, m) = pool.state(dev, name);
            tensors.extend(t);
            meta.extend(m);
        }
        (tensors, meta)
    }
    fn load_extra_state(
        &mut self,
        dev: &Device,
        path: &Path,
        tensors: &BTreeMap<String, NamedTensor>,
        meta: &HashMap<String, String>,
    ) -> Result<()> {
        self.iteration = read_iteration(path, meta)?;
        self.pool_a.load_state(dev, "pool_A", path, tensors, meta)?;
        self.pool_b.load_state(dev, "pool_B", path, tensors, meta)
    }
    fn generator_ab(&mut self) -> &mut dyn Generator {
        &mut self.g_a
    }
    fn visuals(&self, dev: &Device) -> Vec<(&'static str, Vec<f32>)> {
        let Some(b) = self.bufs.as_ref() else {
            return vec![];
        };
        let mut v = vec![
            ("fake_B", dev.download(&b.fake_b.data)),
            ("rec_A", dev.download(&b.rec_a.data)),
            ("fake_A", dev.download(&b.fake_a.data)),
            ("rec_B", dev.download(&b.rec_b.data)),
        ];
        if self.opt.lambda_identity > 0.0 {
            v.push(("idt_A", dev.download(&self.g_a.output().data)));
            v.push(("idt_B", dev.download(&self.g_b.output().data)));
        }
        v
    }
}

//! UnetGenerator (SPEC.md §1): `num_downs` nested skip levels. Level 1 is the outermost
//! (e1 conv … d1 convT + Tanh), level `num_downs` the innermost (no norm on its down conv).
//!
//! Forward, level k (1-based) with input a_{k−1} (the image for k = 1):
//!   c_k = conv(a_{k−1});  e_k = BN(c_k) (levels 2..n−1);  a_k = LReLU(e_k) (k < n) or ReLU(e_n)
//!   a_k is both the skip concatenated at level k and the next level's input, because the
//!   reference's LReLU runs in place on the block input (SPEC.md §1, "in-place skip subtlety").
//! Up path, k = n … 1:
//!   r_k = ReLU(concat(a_k, u_{k+1})) for k < n, r_n = a_n;  t_k = convT(r_k)
//!   u_k = Dropout(BN(t_k)) (dropout on the middle 512→512 levels), output = Tanh(t_1 + bias).
//! The norm is BatchNorm (`--norm batch`, convs without bias) or InstanceNorm (`--norm instance`,
//! every conv with a bias), SPEC.md §1. The down path's norm and activation run as one op
//! (a_k = LReLU(BN(c_k)) in one pass, `Norm2d::forward`'s fused activation), so e_k is not stored;
//! and r_k's two halves, ReLU(a_k) and ReLU(u_{k+1}), are written straight into r_k
//! (`activation_into_channels`), so the concatenation itself is not stored either.

use crate::device::step_values::StepValues;
use crate::device::Device;
use crate::nn::{Conv2d, ConvTranspose2d, Norm2d, NormKind, ParamBuilder, ParamStore};
use crate::ops::activation::{
    activation_backward, activation_backward_from_channels, activation_forward, activation_into_channels,
    dropout_apply, mul, splitmix, Act,
};
use crate::ops::conv::ConvGeom;
use crate::ops::norm::BnSaved;
use crate::tensor::{Shape, Tensor};
use anyhow::{bail, Result};

const LRELU: Act = Act::LeakyRelu(0.2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnetConfig {
    pub input_nc: usize,
    pub output_nc: usize,
    pub ngf: usize,
    pub num_downs: usize,
    pub use_dropout: bool,
    pub norm: NormKind,
}

impl UnetConfig {
    /// `unet_256` (8 levels) or `unet_128` (7 levels), the reference's names.
    pub fn named(name: &str, ngf: usize, use_dropout: bool, norm: NormKind) -> Result<Self> {
        let num_downs = match name {
            "unet_256" => 8,
            "unet_128" => 7,
            _ => bail!("unknown --netG {name:?}: expected unet_256 or unet_128"),
        };
        Ok(UnetConfig {
            input_nc: 3,
            output_nc: 3,
            ngf,
            num_downs,
            use_dropout,
            norm,
        })
    }
}

/// SPEC.md §1's three block kinds, each with exactly the layers the table gives it. (A network
/// has a handful of levels, so the variants' size difference is not worth a Box.)
#[allow(clippy::large_enum_variant)]
enum Level {
    /// Conv only down; ReLU → ConvT (with bias) → Tanh up; returns the up output.
    Outermost { down: Conv2d, up: ConvTranspose2d },
    /// LReLU → Conv → norm down; ReLU → ConvT → norm [→ Dropout] up; concat([x, up]).
    Middle {
        down: Conv2d,
        down_norm: Norm2d,
        up: ConvTranspose2d,
        up_norm: Norm2d,
        dropout: bool,
    },
    /// LReLU → Conv (no norm) down; ReLU → ConvT → norm up; concat([x, up]).
    Innermost {
        down: Conv2d,
        up: ConvTranspose2d,
        up_norm: Norm2d,
    },
}

impl Level {
    fn down(&self) -> &Conv2d {
        match self {
            Level::Outermost { down, .. } | Level::Middle { down, .. } | Level::Innermost { down, .. } => down,
        }
    }
    fn up(&self) -> &ConvTranspose2d {
        match self {
            Level::Outermost { up, .. } | Level::Middle { up, .. } | Level::Innermost { up, .. } => up,
        }
    }
    fn down_norm(&self) -> Option<&Norm2d> {
        match self {
            Level::Middle { down_norm, .. } => Some(down_norm),
            _ => None,
        }
    }
    fn up_norm(&self) -> Option<&Norm2d> {
        match self {
            Level::Middle { up_norm, .. } | Level::Innermost { up_norm, .. } => Some(up_norm),
            Level::Outermost { .. } => None,
        }
    }
    fn dropout(&self) -> bool {
        matches!(self, Level::Middle { dropout: true, .. })
    }
}

/// Activations and their gradients for one level, allocated once per input shape.
struct LevelActs {
    c: Tensor,
    a: Tensor,
    /// ReLU(concat(a, u of the level below)), the up convT's input (all but the innermost level).
    r: Option<Tensor>,
    t: Tensor,
    /// BN output (Tanh output at level 1).
    out: Tensor,
    mask: Option<Tensor>,
    dropped: Option<Tensor>,
    g_out: Tensor,
    g_b: Option<Tensor>,
    g_t: Tensor,
    /// The gradient of r (the innermost level's convT writes g_a directly).
    g_r: Option<Tensor>,
    g_a: Tensor,
    /// The gradient of c: through the fused norm and activation, or through the activation alone.
    g_c: Tensor,
    /// The norms' statistics of the forward (down: middle levels; up: all but the outermost).
    down_saved: Option<BnSaved>,
    up_saved: Option<BnSaved>,
}

impl LevelActs {
    /// The level's output as seen by the level above (after dropout where there is one).
    fn u(&self) -> &Tensor {
        self.dropped.as_ref().unwrap_or(&self.out)
    }
}

pub struct UnetGenerator {
    pub cfg: UnetConfig,
    pub params: ParamStore,
    levels: Vec<Level>,
    acts: Vec<LevelActs>,
    input_shape: Option<Shape>,
    /// Level i's dropout seed, splitmix(step seed, i), set before each step (`set_dropout_seed`)
    /// and read by the dropout kernels from memory.
    dropout_seeds: StepValues<u64>,
}

/// The state_dict prefix of level k (1-based): model.model for the outermost block, then one
/// `.1` into the first inner block and `.3` deeper (SPEC.md §9).
fn level_prefix(k: usize) -> String {
    match k {
        1 => "model.model".into(),
        _ => format!("model.model.1{}", ".model.3".repeat(k - 2)),
    }
}

impl UnetGenerator {
    pub fn new(cfg: UnetConfig, dev: &Device, seed: u64) -> Result<Self> {
        if cfg.num_downs < 5 {
            bail!("the U-Net needs at least 5 levels (num_downs {})", cfg.num_downs);
        }
        let mut b = ParamBuilder::new(seed);
        let mut levels: Vec<Option<Level>> = (0..cfg.num_downs).map(|_| None).collect();
        Self::build_level(&cfg, &mut b, 1, &mut levels);
        let levels: Vec<Level> = levels.into_iter().map(|l| l.expect("every level built")).collect();
        Ok(UnetGenerator {
            cfg,
            params: b.finish(dev),
            dropout_seeds: StepValues::new(dev, levels.len()),
            levels,
            acts: vec![],
            input_shape: None,
        })
    }

    /// Registers level k's parameters in state_dict order: down conv, down BN, the inner block,
    /// up convT, up BN — so checkpoints list tensors as PyTorch does.
    fn build_level(cfg: &UnetConfig, b: &mut ParamBuilder, k: usize, out: &mut [Option<Level>]) {
        let n = cfg.num_downs;
        let ngf = cfg.ngf;
        // (outer_nc, inner_nc) of the reference's UnetSkipConnectionBlock at this level.
        let (outer, inner) = match k {
            1 => (cfg.output_nc, ngf),
            2 => (ngf, ngf * 2),
            3 => (ngf * 2, ngf * 4),
            4 => (ngf * 4, ngf * 8),
            _ => (ngf * 8, ngf * 8),
        };
        let input_nc = if k == 1 { cfg.input_nc } else { outer };
        let p = level_prefix(k);
        let g = |cin, cout| ConvGeom::new(cin, cout, 4, 2, 1);
        // With BatchNorm no conv but the outermost convT has a bias; with InstanceNorm all do.
        let bias = cfg.norm.conv_bias();
        let norm = |b: &mut ParamBuilder, name: String, ch: usize| Norm2d::new(cfg.norm, b, &name, ch);
        let level = if k == 1 {
            let down = Conv2d::new(b, &format!("{p}.0"), g(input_nc, inner), bias);
            Self::build_level(cfg, b, k + 1, out);
            let up = ConvTranspose2d::new(b, &format!("{p}.3"), g(inner * 2, outer), true);
            Level::Outermost { down, up }
        } else if k == n {
            let down = Conv2d::new(b, &format!("{p}.model.1"), g(input_nc, inner), bias);
            let up = ConvTranspose2d::new(b, &format!("{p}.model.3"), g(inner, outer), bias);
            let up_norm = norm(b, format!("{p}.model.4"), outer);
            Level::Innermost { down, up, up_norm }
        } else {
            let down = Conv2d::new(b, &format!("{p}.model.1"), g(input_nc, inner), bias);
            let down_norm = norm(b, format!("{p}.model.2"), inner);
            Self::build_level(cfg, b, k + 1, out);
            let up = ConvTranspose2d::new(b, &format!("{p}.model.5"), g(inner * 2, outer), bias);
            let up_norm = norm(b, format!("{p}.model.6"), outer);
            // The (num_downs − 5) intermediate 512→512 levels, i.e. levels 5..n−1, have dropout.
            let dropout = cfg.use_dropout && k >= 5;
            Level::Middle {
                down,
                down_norm,
                up,
                up_norm,
                dropout,
            }
        };
        out[k - 1] = Some(level);
    }

    /// H and W must be multiples of 2^num_downs (256 for unet_256), as in the reference.
    pub fn check_input(&self, s: Shape) -> Result<()> {
        let m = 1usize << self.cfg.num_downs;
        if s.c != self.cfg.input_nc || s.h == 0 || s.w == 0 || !s.h.is_multiple_of(m) || !s.w.is_multiple_of(m) {
            bail!(
                "generator input {}x{}x{} does not fit: {} channels and H, W multiples of {m} expected (num_downs {})",
                s.c,
                s.h,
                s.w,
                self.cfg.input_nc,
                self.cfg.num_downs
            );
        }
        Ok(())
    }

    fn ensure_acts(&mut self, dev: &Device, x: Shape) {
        if self.input_shape == Some(x) {
            return;
        }
        let n = self.levels.len();
        let z = |s: Shape| dev.zeros_tensor(s);
        let mut acts = Vec::with_capacity(n);
        let mut s_in = x;
        for (i, lv) in self.levels.iter().enumerate() {
            let sc = lv.down().out_shape(s_in).expect("checked input size");
            let cat_shape = sc.with_c(2 * sc.c);
            let up_in = if i + 1 < n { cat_shape } else { sc };
            let st = lv.up().out_shape(up_in);
            acts.push(LevelActs {
                c: z(sc),
                a: z(sc),
                r: (i + 1 < n).then(|| z(cat_shape)),
                t: z(st),
                out: z(st),
                mask: lv.dropout().then(|| z(st)),
                dropped: lv.dropout().then(|| z(st)),
                g_out: z(st),
                g_b: lv.dropout().then(|| z(st)),
                g_t: z(st),
                g_r: (i + 1 < n).then(|| z(cat_shape)),
                g_a: z(sc),
                g_c: z(sc),
                down_saved: lv.down_norm().map(|bn| bn.saved(dev, sc)),
                up_saved: lv.up_norm().map(|bn| bn.saved(dev, st)),
            });
            s_in = sc;
        }
        self.acts = acts;
        self.input_shape = Some(x);
    }

    /// fake = G(x). `train`: BN with batch statistics (and running-stat updates); dropout is on
    /// when `dropout_seed` is given (training, and the reference's default test mode).
    pub fn forward(&mut self, dev: &Device, x: &Tensor, train: bool, dropout_seed: Option<u64>) -> &Tensor {
        if let Some(seed) = dropout_seed {
            self.set_dropout_seed(dev, seed);
        }
        self.forward_prepared(dev, x, train, dropout_seed.is_some())
    }

    /// Sets the dropout masks of the next `forward_prepared`: level i draws with
    /// splitmix(seed, i). Host work (a copy to the device): call it before a step.
    pub fn set_dropout_seed(&mut self, dev: &Device, seed: u64) {
        let seeds: Vec<u64> = (0..self.levels.len() as u64).map(|i| splitmix(seed, i)).collect();
        self.dropout_seeds.set(dev, &seeds);
    }

    /// `forward` with dropout from the seed last set (`dropout`) or off; no host copy, so a
    /// training step made of it can be captured as a CUDA graph.
    pub fn forward_prepared(&mut self, dev: &Device, x: &Tensor, train: bool, dropout: bool) -> &Tensor {
        self.ensure_acts(dev, x.shape);
        let n = self.levels.len();
        let ps = &mut self.params;
        for i in 0..n {
            let (prev, rest) = self.acts.split_at_mut(i);
            let cur = &mut rest[0];
            let lv = &self.levels[i];
            let input = if i == 0 { x } else { &prev[i - 1].a };
            lv.down().forward(dev, ps, input, &mut cur.c);
            let act = if i + 1 < n { LRELU } else { Act::Relu };
            match (lv.down_norm(), cur.down_saved.as_mut()) {
                (Some(bn), Some(saved)) => bn.forward(dev, ps, train, &cur.c, &mut cur.a, saved, Some(act)),
                _ => activation_forward(dev, act, &cur.c, &mut cur.a),
            }
        }
        for i in (0..n).rev() {
            let (head, tail) = self.acts.split_at_mut(i + 1);
            let cur = &mut head[i];
            let lv = &self.levels[i];
            if let Some(r) = cur.r.as_mut() {
                let inner = &tail[0];
                activation_into_channels(dev, Act::Relu, &cur.a, r, 0);
                activation_into_channels(dev, Act::Relu, inner.u(), r, cur.a.shape.c);
            }
            let up_in = cur.r.as_ref().unwrap_or(&cur.a);
            lv.up().forward(dev, ps, up_in, &mut cur.t);
            match lv.up_norm() {
                None => activation_forward(dev, Act::Tanh, &cur.t, &mut cur.out),
                Some(bn) => {
                    let saved = cur.up_saved.as_mut().expect("normed levels save statistics");
                    bn.forward(dev, ps, train, &cur.t, &mut cur.out, saved, None)
                }
            }
            if let (Some(mask), Some(dropped), true) = (cur.mask.as_mut(), cur.dropped.as_mut(), dropout) {
                dropout_apply(dev, 0.5, &self.dropout_seeds, i, &cur.out, dropped, mask);
            } else if let Some(dropped) = cur.dropped.as_mut() {
                // Dropout off (eval or --no-dropout at run time): pass the BN output through.
                crate::ops::tensor::copy(dev, &cur.out, dropped, false);
                if let Some(mask) = cur.mask.as_mut() {
                    crate::ops::tensor::fill(dev, &mut mask.data, 1.0);
                }
            }
        }
        &self.acts[0].out
    }

    /// The last forward's output.
    pub fn output(&self) -> &Tensor {
        &self.acts[0].out
    }

    /// Backward of the last (train-mode) forward from the output gradient `g_y`: adds every
    /// parameter gradient into `params.grad`. The input image needs no gradient.
    pub fn backward(&mut self, dev: &Device, x: &Tensor, g_y: &Tensor) {
        let n = self.levels.len();
        let ps = &mut self.params;
        // Up path, outermost → innermost: each level hands its inner neighbour the gradient of u.
        for i in 0..n {
            let (head, tail) = self.acts.split_at_mut(i + 1);
            let cur = &mut head[i];
            let lv = &self.levels[i];
            match lv.up_norm() {
                None => activation_backward(dev, Act::Tanh, &cur.t, &cur.out, g_y, &mut cur.g_t),
                Some(bn) => {
                    let g_bn_out = match (cur.g_b.as_mut(), cur.mask.as_ref()) {
                        (Some(g_b), Some(mask)) => {
                            mul(dev, &cur.g_out, mask, g_b);
                            &*g_b
                        }
                        _ => &cur.g_out,
                    };
                    let saved = cur.up_saved.as_ref().expect("normed levels save statistics");
                    bn.backward(dev, ps, true, saved, &cur.t, g_bn_out, &mut cur.g_t, None);
                }
            }
            match (cur.r.as_ref(), cur.g_r.as_mut()) {
                (Some(r), Some(g_r)) => {
                    lv.up().backward(dev, ps, true, r, &cur.g_t, Some(&mut *g_r), false);
                    // The gradients of r's two halves through the ReLU: a's, and u's of the level below.
                    activation_backward_from_channels(dev, Act::Relu, r, g_r, 0, &mut cur.g_a);
                    let (c0, g_u) = (cur.a.shape.c, &mut tail[0].g_out);
                    activation_backward_from_channels(dev, Act::Relu, r, g_r, c0, g_u);
                }
                // Innermost: the convT input is a_n itself.
                _ => lv
                    .up()
                    .backward(dev, ps, true, &cur.a, &cur.g_t, Some(&mut cur.g_a), false),
            }
        }
        // Down path, innermost → outermost: g_a is complete once the level below added its dx.
        for i in (0..n).rev() {
            let (prev, rest) = self.acts.split_at_mut(i);
            let cur = &mut rest[0];
            let lv = &self.levels[i];
            let act = if i + 1 < n { LRELU } else { Act::Relu };
            match (lv.down_norm(), cur.down_saved.as_ref()) {
                (Some(bn), Some(saved)) => {
                    let fused = Some((act, &cur.a));
                    bn.backward(dev, ps, true, saved, &cur.c, &cur.g_a, &mut cur.g_c, fused)
                }
                _ => activation_backward(dev, act, &cur.c, &cur.a, &cur.g_a, &mut cur.g_c),
            }
            let g_c = &cur.g_c;
            match prev.last_mut() {
                Some(p) => lv.down().backward(dev, ps, true, &p.a, g_c, Some(&mut p.g_a), true),
                None => lv.down().backward(dev, ps, true, x, g_c, None, false),
            }
        }
    }
}

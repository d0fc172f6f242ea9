//! NLayerDiscriminator `basic` (SPEC.md §2): the 70×70 PatchGAN.
//!   C1 Conv(k4 s2, bias) → LReLU; C2..C_n Conv(k4 s2) → norm → LReLU; C_{n+1} Conv(k4 s1) → norm →
//!   LReLU; last Conv(k4 s1, bias) → raw logits (no sigmoid: the loss takes logits).
//! The norm is BatchNorm (convs before it without bias) or, with `--norm instance` (CycleGAN),
//! InstanceNorm(affine=False) with biased convs. The reference keeps these in one nn.Sequential,
//! so tensor names are `model.<index>`.

use crate::device::Device;
use crate::nn::{Conv2d, Norm2d, NormKind, ParamBuilder, ParamStore};
use crate::ops::activation::{activation_backward, activation_forward, Act};
use crate::ops::conv::ConvGeom;
use crate::ops::norm::BnSaved;
use crate::tensor::{Shape, Tensor};
use anyhow::{bail, Result};

const LRELU: Act = Act::LeakyRelu(0.2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchGanConfig {
    /// 6 for pix2pix (condition and image concatenated), 3 for CycleGAN.
    pub input_nc: usize,
    pub ndf: usize,
    pub n_layers: usize,
    pub norm: NormKind,
}

/// One conv with what follows it: a norm (not on the first and last), LReLU (not on the last).
struct Block {
    conv: Conv2d,
    bn: Option<Norm2d>,
    lrelu: bool,
}

/// c: the conv output; a: the block output (LReLU(norm(c)) in one fused pass, or LReLU(c)).
struct BlockActs {
    c: Tensor,
    /// The norm's statistics of the forward, for its backward.
    saved: Option<BnSaved>,
    a: Option<Tensor>,
    g_out: Tensor,
    g_c: Tensor,
}

pub struct PatchGan {
    pub cfg: PatchGanConfig,
    pub params: ParamStore,
    blocks: Vec<Block>,
    acts: Vec<BlockActs>,
    input_shape: Option<Shape>,
}

impl PatchGan {
    pub fn new(cfg: PatchGanConfig, dev: &Device, seed: u64) -> Result<Self> {
        if cfg.n_layers == 0 {
            bail!("the discriminator needs n_layers ≥ 1");
        }
        let mut b = ParamBuilder::new(seed);
        let mut blocks = vec![];
        let mut idx = 0; // position in the reference's nn.Sequential
        let norm = cfg.norm;
        let mut push = |b: &mut ParamBuilder, cin: usize, cout: usize, stride: usize, bn: bool, lrelu: bool| {
            let bias = !bn || norm.conv_bias();
            let conv = Conv2d::new(b, &format!("model.{idx}"), ConvGeom::new(cin, cout, 4, stride, 1), bias);
            let bn = bn.then(|| Norm2d::new(norm, b, &format!("model.{}", idx + 1), cout));
            idx += 1 + bn.is_some() as usize + lrelu as usize;
            blocks.push(Block { conv, bn, lrelu });
        };
        let ndf = cfg.ndf;
        push(&mut b, cfg.input_nc, ndf, 2, false, true);
        let mut mult = 1;
        for n in 1..cfg.n_layers {
            let prev = mult;
            mult = (1 << n).min(8);
            push(&mut b, ndf * prev, ndf * mult, 2, true, true);
        }
        let prev = mult;
        mult = (1 << cfg.n_layers).min(8);
        push(&mut b, ndf * prev, ndf * mult, 1, true, true);
        push(&mut b, ndf * mult, 1, 1, false, false);
        Ok(PatchGan {
            cfg,
            params: b.finish(dev),
            blocks,
            acts: vec![],
            input_shape: None,
        })
    }

    /// The logits' shape for an input shape, or an error when the input is too small.
    pub fn out_shape(&self, x: Shape) -> Result<Shape> {
        let mut s = x;
        for bl in &self.blocks {
            s = match bl.conv.out_shape(s) {
                Some(o) if o.h > 0 && o.w > 0 => o,
                _ => bail!("discriminator input {}x{} is too small", x.h, x.w),
            };
        }
        Ok(s)
    }

    fn ensure_acts(&mut self, dev: &Device, x: Shape) {
        if self.input_shape == Some(x) {
            return;
        }
        let mut s = x;
        self.acts = self
            .blocks
            .iter()
            .map(|bl| {
                s = bl.conv.out_shape(s).expect("checked input size");
                let z = || dev.zeros_tensor(s);
                BlockActs {
                    c: z(),
                    saved: bl.bn.as_ref().map(|bn| bn.saved(dev, s)),
                    a: bl.lrelu.then(z),
                    g_out: z(),
                    g_c: z(),
                }
            })
            .collect();
        self.input_shape = Some(x);
    }

    /// Logits of D(x), BN in train mode (the reference never puts D in eval mode while training).
    pub fn forward(&mut self, dev: &Device, x: &Tensor) -> &Tensor {
        self.ensure_acts(dev, x.shape);
        let ps = &mut self.params;
        for i in 0..self.blocks.len() {
            let (prev, rest) = self.acts.split_at_mut(i);
            let cur = &mut rest[0];
            let bl = &self.blocks[i];
            let input = prev
                .last()
                .map_or(x, |p| p.a.as_ref().expect("inner blocks end in LReLU"));
            bl.conv.forward(dev, ps, input, &mut cur.c);
            match (bl.bn.as_ref(), cur.saved.as_mut(), cur.a.as_mut()) {
                (Some(bn), Some(saved), Some(a)) => bn.forward(dev, ps, true, &cur.c, a, saved, Some(LRELU)),
                (None, _, Some(a)) => activation_forward(dev, LRELU, &cur.c, a),
                (None, _, None) => {}
                _ => unreachable!("a normed block ends in LReLU"),
            }
        }
        &self.acts.last().expect("at least one block").c
    }

    /// The last forward's logits.
    pub fn logits(&self) -> &Tensor {
        &self.acts.last().expect("forward ran").c
    }

    /// Backward from the logits' gradient `g_logits`. `param_grads` adds D's weight gradients
    /// (D step); without it D is frozen (G step). `dx` receives the input gradient when given.
    pub fn backward(
        &mut self,
        dev: &Device,
        x: &Tensor,
        g_logits: &Tensor,
        param_grads: bool,
        dx: Option<&mut Tensor>,
    ) {
        let ps = &mut self.params;
        let last = self.blocks.len() - 1;
        crate::ops::tensor::copy(dev, g_logits, &mut self.acts[last].g_out, false);
        let mut dx = dx;
        for i in (0..self.blocks.len()).rev() {
            let (prev, rest) = self.acts.split_at_mut(i);
            let cur = &mut rest[0];
            let bl = &self.blocks[i];
            // g_out holds the gradient of this block's output (after LReLU where there is one).
            let g_pre: &Tensor = match (cur.a.as_ref(), bl.bn.as_ref()) {
                (Some(a), Some(bn)) => {
                    let saved = cur.saved.as_ref().expect("normed blocks save statistics");
                    let fused = Some((LRELU, a));
                    bn.backward(dev, ps, param_grads, saved, &cur.c, &cur.g_out, &mut cur.g_c, fused);
                    &cur.g_c
                }
                (Some(a), None) => {
                    activation_backward(dev, LRELU, &cur.c, a, &cur.g_out, &mut cur.g_c);
                    &cur.g_c
                }
                _ => &cur.g_out,
            };
            match prev.last_mut() {
                Some(p) => {
                    let input = p.a.as_ref().expect("inner blocks end in LReLU");
                    bl.conv
                        .backward(dev, ps, param_grads, input, g_pre, Some(&mut p.g_out), false);
                }
                None => bl
                    .conv
                    .backward(dev, ps, param_grads, x, g_pre, dx.as_deref_mut(), false),
            }
        }
    }
}

//! ResnetGenerator (SPEC.md §7), `resnet_9blocks` / `resnet_6blocks`, in the reference's
//! nn.Sequential order (so tensor names are `model.<index>` and `model.<index>.conv_block.<j>`):
//!
//! | index | stage | op | ch | k,s,p | after |
//! |---|---|---|---|---|---|
//! | 0–3 | stem | ReflectionPad(3) → Conv | in→ngf | 7,1,0 | norm, ReLU |
//! | 4–6, 7–9 | 2 × down | Conv | ngf·2^i → ngf·2^(i+1) | 3,2,1 | norm, ReLU |
//! | 10… | n_blocks × ResnetBlock(4·ngf) | x + [ReflPad(1), Conv3, norm, ReLU, ReflPad(1), Conv3, norm](x) | | | no activation after the add |
//! | then | 2 × up | ConvT, output_padding 1 | ngf·2^(2−i) → half | 3,2,1 | norm, ReLU |
//! | last 3 | head | ReflectionPad(3) → Conv (bias) | ngf→out | 7,1,0 | Tanh |
//!
//! Convs followed by a norm have a bias with InstanceNorm (CycleGAN's default) and none with
//! BatchNorm; the head conv always has one. Every stage is one or two `Unit`s (optional reflection
//! pad → conv/convT → optional norm → optional activation); a residual stage adds its input.

use crate::device::Device;
use crate::nn::{Conv2d, ConvTranspose2d, Norm2d, NormKind, ParamBuilder, ParamStore};
use crate::ops::activation::{activation_backward, activation_forward, Act};
use crate::ops::conv::ConvGeom;
use crate::ops::norm::BnSaved;
use crate::ops::tensor::{add, copy, reflection_pad_backward, reflection_pad_forward};
use crate::tensor::{Shape, Tensor};
use anyhow::{bail, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResnetConfig {
    pub input_nc: usize,
    pub output_nc: usize,
    pub ngf: usize,
    pub n_blocks: usize,
    pub norm: NormKind,
}

impl ResnetConfig {
    /// `resnet_9blocks` or `resnet_6blocks`, the reference's names. Dropout inside the blocks
    /// (the reference's use_dropout, off for CycleGAN) is not implemented.
    pub fn named(name: &str, ngf: usize, norm: NormKind, use_dropout: bool) -> Result<Self> {
        let n_blocks = match name {
            "resnet_9blocks" => 9,
            "resnet_6blocks" => 6,
            _ => bail!("unknown ResNet --netG {name:?}: expected resnet_9blocks or resnet_6blocks"),
        };
        if use_dropout {
            bail!("--netG {name} with dropout is not supported: pass --no-dropout (CycleGAN's default)");
        }
        Ok(ResnetConfig {
            input_nc: 3,
            output_nc: 3,
            ngf,
            n_blocks,
            norm,
        })
    }
}

enum ConvLayer {
    Conv(Conv2d),
    ConvT(ConvTranspose2d),
}

impl ConvLayer {
    fn out_shape(&self, x: Shape) -> Option<Shape> {
        match self {
            ConvLayer::Conv(c) => c.out_shape(x),
            ConvLayer::ConvT(c) => Some(c.out_shape(x)),
        }
    }
}

/// Optional ReflectionPad(pad) → conv or convT → optional norm → optional activation.
struct Unit {
    pad: usize,
    conv: ConvLayer,
    norm: Option<Norm2d>,
    act: Option<Act>,
}

/// A unit's activations and gradients, allocated once per input shape. A norm and the activation
/// after it run as one op (`Norm2d::forward`'s fused activation): `a` = act(norm(c)) then, and `n`
/// (the norm's output) is kept only for a norm without activation.
struct UnitActs {
    padded: Option<Tensor>,
    c: Tensor,
    n: Option<Tensor>,
    a: Option<Tensor>,
    g_padded: Option<Tensor>,
    g_c: Tensor,
    /// The norm's statistics of the forward, for its backward.
    saved: Option<BnSaved>,
}

impl UnitActs {
    fn out(&self) -> &Tensor {
        self.a.as_ref().or(self.n.as_ref()).unwrap_or(&self.c)
    }
}

impl Unit {
    fn padded_shape(&self, x: Shape) -> Shape {
        Shape::new(x.n, x.c, x.h + 2 * self.pad, x.w + 2 * self.pad)
    }

    fn out_shape(&self, x: Shape) -> Option<Shape> {
        self.conv.out_shape(self.padded_shape(x))
    }

    fn acts(&self, dev: &Device, x: Shape) -> UnitActs {
        let s = self.out_shape(x).expect("checked input size");
        let z = |s: Shape| dev.zeros_tensor(s);
        let padded = (self.pad > 0).then(|| self.padded_shape(x));
        UnitActs {
            padded: padded.map(z),
            c: z(s),
            n: (self.norm.is_some() && self.act.is_none()).then(|| z(s)),
            a: self.act.map(|_| z(s)),
            g_padded: padded.map(z),
            g_c: z(s),
            saved: self.norm.as_ref().map(|norm| norm.saved(dev, s)),
        }
    }

    fn forward(&self, dev: &Device, ps: &mut ParamStore, train: bool, x: &Tensor, acts: &mut UnitActs) {
        let UnitActs {
            padded, c, n, a, saved, ..
        } = acts;
        let input = match padded.as_mut() {
            Some(p) => {
                reflection_pad_forward(dev, self.pad, x, p);
                &*p
            }
            None => x,
        };
        match &self.conv {
            ConvLayer::Conv(conv) => conv.forward(dev, ps, input, c),
            ConvLayer::ConvT(conv) => conv.forward(dev, ps, input, c),
        }
        match (self.norm.as_ref(), saved.as_mut(), self.act, a.as_mut()) {
            (Some(norm), Some(saved), act, a) => {
                let y = a.or(n.as_mut()).expect("a normed unit has an output");
                norm.forward(dev, ps, train, c, y, saved, act);
            }
            (None, _, Some(act), Some(a)) => activation_forward(dev, act, c, a),
            _ => {}
        }
    }

    /// Backward from the gradient of the unit's output; adds parameter gradients, and writes (or
    /// adds, `accumulate`) the input gradient into `dx` when given.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        dev: &Device,
        ps: &mut ParamStore,
        x: &Tensor,
        acts: &mut UnitActs,
        g_out: &Tensor,
        dx: Option<&mut Tensor>,
        accumulate: bool,
    ) {
        let UnitActs {
            padded,
            c,
            a,
            g_padded,
            g_c,
            saved,
            ..
        } = acts;
        let g_conv: &Tensor = match (self.norm.as_ref(), saved.as_ref(), self.act, a.as_ref()) {
            (Some(norm), Some(saved), act, a) => {
                let fused = act.map(|act| (act, a.expect("an activated unit keeps its output")));
                norm.backward(dev, ps, true, saved, c, g_out, g_c, fused);
                g_c
            }
            (None, _, Some(act), Some(a)) => {
                activation_backward(dev, act, c, a, g_out, g_c);
                g_c
            }
            _ => g_out,
        };
        let conv_bwd = |ps: &mut ParamStore, input: &Tensor, dx: Option<&mut Tensor>, acc: bool| match &self.conv {
            ConvLayer::Conv(conv) => conv.backward(dev, ps, true, input, g_conv, dx, acc),
            ConvLayer::ConvT(conv) => conv.backward(dev, ps, true, input, g_conv, dx, acc),
        };
        match (padded.as_ref(), g_padded.as_mut(), dx) {
            (Some(p), Some(gp), Some(dx)) => {
                conv_bwd(ps, p, Some(gp), false);
                reflection_pad_backward(dev, self.pad, gp, dx, accumulate);
            }
            (Some(p), _, None) => conv_bwd(ps, p, None, false),
            (None, _, dx) => conv_bwd(ps, x, dx, accumulate),
            (Some(_), None, Some(_)) => unreachable!("padded units keep a padded gradient"),
        }
    }
}

/// One unit, or a residual block (two units and the skip) when `second` is present.
struct Stage {
    first: Unit,
    second: Option<Unit>,
}

struct StageActs {
    first: UnitActs,
    second: Option<UnitActs>,
    /// Residual blocks: the gradient between the two units, and the block output x + f(x).
    g_mid: Option<Tensor>,
    sum: Option<Tensor>,
}

impl StageActs {
    fn out(&self) -> &Tensor {
        self.sum.as_ref().unwrap_or_else(|| self.first.out())
    }
}

/// Which of a generator's kept forwards an activation set belongs to. A generator keeps one set
/// per pass, so a second forward does not overwrite the first before its backward: CycleGAN runs
/// each generator on a real image (`First`) and on the other generator's fake (`Second`) before
/// either backward. Single-pass users (pix2pix-style inference, tests) use `First`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    First,
    Second,
}

/// One forward's activations, and the gradients of its backward.
struct PassActs {
    input: Shape,
    stages: Vec<StageActs>,
    /// grads[i]: the gradient of stage i's output (the last stage reads the caller's).
    grads: Vec<Tensor>,
}

pub struct ResnetGenerator {
    pub cfg: ResnetConfig,
    pub params: ParamStore,
    stages: Vec<Stage>,
    /// Indexed by `Pass`; allocated on a pass's first forward (and again when its shape changes).
    passes: [Option<PassActs>; 2],
}

impl ResnetGenerator {
    pub fn new(cfg: ResnetConfig, dev: &Device, seed: u64) -> Result<Self> {
        let mut b = ParamBuilder::new(seed);
        let (ngf, norm) = (cfg.ngf, cfg.norm);
        let bias = norm.conv_bias();
        let mut stages = vec![];
        // Registration order = the reference's module order = its state_dict order.
        let unit = |b: &mut ParamBuilder, conv: ConvLayer, norm_name: &str, ch: usize, pad: usize| Unit {
            pad,
            conv,
            norm: Some(Norm2d::new(norm, b, norm_name, ch)),
            act: Some(Act::Relu),
        };
        let conv = |b: &mut ParamBuilder, name: String, g: ConvGeom, bias: bool| {
            ConvLayer::Conv(Conv2d::new(b, &name, g, bias))
        };
        let c = conv(
            &mut b,
            "model.1".into(),
            ConvGeom::new(cfg.input_nc, ngf, 7, 1, 0),
            bias,
        );
        stages.push(Stage {
            first: unit(&mut b, c, "model.2", ngf, 3),
            second: None,
        });
        let mut idx = 4;
        for i in 0..2 {
            let (cin, cout) = (ngf << i, ngf << (i + 1));
            let c = conv(&mut b, format!("model.{idx}"), ConvGeom::new(cin, cout, 3, 2, 1), bias);
            let first = unit(&mut b, c, &format!("model.{}", idx + 1), cout, 0);
            stages.push(Stage { first, second: None });
            idx += 3;
        }
        let dim = ngf * 4;
        for _ in 0..cfg.n_blocks {
            let p = format!("model.{idx}.conv_block");
            let g = ConvGeom::new(dim, dim, 3, 1, 0);
            let c1 = conv(&mut b, format!("{p}.1"), g, bias);
            let first = unit(&mut b, c1, &format!("{p}.2"), dim, 1);
            let c2 = conv(&mut b, format!("{p}.5"), g, bias);
            let mut second = unit(&mut b, c2, &format!("{p}.6"), dim, 1);
            second.act = None;
            stages.push(Stage {
                first,
                second: Some(second),
            });
            idx += 1;
        }
        for i in 0..2 {
            let (cin, cout) = (ngf << (2 - i), ngf << (1 - i));
            let g = ConvGeom::new(cin, cout, 3, 2, 1).with_output_padding(1);
            let c = ConvLayer::ConvT(ConvTranspose2d::new(&mut b, &format!("model.{idx}"), g, bias));
            let first = unit(&mut b, c, &format!("model.{}", idx + 1), cout, 0);
            stages.push(Stage { first, second: None });
            idx += 3;
        }
        let c = conv(
            &mut b,
            format!("model.{}", idx + 1),
            ConvGeom::new(ngf, cfg.output_nc, 7, 1, 0),
            true,
        );
        stages.push(Stage {
            first: Unit {
                pad: 3,
                conv: c,
                norm: None,
                act: Some(Act::Tanh),
            },
            second: None,
        });
        Ok(ResnetGenerator {
            cfg,
            params: b.finish(dev),
            stages,
            passes: [None, None],
        })
    }

    /// H and W must be multiples of 4 (two stride-2 levels) and at least 8 (the blocks'
    /// reflection pad needs more than one pixel at a quarter of the size).
    pub fn check_input(&self, s: Shape) -> Result<()> {
        if s.c != self.cfg.input_nc || s.h < 8 || s.w < 8 || !s.h.is_multiple_of(4) || !s.w.is_multiple_of(4) {
            bail!(
                "generator input {}x{}x{} does not fit: {} channels and H, W multiples of 4 (at least 8) expected",
                s.c,
                s.h,
                s.w,
                self.cfg.input_nc
            );
        }
        Ok(())
    }

    /// Whether the order of this generator's forwards matters (BatchNorm's running statistics).
    pub fn has_running_stats(&self) -> bool {
        let norms = self.stages.iter().flat_map(|st| [Some(&st.first), st.second.as_ref()]);
        norms
            .flatten()
            .any(|u| u.norm.as_ref().is_some_and(Norm2d::has_running_stats))
    }

    /// The activation set of `pass` for input shape `x`, allocated when missing or of another shape.
    fn pass_acts(&mut self, dev: &Device, pass: Pass, x: Shape) -> &mut PassActs {
        let slot = &mut self.passes[pass as usize];
        if slot.as_ref().is_none_or(|p| p.input != x) {
            let mut s = x;
            let (mut stages, mut grads) = (vec![], vec![]);
            for st in &self.stages {
                let first = st.first.acts(dev, s);
                let mid = st.first.out_shape(s).expect("checked input size");
                let second = st.second.as_ref().map(|u| u.acts(dev, mid));
                let out = match &st.second {
                    Some(u) => u.out_shape(mid).expect("checked input size"),
                    None => mid,
                };
                let residual = st.second.is_some();
                stages.push(StageActs {
                    first,
                    second,
                    g_mid: residual.then(|| dev.zeros_tensor(mid)),
                    sum: residual.then(|| dev.zeros_tensor(out)),
                });
                grads.push(dev.zeros_tensor(out));
                s = out;
            }
            *slot = Some(PassActs {
                input: x,
                stages,
                grads,
            });
        }
        slot.as_mut().expect("allocated above")
    }

    /// fake = G(x), kept as pass `First`. `train` selects batch statistics for BatchNorm;
    /// InstanceNorm is the same in both modes.
    pub fn forward(&mut self, dev: &Device, x: &Tensor, train: bool) -> &Tensor {
        self.forward_pass(dev, Pass::First, x, train)
    }

    /// fake = G(x), its activations kept as `pass` (replacing that pass's previous forward).
    pub fn forward_pass(&mut self, dev: &Device, pass: Pass, x: &Tensor, train: bool) -> &Tensor {
        self.pass_acts(dev, pass, x.shape);
        let acts = self.passes[pass as usize].as_mut().expect("allocated");
        let ps = &mut self.params;
        for (i, st) in self.stages.iter().enumerate() {
            let (prev, rest) = acts.stages.split_at_mut(i);
            let cur = &mut rest[0];
            let input = prev.last().map_or(x, |p| p.out());
            st.first.forward(dev, ps, train, input, &mut cur.first);
            if let (Some(u), Some(a2), Some(sum)) = (st.second.as_ref(), cur.second.as_mut(), cur.sum.as_mut()) {
                u.forward(dev, ps, train, cur.first.out(), a2);
                add(dev, input, a2.out(), sum);
            }
        }
        self.output_of(pass)
    }

    /// The output of pass `First`'s last forward.
    pub fn output(&self) -> &Tensor {
        self.output_of(Pass::First)
    }

    /// The output of `pass`'s last forward.
    pub fn output_of(&self, pass: Pass) -> &Tensor {
        let acts = self.passes[pass as usize].as_ref().expect("forward ran");
        acts.stages.last().expect("at least one stage").out()
    }

    /// `backward_pass` of pass `First`.
    pub fn backward(&mut self, dev: &Device, x: &Tensor, g_y: &Tensor, dx: Option<&mut Tensor>) {
        self.backward_pass(dev, Pass::First, x, g_y, dx)
    }

    /// Backward of `pass`'s last forward (whose input was `x`) from the output gradient `g_y`:
    /// adds every parameter gradient into `params.grad`, and writes the input gradient into `dx`
    /// when given (CycleGAN's cycle losses reach G_A through G_B's input).
    pub fn backward_pass(&mut self, dev: &Device, pass: Pass, x: &Tensor, g_y: &Tensor, dx: Option<&mut Tensor>) {
        let acts = self.passes[pass as usize].as_mut().expect("backward after a forward");
        assert_eq!(acts.input, x.shape, "backward input differs from the pass's forward");
        let ps = &mut self.params;
        let n = self.stages.len();
        let mut dx = dx;
        for i in (0..n).rev() {
            let (prev, rest) = acts.stages.split_at_mut(i);
            let cur = &mut rest[0];
            let input = prev.last().map_or(x, |p| p.out());
            let (g_lo, g_hi) = acts.grads.split_at_mut(i);
            let g_out = if i + 1 == n { g_y } else { &g_hi[0] };
            let dx_i = if i == 0 { dx.as_deref_mut() } else { g_lo.last_mut() };
            let st = &self.stages[i];
            match (st.second.as_ref(), cur.second.as_mut(), cur.g_mid.as_mut()) {
                (Some(u2), Some(a2), Some(g_mid)) => {
                    u2.backward(dev, ps, cur.first.out(), a2, g_out, Some(g_mid), false);
                    let mut dx_i = dx_i;
                    st.first
                        .backward(dev, ps, input, &mut cur.first, g_mid, dx_i.as_deref_mut(), false);
                    if let Some(d) = dx_i {
                        copy(dev, g_out, d, true); // the skip connection
                    }
                }
                _ => st.first.backward(dev, ps, input, &mut cur.first, g_out, dx_i, false),
            }
        }
    }
}

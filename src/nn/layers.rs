//! Layers: a parameter layout (spans in a ParamStore) plus the op calls. Layers hold no
//! per-forward state: activations, and the norms' saved statistics, are owned by the networks,
//! which pass them in (so a network can keep more than one forward alive, as CycleGAN's
//! generators do).

use super::params::{Init, ParamBuilder, ParamStore};
use crate::device::Device;
use crate::nvtx;
use crate::ops::activation::Act;
use crate::ops::conv::{self, ConvGeom, ConvParams};
use crate::ops::norm::{self, BnParams, BnSaved};
use crate::tensor::{Shape, Tensor};
use anyhow::{bail, Result};

/// NVTX range names of a layer's forward and backward ("model.model.1.model.1 conv fwd"), made
/// once so that profiling costs no formatting per call.
#[derive(Clone, Debug)]
pub struct Labels {
    pub fwd: String,
    pub bwd: String,
}

impl Labels {
    fn new(name: &str, kind: &str) -> Self {
        Labels {
            fwd: format!("{name} {kind} fwd"),
            bwd: format!("{name} {kind} bwd"),
        }
    }
}

/// SPEC.md §4: conv and convT weights ~ N(0, 0.02), biases 0.
const W_INIT: Init = Init::Normal { mean: 0.0, std: 0.02 };

pub struct Conv2d {
    pub geom: ConvGeom,
    pub p: ConvParams,
    pub labels: Labels,
}

impl Conv2d {
    pub fn new(b: &mut ParamBuilder, name: &str, geom: ConvGeom, bias: bool) -> Self {
        let weight = b.param(
            &format!("{name}.weight"),
            &[geom.cout, geom.cin, geom.k, geom.k],
            W_INIT,
        );
        let bias = bias.then(|| b.param(&format!("{name}.bias"), &[geom.cout], Init::Const(0.0)));
        Conv2d {
            geom,
            p: ConvParams { weight, bias },
            labels: Labels::new(name, "conv"),
        }
    }

    pub fn out_shape(&self, x: Shape) -> Option<Shape> {
        Some(Shape::new(
            x.n,
            self.geom.cout,
            self.geom.conv_out(x.h)?,
            self.geom.conv_out(x.w)?,
        ))
    }

    pub fn forward(&self, dev: &Device, ps: &ParamStore, x: &Tensor, y: &mut Tensor) {
        let _r = nvtx::range(&self.labels.fwd);
        conv::conv2d_forward(dev, &self.geom, &ps.data, &self.p, x, y);
    }

    /// Adds weight gradients when `param_grads`; writes (or adds, `accumulate_dx`) dx when given.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        dev: &Device,
        ps: &mut ParamStore,
        param_grads: bool,
        x: &Tensor,
        dy: &Tensor,
        dx: Option<&mut Tensor>,
        accumulate_dx: bool,
    ) {
        let _r = nvtx::range(&self.labels.bwd);
        let grads = if param_grads { Some(&mut ps.grad) } else { None };
        conv::conv2d_backward(dev, &self.geom, &ps.data, &self.p, grads, x, dy, dx, accumulate_dx);
    }
}

pub struct ConvTranspose2d {
    pub geom: ConvGeom,
    pub p: ConvParams,
    pub labels: Labels,
}

impl ConvTranspose2d {
    pub fn new(b: &mut ParamBuilder, name: &str, geom: ConvGeom, bias: bool) -> Self {
        // PyTorch shapes ConvTranspose2d weights [in, out, kH, kW].
        let weight = b.param(
            &format!("{name}.weight"),
            &[geom.cin, geom.cout, geom.k, geom.k],
            W_INIT,
        );
        let bias = bias.then(|| b.param(&format!("{name}.bias"), &[geom.cout], Init::Const(0.0)));
        ConvTranspose2d {
            geom,
            p: ConvParams { weight, bias },
            labels: Labels::new(name, "convT"),
        }
    }

    pub fn out_shape(&self, x: Shape) -> Shape {
        Shape::new(x.n, self.geom.cout, self.geom.convt_out(x.h), self.geom.convt_out(x.w))
    }

    pub fn forward(&self, dev: &Device, ps: &ParamStore, x: &Tensor, y: &mut Tensor) {
        let _r = nvtx::range(&self.labels.fwd);
        conv::conv_transpose2d_forward(dev, &self.geom, &ps.data, &self.p, x, y);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        dev: &Device,
        ps: &mut ParamStore,
        param_grads: bool,
        x: &Tensor,
        dy: &Tensor,
        dx: Option<&mut Tensor>,
        accumulate_dx: bool,
    ) {
        let _r = nvtx::range(&self.labels.bwd);
        let grads = if param_grads { Some(&mut ps.grad) } else { None };
        conv::conv_transpose2d_backward(dev, &self.geom, &ps.data, &self.p, grads, x, dy, dx, accumulate_dx);
    }
}

/// BatchNorm2d (affine, tracking running stats, eps 1e-5, momentum 0.1).
pub struct BatchNorm2d {
    pub channels: usize,
    pub p: BnParams,
    counter: usize,
    pub labels: Labels,
}

impl BatchNorm2d {
    pub fn new(b: &mut ParamBuilder, name: &str, channels: usize) -> Self {
        let weight = b.param(
            &format!("{name}.weight"),
            &[channels],
            Init::Normal { mean: 1.0, std: 0.02 },
        );
        let bias = b.param(&format!("{name}.bias"), &[channels], Init::Const(0.0));
        let running_mean = b.buffer(&format!("{name}.running_mean"), channels, 0.0);
        let running_var = b.buffer(&format!("{name}.running_var"), channels, 1.0);
        let counter = b.counter(&format!("{name}.num_batches_tracked"));
        BatchNorm2d {
            channels,
            p: BnParams {
                weight,
                bias,
                running_mean,
                running_var,
                eps: 1e-5,
                momentum: 0.1,
            },
            counter,
            labels: Labels::new(name, "bn"),
        }
    }

    /// Train mode (batch statistics, saved for the backward; running-stat update) or eval mode
    /// (running statistics; `saved` untouched); `act` is applied to the output (see Norm2d).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        dev: &Device,
        ps: &mut ParamStore,
        train: bool,
        x: &Tensor,
        y: &mut Tensor,
        saved: &mut BnSaved,
        act: Option<Act>,
    ) {
        let _r = nvtx::range(&self.labels.fwd);
        if train {
            ps.counters[self.counter] += 1;
            norm::batch_norm_forward_train(dev, &self.p, &ps.data, &mut ps.buffers, x, y, saved, act);
        } else {
            norm::batch_norm_forward_eval(dev, &self.p, &ps.data, &ps.buffers, x, y, act);
        }
    }

    /// Backward of the train-mode forward that saved `saved` (and wrote `act`'s output y).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        dev: &Device,
        ps: &mut ParamStore,
        param_grads: bool,
        saved: &BnSaved,
        x: &Tensor,
        dy: &Tensor,
        dx: &mut Tensor,
        act: Option<(Act, &Tensor)>,
    ) {
        let _r = nvtx::range(&self.labels.bwd);
        let grads = if param_grads { Some(&mut ps.grad) } else { None };
        norm::batch_norm_backward(dev, &self.p, &ps.data, grads, saved, x, dy, dx, act);
    }
}

/// InstanceNorm2d(affine=False, track_running_stats=False), the reference's `--norm instance`:
/// no parameters and no buffers (so no state_dict entries), the same in train and eval mode.
pub struct InstanceNorm2d {
    pub channels: usize,
    pub labels: Labels,
}

impl InstanceNorm2d {
    pub const EPS: f32 = 1e-5;

    pub fn new(name: &str, channels: usize) -> Self {
        InstanceNorm2d {
            channels,
            labels: Labels::new(name, "in"),
        }
    }

    /// Normalises each (sample, channel) plane; its statistics go to `saved` (one per plane);
    /// `act` is applied to the output (see Norm2d).
    pub fn forward(&self, dev: &Device, x: &Tensor, y: &mut Tensor, saved: &mut BnSaved, act: Option<Act>) {
        let _r = nvtx::range(&self.labels.fwd);
        assert_eq!(
            saved.mean.len(),
            x.shape.n * x.shape.c,
            "instance norm statistics per plane"
        );
        norm::instance_norm_forward(dev, Self::EPS, x, y, saved, act);
    }

    /// Backward of the forward that saved `saved` (and wrote `act`'s output y).
    pub fn backward(
        &self,
        dev: &Device,
        saved: &BnSaved,
        x: &Tensor,
        dy: &Tensor,
        dx: &mut Tensor,
        act: Option<(Act, &Tensor)>,
    ) {
        let _r = nvtx::range(&self.labels.bwd);
        norm::instance_norm_backward(dev, saved, x, dy, dx, act);
    }
}

/// The reference's `--norm`: which normalisation layer the networks use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    Batch,
    Instance,
}

impl NormKind {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "batch" => Ok(NormKind::Batch),
            "instance" => Ok(NormKind::Instance),
            _ => bail!("unknown --norm {s:?}: expected batch or instance"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            NormKind::Batch => "batch",
            NormKind::Instance => "instance",
        }
    }

    /// The reference's `use_bias`: convs followed by a norm have a bias only with InstanceNorm
    /// (BatchNorm's beta makes one redundant).
    pub fn conv_bias(self) -> bool {
        self == NormKind::Instance
    }
}

/// A normalisation layer of either kind, so networks are written once for `--norm batch|instance`.
pub enum Norm2d {
    Batch(BatchNorm2d),
    Instance(InstanceNorm2d),
}

impl Norm2d {
    pub fn new(kind: NormKind, b: &mut ParamBuilder, name: &str, channels: usize) -> Self {
        match kind {
            NormKind::Batch => Norm2d::Batch(BatchNorm2d::new(b, name, channels)),
            NormKind::Instance => Norm2d::Instance(InstanceNorm2d::new(name, channels)),
        }
    }

    /// Room for the statistics one forward on input shape `x` saves for its backward: per
    /// channel for batch norm, per (sample, channel) plane for instance norm.
    pub fn saved(&self, dev: &Device, x: Shape) -> BnSaved {
        let len = match self {
            Norm2d::Batch(_) => x.c,
            Norm2d::Instance(_) => x.n * x.c,
        };
        BnSaved {
            mean: dev.zeros(len),
            invstd: dev.zeros(len),
        }
    }

    /// Whether forwards change state that later forwards read (batch norm's running statistics),
    /// so that the order of a network's forwards matters.
    pub fn has_running_stats(&self) -> bool {
        matches!(self, Norm2d::Batch(_))
    }

    /// y = act(norm(x)): `train` selects batch norm's batch statistics (instance norm ignores
    /// it); `act`, LeakyReLU or ReLU, is the activation that follows the norm in the network,
    /// applied in the same pass (None: y is the norm's output).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        dev: &Device,
        ps: &mut ParamStore,
        train: bool,
        x: &Tensor,
        y: &mut Tensor,
        saved: &mut BnSaved,
        act: Option<Act>,
    ) {
        match self {
            Norm2d::Batch(bn) => bn.forward(dev, ps, train, x, y, saved, act),
            Norm2d::Instance(inorm) => inorm.forward(dev, x, y, saved, act),
        }
    }

    /// Backward of the (train-mode) forward that saved `saved`: dx from dy, the gradient of y.
    /// A forward with an activation passes it here with the y it wrote: `Some((act, y))`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        dev: &Device,
        ps: &mut ParamStore,
        param_grads: bool,
        saved: &BnSaved,
        x: &Tensor,
        dy: &Tensor,
        dx: &mut Tensor,
        act: Option<(Act, &Tensor)>,
    ) {
        match self {
            Norm2d::Batch(bn) => bn.backward(dev, ps, param_grads, saved, x, dy, dx, act),
            Norm2d::Instance(inorm) => inorm.backward(dev, saved, x, dy, dx, act),
        }
    }
}

//! Layers: a parameter layout (spans in a ParamStore) plus the op calls. Activations are owned by
//! the networks, which pass them in; a layer only keeps what its backward cannot get elsewhere
//! (BN's batch statistics).

use super::params::{Init, ParamBuilder, ParamStore};
use crate::device::Device;
use crate::nvtx;
use crate::ops::conv::{self, ConvGeom, ConvParams};
use crate::ops::norm::{self, BnParams, BnSaved};
use crate::tensor::{Shape, Tensor};

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
    saved: BnSaved,
    pub labels: Labels,
}

impl BatchNorm2d {
    pub fn new(b: &mut ParamBuilder, dev: &Device, name: &str, channels: usize) -> Self {
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
            saved: BnSaved {
                mean: dev.zeros(channels),
                invstd: dev.zeros(channels),
            },
        }
    }

    /// Train mode (batch statistics, running-stat update) or eval mode (running statistics).
    pub fn forward(&mut self, dev: &Device, ps: &mut ParamStore, train: bool, x: &Tensor, y: &mut Tensor) {
        let _r = nvtx::range(&self.labels.fwd);
        if train {
            ps.counters[self.counter] += 1;
            norm::batch_norm_forward_train(dev, &self.p, &ps.data, &mut ps.buffers, x, y, &mut self.saved);
        } else {
            norm::batch_norm_forward_eval(dev, &self.p, &ps.data, &ps.buffers, x, y);
        }
    }

    /// Backward of the last train-mode forward.
    pub fn backward(
        &self,
        dev: &Device,
        ps: &mut ParamStore,
        param_grads: bool,
        x: &Tensor,
        dy: &Tensor,
        dx: &mut Tensor,
    ) {
        let _r = nvtx::range(&self.labels.bwd);
        let grads = if param_grads { Some(&mut ps.grad) } else { None };
        norm::batch_norm_backward(dev, &self.p, &ps.data, grads, &self.saved, x, dy, dx);
    }
}

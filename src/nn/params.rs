//! Flat parameter storage. A network's parameters, gradients and Adam moments live in one buffer
//! each (so one Adam launch updates the whole network); BN running statistics live in a second
//! buffer and `num_batches_tracked` counters on the host. Every entry keeps the PyTorch
//! state_dict key and shape, which is what checkpoints are written with.

use crate::device::step_values::StepValues;
use crate::device::Device;
use crate::ops::adam::{adam_apply, AdamStep};
use crate::ops::tensor::fill;
use crate::tensor::{Span, Storage};
use anyhow::{bail, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Learnable: in `data`, with a gradient and Adam moments.
    Param,
    /// Running statistic: in `buffers`.
    Buffer,
    /// An int64 counter (BN's num_batches_tracked): `span.off` indexes `counters`.
    Counter,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub dims: Vec<usize>,
    pub kind: Kind,
    pub span: Span,
}

pub struct ParamStore {
    pub device: Device,
    pub entries: Vec<Entry>,
    pub data: Storage,
    pub grad: Storage,
    pub adam_m: Storage,
    pub adam_v: Storage,
    pub buffers: Storage,
    pub counters: Vec<i64>,
    /// Number of Adam steps taken (PyTorch's state['step']).
    pub adam_step: u64,
    /// The prepared Adam step (`prepare_adam`): its hyperparameters and, in device memory, its
    /// two factors, which `apply_adam` reads.
    adam_next: Option<AdamStep>,
    adam_factors: StepValues<f32>,
}

/// How a parameter starts (SPEC.md §4: conv weights N(0, 0.02), BN gamma N(1, 0.02), biases 0).
#[derive(Clone, Copy, Debug)]
pub enum Init {
    Normal { mean: f32, std: f32 },
    Const(f32),
}

/// Collects entries while a network is built, drawing initial values from one seeded RNG in
/// registration order.
pub struct ParamBuilder {
    entries: Vec<Entry>,
    data: Vec<f32>,
    buffers: Vec<f32>,
    counters: Vec<i64>,
    rng: ChaCha8Rng,
}

impl ParamBuilder {
    pub fn new(seed: u64) -> Self {
        ParamBuilder {
            entries: vec![],
            data: vec![],
            buffers: vec![],
            counters: vec![],
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    pub fn param(&mut self, name: &str, dims: &[usize], init: Init) -> Span {
        let len = dims.iter().product();
        let span = Span {
            off: self.data.len(),
            len,
        };
        match init {
            Init::Const(v) => self.data.extend(std::iter::repeat_n(v, len)),
            Init::Normal { mean, std } => {
                let d = Normal::new(mean, std).expect("valid normal");
                for _ in 0..len {
                    let v = d.sample(&mut self.rng);
                    self.data.push(v);
                }
            }
        }
        self.entries.push(Entry {
            name: name.into(),
            dims: dims.to_vec(),
            kind: Kind::Param,
            span,
        });
        span
    }

    pub fn buffer(&mut self, name: &str, len: usize, value: f32) -> Span {
        let span = Span {
            off: self.buffers.len(),
            len,
        };
        self.buffers.extend(std::iter::repeat_n(value, len));
        self.entries.push(Entry {
            name: name.into(),
            dims: vec![len],
            kind: Kind::Buffer,
            span,
        });
        span
    }

    pub fn counter(&mut self, name: &str) -> usize {
        let idx = self.counters.len();
        self.counters.push(0);
        self.entries.push(Entry {
            name: name.into(),
            dims: vec![],
            kind: Kind::Counter,
            span: Span { off: idx, len: 1 },
        });
        idx
    }

    pub fn finish(self, dev: &Device) -> ParamStore {
        let n = self.data.len();
        ParamStore {
            device: dev.clone(),
            entries: self.entries,
            data: dev.upload(&self.data),
            grad: dev.zeros(n),
            adam_m: dev.zeros(n),
            adam_v: dev.zeros(n),
            buffers: dev.upload(&self.buffers),
            counters: self.counters,
            adam_step: 0,
            adam_next: None,
            adam_factors: StepValues::new(dev, 2),
        }
    }
}

impl ParamStore {
    /// Learnable parameter count (what SPEC.md §8 counts).
    pub fn num_params(&self) -> usize {
        self.data.len()
    }

    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    pub fn zero_grad(&mut self) {
        fill(&self.device, &mut self.grad, 0.0);
    }

    /// One Adam step over every parameter (`prepare_adam` then `apply_adam`).
    pub fn adam(&mut self, lr: f64, beta1: f64, beta2: f64) {
        self.prepare_adam(lr, beta1, beta2);
        self.apply_adam();
    }

    /// The host half of the next Adam step: counts it and writes its bias-corrected factors to
    /// the device. Called before a step (never inside a graph capture).
    pub fn prepare_adam(&mut self, lr: f64, beta1: f64, beta2: f64) {
        self.adam_step += 1;
        let s = AdamStep {
            lr,
            beta1,
            beta2,
            eps: 1e-8,
            step: self.adam_step,
        };
        let (neg_step, bc2_sqrt) = s.factors();
        self.adam_factors.set(&self.device, &[neg_step, bc2_sqrt]);
        self.adam_next = Some(s);
    }

    /// The device half: the update with the prepared factors (capturable: no host copy).
    pub fn apply_adam(&mut self) {
        let s = self.adam_next.expect("apply_adam without prepare_adam");
        adam_apply(
            &self.device,
            &s,
            &self.adam_factors,
            &mut self.data,
            &self.grad,
            &mut self.adam_m,
            &mut self.adam_v,
        );
    }

    /// Host copy of one entry's values (parameters, buffers; counters as f32 are not offered).
    pub fn values(&self, e: &Entry) -> Vec<f32> {
        match e.kind {
            Kind::Param => self.device.download(&self.data)[e.span.range()].to_vec(),
            Kind::Buffer => self.device.download(&self.buffers)[e.span.range()].to_vec(),
            Kind::Counter => vec![self.counters[e.span.off] as f32],
        }
    }

    /// Host copies of the three flat buffers, for writing many entries at once.
    pub fn host(&self) -> HostParams {
        HostParams {
            data: self.device.download(&self.data),
            grad: self.device.download(&self.grad),
            buffers: self.device.download(&self.buffers),
        }
    }

    /// Replaces all values from host copies of the flat buffers (same layout).
    pub fn load_host(&mut self, data: &[f32], buffers: &[f32], counters: &[i64]) -> Result<()> {
        // An empty CUDA storage holds one unused element, so compare with the logical lengths.
        let fits = |s: &Storage, want: usize| want == s.len() || (want == 0 && s.len() <= 1);
        if !fits(&self.data, data.len()) || !fits(&self.buffers, buffers.len()) || counters.len() != self.counters.len()
        {
            bail!("parameter layout differs from this network's");
        }
        self.device.write(&mut self.data, data);
        self.device.write(&mut self.buffers, buffers);
        self.counters.copy_from_slice(counters);
        Ok(())
    }

    /// A copy of the BN running statistics and counters, so that a forward pass made for
    /// inspection (validation in train-mode BN) can leave the training state as it was.
    pub fn snapshot_running_stats(&self) -> (Vec<f32>, Vec<i64>) {
        (self.device.download(&self.buffers), self.counters.clone())
    }

    pub fn restore_running_stats(&mut self, saved: (Vec<f32>, Vec<i64>)) {
        self.device.write(&mut self.buffers, &saved.0);
        self.counters = saved.1;
    }

    /// Moves everything (values, gradients, moments, running stats) to another device.
    pub fn to_device(&self, dev: &Device) -> ParamStore {
        let mv = |s: &Storage| dev.upload(&self.device.download(s));
        ParamStore {
            device: dev.clone(),
            entries: self.entries.clone(),
            data: mv(&self.data),
            grad: mv(&self.grad),
            adam_m: mv(&self.adam_m),
            adam_v: mv(&self.adam_v),
            buffers: mv(&self.buffers),
            counters: self.counters.clone(),
            adam_step: self.adam_step,
            adam_next: None,
            adam_factors: StepValues::new(dev, 2),
        }
    }
}

pub struct HostParams {
    pub data: Vec<f32>,
    pub grad: Vec<f32>,
    pub buffers: Vec<f32>,
}

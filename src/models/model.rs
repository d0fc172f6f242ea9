//! The one small interface every model offers, so the training loop, checkpoints, resume, the
//! loss log and plot, validation, `--profile` and `gradcheck` are written once for all models:
//! its named networks (the reference's model_names), its named losses (loss_names), one step
//! (optimize_parameters), and the extra state a resume needs. Also `Generator`, what validation
//! and test need of a translating network (U-Net or ResNet).

use super::phases::PhaseTimes;
use super::resnet::ResnetGenerator;
use super::unet::UnetGenerator;
use crate::checkpoint::NamedTensor;
use crate::device::Device;
use crate::nn::ParamStore;
use crate::ops::activation::splitmix;
use crate::tensor::{Shape, Storage, Tensor};
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub trait Model {
    /// The reference's `--model` name.
    fn kind(&self) -> &'static str;
    /// The networks with their reference names ("G", "D"; "G_A", "G_B", "D_A", "D_B"), which
    /// name the checkpoint files (`<prefix>_net_<name>.safetensors`).
    fn networks(&self) -> Vec<(&'static str, &ParamStore)>;
    fn networks_mut(&mut self) -> Vec<(&'static str, &mut ParamStore)>;
    /// The logged losses, in the reference's loss_names order.
    fn loss_names(&self) -> &'static [&'static str];
    /// The device buffer the step writes its raw loss values into (read asynchronously by the
    /// training loop; `losses_from` turns its contents into the logged losses).
    fn loss_buffer(&self) -> &Storage;
    /// The logged losses, in `loss_names` order, from the contents of `loss_buffer`.
    fn losses_from(&self, raw: &[f32]) -> Vec<f32>;
    /// The last step's losses in `loss_names` order (one device→host copy: call when logging).
    fn losses(&self, dev: &Device) -> Vec<f32> {
        self.losses_from(&dev.download(self.loss_buffer()))
    }
    /// Checks a batch (real_A, real_B) against the networks, with an error naming the mismatch.
    fn check_batch(&self, a: Shape, b: Shape) -> Result<()>;
    /// The host half of optimize_parameters() at learning rate `lr` for a batch of this shape:
    /// advances the step counters and writes this step's values (Adam's factors, dropout seeds,
    /// the image pools' plans) to the device.
    fn prepare_step(&mut self, dev: &Device, lr: f64, batch: Shape);
    /// The device half: every launch of the step, with no host synchronisation, copy or (after a
    /// first step at this batch shape) allocation, so that it can be captured once as a CUDA
    /// graph and replayed (`models::graph::StepGraph`). Host state it changes must change by the
    /// same amount every step (BN's num_batches_tracked counters), which replay reproduces.
    fn run_step(&mut self, dev: &Device, real_a: &Tensor, real_b: &Tensor);
    /// One optimize_parameters() call at learning rate `lr`, no host synchronisation inside.
    fn step(&mut self, dev: &Device, real_a: &Tensor, real_b: &Tensor, lr: f64) {
        self.prepare_step(dev, lr, real_a.shape);
        self.run_step(dev, real_a, real_b);
    }
    /// Turns per-phase timing on (the table starts empty).
    fn set_phase_timing(&mut self, on: bool);
    fn phase_times(&self) -> Option<&PhaseTimes>;
    /// What a bit-exact resume needs beyond weights and Adam moments (step counter, image pools):
    /// tensors and string metadata stored in the train state file.
    fn extra_state(&self, dev: &Device) -> (Vec<NamedTensor>, Vec<(String, String)>);
    /// Restores `extra_state`; `path` names the file in errors.
    fn load_extra_state(
        &mut self,
        dev: &Device,
        path: &Path,
        tensors: &BTreeMap<String, NamedTensor>,
        meta: &HashMap<String, String>,
    ) -> Result<()>;
    /// The A→B generator, for validation and test pages.
    fn generator_ab(&mut self) -> &mut dyn Generator;
    /// The last step's images by the reference's visual names (fake_B; fake_B, rec_A, …), one
    /// device→host copy each.
    fn visuals(&self, dev: &Device) -> Vec<(&'static str, Vec<f32>)>;
}

/// A translating network as validation and test use it.
pub trait Generator {
    fn params(&self) -> &ParamStore;
    fn params_mut(&mut self) -> &mut ParamStore;
    fn check_input(&self, s: Shape) -> Result<()>;
    /// G(x) in the reference's test mode (`train`: BN batch statistics; dropout seeded by
    /// `seed` where the network has dropout) or eval mode.
    fn translate(&mut self, dev: &Device, x: &Tensor, train: bool, seed: Option<u64>) -> &Tensor;
}

impl Generator for UnetGenerator {
    fn params(&self) -> &ParamStore {
        &self.params
    }
    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.params
    }
    fn check_input(&self, s: Shape) -> Result<()> {
        UnetGenerator::check_input(self, s)
    }
    fn translate(&mut self, dev: &Device, x: &Tensor, train: bool, seed: Option<u64>) -> &Tensor {
        self.forward(dev, x, train, seed)
    }
}

impl Generator for ResnetGenerator {
    fn params(&self) -> &ParamStore {
        &self.params
    }
    fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.params
    }
    fn check_input(&self, s: Shape) -> Result<()> {
        ResnetGenerator::check_input(self, s)
    }
    fn translate(&mut self, dev: &Device, x: &Tensor, train: bool, _seed: Option<u64>) -> &Tensor {
        self.forward(dev, x, train)
    }
}

/// The step counter as train-state metadata (it seeds each iteration's dropout masks).
pub fn iteration_meta(iteration: u64) -> Vec<(String, String)> {
    vec![("iteration".to_string(), iteration.to_string())]
}

/// Reads `iteration` back from train-state metadata.
pub fn read_iteration(path: &Path, meta: &HashMap<String, String>) -> Result<u64> {
    meta.get("iteration")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{}: metadata iteration missing", path.display()))
}

/// The seed of network `index` of a model built from `seed` (G first, then D, as the reference's
/// init order).
pub fn network_seed(seed: u64, index: u64) -> u64 {
    splitmix(seed, index)
}

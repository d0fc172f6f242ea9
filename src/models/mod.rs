//! Networks written once against the ops (SPEC.md §1, §2, §7), the training steps (§3), and the
//! interface every model offers to the training loop (`model.rs`).

pub mod cyclegan;
pub mod graph;
pub mod image_pool;
pub mod model;
pub mod patchgan;
pub mod phases;
pub mod pix2pix;
pub mod resnet;
pub mod unet;

use crate::device::Device;
use anyhow::Result;
use cyclegan::{CycleGan, CycleGanOptions};
use model::Model;
use patchgan::PatchGanConfig;
use pix2pix::{Pix2Pix, Pix2PixOptions};
use resnet::ResnetConfig;
use unet::UnetConfig;

/// Which model to build, with its networks' configurations and options.
#[derive(Clone, Copy, Debug)]
pub enum ModelConfig {
    Pix2Pix {
        g: UnetConfig,
        d: PatchGanConfig,
        opt: Pix2PixOptions,
    },
    CycleGan {
        g: ResnetConfig,
        d: PatchGanConfig,
        opt: CycleGanOptions,
    },
}

impl ModelConfig {
    /// The reference's `--model` name.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Pix2Pix { .. } => "pix2pix",
            ModelConfig::CycleGan { .. } => "cycle_gan",
        }
    }

    /// The model with every network initialised from `seed`.
    pub fn build(&self, dev: &Device, seed: u64) -> Result<Box<dyn Model>> {
        Ok(match *self {
            ModelConfig::Pix2Pix { g, d, opt } => Box::new(Pix2Pix::new(g, d, opt, dev, seed)?),
            ModelConfig::CycleGan { g, d, opt } => Box::new(CycleGan::new(g, d, opt, dev, seed)?),
        })
    }
}
